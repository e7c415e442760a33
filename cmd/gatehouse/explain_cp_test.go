package main

import (
	"encoding/json"
	"io"
	"net/http"
	"strconv"
	"strings"
	"testing"

	"github.com/gatehouse-edge/gatehouse/controlplane/explain"
	"github.com/gatehouse-edge/gatehouse/internal/testenv"
)

// TestExplainControlPlaneKnowsBindingKeys: against a real `gatehouse dev`,
// a key issued by `keys create` (an OSB binding) is unknown to
// `explain --spec-dir` (the spec files lack it) and recognised by
// `explain --control-plane` (the config the control plane serves); the
// --spec-dir path still decides with the spec's own demo key.
func TestExplainControlPlaneKnowsBindingKeys(t *testing.T) {
	addr := func() string { return "127.0.0.1:" + strconv.Itoa(testenv.FreePort(t)) }
	dataDir := t.TempDir()
	broker, cpAdmin := addr(), addr()
	args := []string{"dev", "--data-dir", dataDir, "--examples", "../../deploy/examples", "--envoy-listener-addr", addr(),
		"--broker-addr", broker, "--controlplane-admin-addr", cpAdmin, "--front-door-addr", addr()}
	for _, f := range []string{"broker-admin-addr", "xds-addr", "authz-addr", "authz-admin-addr", "ratelimit-addr",
		"ratelimit-admin-addr", "accesslog-addr", "accesslog-api-addr", "idp-addr", "echo-addr"} {
		args = append(args, "--"+f, addr())
	}
	startDevCmd(t, args)

	// A key issued by a binding, through the dev broker with the dev password.
	kout, kerr, code := run(t, "keys", "create", "petstore", "--provider", "partners", "--label", "plan=gold", "--id", "bound1",
		"--broker-url", "http://"+broker, "--data-dir", dataDir)
	i := strings.Index(kout, "gh_")
	if code != 0 || i < 0 {
		t.Fatalf("keys create: exit %d\n%s\n%s", code, kout, kerr)
	}
	key := kout[i:]
	key = key[:strings.IndexAny(key, " \n")]
	request := []string{"--request", "GET https://petstore.example.com/pets", "-H", "x-api-key: " + key}
	cp := "http://" + cpAdmin

	// The spec files do not know it: denied.
	eout, eerr, _ := run(t, append([]string{"explain", "--spec-dir", "../../deploy/examples"}, request...)...)
	if !strings.Contains(eout, "decision:     deny") {
		t.Fatalf("explain --spec-dir with a bound key: want deny\n%s\n%s", eout, eerr)
	}
	// The control plane does: allowed, by the binding's key id and labels.
	eout, eerr, code = run(t, append([]string{"explain", "--control-plane", cp}, request...)...)
	if code != 0 || !strings.Contains(eout, "decision:     allow, status 200") || !strings.Contains(eout, "config:       served by the control plane at "+cp) {
		t.Fatalf("explain --control-plane with a bound key: exit %d\n%s\n%s", code, eout, eerr)
	}
	if strings.Contains(eout, key) || strings.Contains(eerr, key) {
		t.Fatalf("explain echoes the key:\n%s\n%s", eout, eerr)
	}
	eout, _, code = run(t, append([]string{"explain", "--control-plane", cp, "-o", "json"}, request...)...)
	var res explain.Result
	if code != 0 || json.Unmarshal([]byte(eout), &res) != nil || res.Decision == nil || !res.Decision.Allow || res.Route != "petstore/list-pets" {
		t.Fatalf("explain --control-plane -o json: exit %d\n%s", code, eout)
	}
	// A wrong key is denied there too (fail closed).
	eout, _, _ = run(t, "explain", "--control-plane", cp, "--request", "GET https://petstore.example.com/pets", "-H", "x-api-key: gh_wrong_0000000000")
	if !strings.Contains(eout, "decision:     deny") {
		t.Fatalf("explain --control-plane with a wrong key: want deny\n%s", eout)
	}
	// The --spec-dir path still decides with the spec's own demo key.
	eout, eerr, code = run(t, "explain", "--spec-dir", "../../deploy/examples", "--request", "GET https://petstore.example.com/pets", "-H", "x-api-key: gh_demo_acme_0123456789")
	if code != 0 || !strings.Contains(eout, "decision:     allow") {
		t.Fatalf("explain --spec-dir with the demo key: exit %d\n%s\n%s", code, eout, eerr)
	}
	// The endpoint itself: bad input is a 400 that says what it wants.
	if res, err := http.Post(cp+"/debug/explain", "application/json", strings.NewReader("{")); err != nil || res.StatusCode != http.StatusBadRequest {
		t.Fatalf("POST /debug/explain with a broken body: %v %v", res, err)
	} else {
		b, _ := io.ReadAll(res.Body)
		res.Body.Close()
		if !strings.Contains(string(b), "the body must be a JSON object {request, headers, node_group, client_ip}") {
			t.Fatalf("POST /debug/explain with a broken body: %s", b)
		}
	}
	// Both sources at once, a control plane that is not there, a credential off loopback over http: clear errors.
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"--spec-dir", "../../deploy/examples", "--control-plane", cp}, "--spec-dir and --control-plane: pass one"},
		{[]string{"--control-plane", "http://" + addr()}, "is gatehouse dev running?"},
		{[]string{"--control-plane", "http://192.0.2.1:18001", "-H", "x-api-key: " + key}, "sent only to a control plane on loopback or over https"},
	} {
		_, eerr, code := run(t, append([]string{"explain", "--request", "GET https://petstore.example.com/pets"}, c.args...)...)
		if code == 0 || !strings.Contains(eerr, c.want) || strings.Contains(eerr, key) {
			t.Errorf("explain %v: exit %d, %q (want %q)", c.args, code, eerr, c.want)
		}
	}
}
