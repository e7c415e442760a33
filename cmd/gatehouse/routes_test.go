package main

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gatehouse-edge/gatehouse/broker/api"
	"github.com/gatehouse-edge/gatehouse/broker/osbclient"
	"github.com/gatehouse-edge/gatehouse/broker/store/sqlitestore"
	"github.com/gatehouse-edge/gatehouse/controlplane/source"
	"github.com/gatehouse-edge/gatehouse/internal/testenv"
	"github.com/gatehouse-edge/gatehouse/spec"
)

// startCommand runs `gatehouse args...` until the test ends.
func startCommand(t *testing.T, args ...string) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	root := newRootCmd()
	root.SetArgs(args)
	root.SetOut(os.Stderr)
	root.SetErr(os.Stderr)
	done := make(chan error, 1)
	go func() { done <- root.ExecuteContext(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("gatehouse %s: %v", args[0], err)
		}
	})
}

// controlPlaneDouble plays the control plane against the store file
// through its own handle: it watches the feed, validates each spec with
// the spec package and reports it published (or the validation error);
// deletions are reported published once seen.
func controlPlaneDouble(t *testing.T, path string) {
	s, err := sqlitestore.Open(context.Background(), path)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		_ = source.NewFeed(s, source.Options{PollInterval: 5 * time.Millisecond}).Watch(ctx, func(rev source.Revision) {
			for _, sp := range rev.Specs {
				docs, err := spec.Parse(sp.Origin, sp.Data)
				if err == nil {
					err = spec.Validate(docs)
				}
				_ = s.ReportPublished(ctx, sp.Name, sp.Revision, err)
			}
			for _, d := range rev.Deleted {
				_ = s.ReportPublished(ctx, d.Name, d.Revision, nil)
			}
		})
	}()
	t.Cleanup(func() { cancel(); wg.Wait(); s.Close() })
}

// s0 opens the route store file through its own handle until the test ends.
func s0(t *testing.T, path string) *sqlitestore.Store {
	t.Helper()
	s, err := sqlitestore.Open(context.Background(), path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func TestRoutesAndKeysCLI(t *testing.T) {
	dir := t.TempDir()
	pw := filepath.Join(dir, "password")
	if err := os.WriteFile(pw, []byte("cli-secret\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	storePath, queuePath := filepath.Join(dir, "store.db"), filepath.Join(dir, "queue.db")
	addr := fmt.Sprintf("127.0.0.1:%d", testenv.FreePort(t))
	admin := fmt.Sprintf("127.0.0.1:%d", testenv.FreePort(t))
	startCommand(t, "broker", "--http-addr", addr, "--admin-addr", admin, "--store", "sqlite:"+storePath,
		"--queue", "sqlite:"+queuePath, "--username", "ops", "--password-file", pw, "--log-level", "warn",
		"--bind-wait", "1ms") // keys create then gets 202 and fetches the key with GET binding
	t.Setenv("GATEHOUSE_WORKER_ADMIN_ADDR", "-") // the env twin of --admin-addr
	startCommand(t, "worker", "--store", "sqlite:"+storePath, "--queue", "sqlite:"+queuePath, "--log-level", "warn")
	controlPlaneDouble(t, storePath)

	specFile := filepath.Join(dir, "pets.yaml")
	if err := os.WriteFile(specFile, []byte(`apiVersion: gatehouse/v1
kind: EdgeRoute
metadata: {name: clipets, team: pets}
spec:
  hosts: [clipets.example.com]
  upstreams: [{name: api, endpoints: ["10.0.0.5:8080"]}]
  identity:
    apiKeys: [{name: partners, header: x-api-key, bindLabels: {plan: [gold]}}]
  routes:
    - name: all
      match: {pathPrefix: /}
      upstream: api
      auth: {mode: enforce, anyOf: [partners]}
`), 0o600); err != nil {
		t.Fatal(err)
	}
	conn := []string{"--broker-url", "http://" + addr, "--username", "ops", "--password-file", pw}
	cli := func(args ...string) (string, string, int) {
		t.Helper()
		// wait for the broker to listen (bounded)
		var out, errOut string
		var code int
		for i := 0; i < 100; i++ {
			out, errOut, code = run(t, append(args, conn...)...)
			if !strings.Contains(errOut, "connection refused") {
				break
			}
			time.Sleep(50 * time.Millisecond)
		}
		return out, errOut, code
	}

	out, errOut, code := cli("routes", "apply", "-f", specFile, "--wait")
	if code != 0 || !strings.Contains(out, "clipets: accepted") || !strings.Contains(out, "clipets: succeeded") {
		t.Fatalf("routes apply: exit %d\n%s\n%s", code, out, errOut)
	}
	out, _, code = cli("routes", "apply", "-f", specFile)
	if code != 0 || !strings.Contains(out, "clipets: unchanged") {
		t.Fatalf("second apply: exit %d\n%s", code, out)
	}
	// -o json: stdout is the document alone, the progress lines go to stderr.
	var results struct {
		Results []opResult `json:"results"`
	}
	out, errOut, code = cli("routes", "apply", "-f", specFile, "-o", "json")
	if code != 0 || json.Unmarshal([]byte(out), &results) != nil || len(results.Results) != 1 || results.Results[0] != (opResult{Route: "clipets", Result: "unchanged"}) || !strings.Contains(errOut, "clipets: unchanged") {
		t.Fatalf("apply -o json: exit %d\n%s\n%s", code, out, errOut)
	}
	// Without --password-file, against a broker on loopback: the dev data
	// directory's broker-password is used.
	devDir := t.TempDir()
	if err := os.WriteFile(filepath.Join(devDir, "broker-password"), []byte("cli-secret\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if out, errOut, code := run(t, "routes", "status", "clipets", "--broker-url", "http://"+addr, "--username", "ops", "--data-dir", devDir); code != 0 || !strings.Contains(out, "clipets: succeeded") {
		t.Fatalf("routes status with the dev password: exit %d\n%s\n%s", code, out, errOut)
	}
	// The broker's admin server: readiness checks the store; metrics count requests by route pattern.
	for path, want := range map[string]string{"/readyz": "ready", "/metrics": `gatehouse_broker_requests_total{code="202",route="PUT /v2/service_instances/{id}"} 1`} {
		res, err := http.Get("http://" + admin + path)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(res.Body)
		res.Body.Close()
		if res.StatusCode != 200 || !strings.Contains(string(b), want) {
			t.Fatalf("GET %s: %d, body lacks %q:\n%.2000s", path, res.StatusCode, want, b)
		}
	}
	out, _, code = cli("routes", "status", "clipets")
	if code != 0 || !strings.Contains(out, "succeeded") || !strings.Contains(out, "hosts:       clipets.example.com") || !strings.Contains(out, "last error:  none") {
		t.Fatalf("routes status: exit %d\n%s", code, out)
	}
	// The live revision is the one the control plane reported published.
	pub, err := s0(t, storePath).GetPublication(context.Background(), "clipets")
	if err != nil || pub.Revision == 0 {
		t.Fatalf("publication: %+v %v", pub, err)
	}
	if !strings.Contains(out, fmt.Sprintf("live revision: %d\n", pub.Revision)) {
		t.Fatalf("routes status lacks the live revision %d:\n%s", pub.Revision, out)
	}
	out, _, code = cli("routes", "status", "clipets", "-o", "json")
	if code != 0 || !strings.Contains(out, fmt.Sprintf(`"live_revision": %d`, pub.Revision)) {
		t.Fatalf("routes status -o json: exit %d\n%s", code, out)
	}
	// routes list over real HTTP: name, state, live revision, hosts.
	out, errOut, code = cli("routes", "list")
	if code != 0 || !regexp.MustCompile(fmt.Sprintf(`(?m)^clipets\s+succeeded\s+%d\s+clipets\.example\.com\s+-$`, pub.Revision)).MatchString(out) {
		t.Fatalf("routes list: exit %d\n%s\n%s", code, out, errOut)
	}
	var listed struct {
		Routes []api.RouteSummary `json:"routes"`
	}
	out, _, code = cli("routes", "list", "-o", "json")
	if code != 0 || json.Unmarshal([]byte(out), &listed) != nil || len(listed.Routes) != 1 || listed.Routes[0].SpecName != "clipets" || listed.Routes[0].LiveRevision != pub.Revision {
		t.Fatalf("routes list -o json: exit %d\n%s", code, out)
	}
	if out, _, code = cli("routes", "list", "-o", "yaml"); code != 0 || !strings.Contains(out, "live_revision: ") {
		t.Fatalf("routes list -o yaml: exit %d\n%s", code, out)
	}
	// The listing sits behind the OSB API's basic auth.
	if res, err := http.Get("http://" + addr + "/gatehouse/v1/instances"); err != nil || res.StatusCode != http.StatusUnauthorized {
		t.Fatalf("GET /gatehouse/v1/instances without credentials: %v %v", res, err)
	} else {
		res.Body.Close()
	}
	if _, errOut, code = cli("routes", "list", "-o", "xml"); code == 0 || !strings.Contains(errOut, `--output "xml"`) {
		t.Fatalf("routes list -o xml: exit %d %s", code, errOut)
	}
	// An unknown route: a plain answer, no internal service or plan ids.
	_, errOut, code = cli("routes", "status", "nosuch")
	if code == 0 || !strings.Contains(errOut, "nosuch: no such EdgeRoute") || strings.Contains(errOut, "service_id") || strings.Contains(errOut, "plan_id") {
		t.Fatalf("routes status nosuch: exit %d %s", code, errOut)
	}

	out, errOut, code = cli("keys", "create", "clipets", "--provider", "partners", "--label", "plan=gold", "--id", "k1")
	if code != 0 || !strings.Contains(out, "api key:  gh_") || !strings.Contains(out, "header:   x-api-key") {
		t.Fatalf("keys create: exit %d\n%s\n%s", code, out, errOut)
	}
	// keys list: id, provider, labels, created; never the key or its hash.
	key := out[strings.Index(out, "gh_"):]
	key = key[:strings.IndexAny(key, " \n")]
	sum := sha256.Sum256([]byte(key))
	for _, format := range []string{"table", "json", "yaml"} {
		out, errOut, code := cli("keys", "list", "clipets", "-o", format)
		if code != 0 || !strings.Contains(out, "k1") || !strings.Contains(out, "partners") || !strings.Contains(out, "plan") || !strings.Contains(out, "gold") {
			t.Fatalf("keys list -o %s: exit %d\n%s\n%s", format, code, out, errOut)
		}
		if strings.Contains(out, key) || strings.Contains(out, hex.EncodeToString(sum[:])) || strings.Contains(out, "sha256") {
			t.Fatalf("keys list -o %s shows the key or its hash:\n%s", format, out)
		}
		if format == "table" && !regexp.MustCompile(`(?m)^k1\s+partners\s+plan=gold\s+succeeded\s+20\d\d-`).MatchString(out) {
			t.Fatalf("keys list table:\n%s", out)
		}
	}
	if _, errOut, code := cli("keys", "list", "nosuch"); code == 0 || !strings.Contains(errOut, "nosuch: no such EdgeRoute") {
		t.Fatalf("keys list nosuch: exit %d %s", code, errOut)
	}
	_, errOut, code = cli("keys", "create", "clipets", "--provider", "nope")
	if code == 0 || !strings.Contains(errOut, `"nope" is not an apiKeys provider`) {
		t.Fatalf("keys create with an unknown provider: exit %d\n%s", code, errOut)
	}
	// A platform without asynchronous bindings (no accepts_incomplete):
	// 201 with the key from the real broker and worker processes.
	osb := &osbclient.Client{BaseURL: "http://" + addr, Username: "ops", Password: "cli-secret"}
	if r, err := osb.BindSync(context.Background(), "clipets", "k2", "partners", nil); err != nil || r.Code != 201 || r.Credentials == nil || !strings.HasPrefix(r.Credentials.APIKey, "gh_") {
		t.Fatalf("bind without accepts_incomplete: %+v %v", r, err)
	}
	// keys create and revoke with -o json.
	out, errOut, code = cli("keys", "create", "clipets", "--provider", "partners", "--id", "k3", "-o", "json")
	var cr api.Credentials
	if code != 0 || json.Unmarshal([]byte(out), &cr) != nil || cr.APIKeyID == "" || !strings.HasPrefix(cr.APIKey, "gh_") || cr.Header != "x-api-key" {
		t.Fatalf("keys create -o json: exit %d\n%s\n%s", code, out, errOut)
	}
	out, errOut, code = cli("keys", "revoke", "clipets", "k3", "-o", "json")
	if code != 0 || json.Unmarshal([]byte(out), &results) != nil || len(results.Results) != 1 || results.Results[0].Result != "revoked" || results.Results[0].Key != "k3" {
		t.Fatalf("keys revoke -o json: exit %d\n%s\n%s", code, out, errOut)
	}
	out, errOut, code = cli("keys", "revoke", "clipets", "k1")
	if code != 0 || !strings.Contains(out, "clipets/k1: revoked") {
		t.Fatalf("keys revoke: exit %d\n%s\n%s", code, out, errOut)
	}

	// A spec the broker refuses: every problem on stderr, exit 1.
	bad := filepath.Join(dir, "bad.yaml")
	_ = os.WriteFile(bad, []byte("apiVersion: gatehouse/v1\nkind: EdgeRoute\nmetadata: {name: Bad}\nspec: {hosts: []}\n"), 0o600)
	_, errOut, code = cli("routes", "apply", "-f", bad)
	if code != 1 || !strings.Contains(errOut, "metadata.name") || !strings.Contains(errOut, "spec.hosts") {
		t.Fatalf("apply of a bad spec: exit %d\n%s", code, errOut)
	}

	out, errOut, code = cli("routes", "delete", "clipets", "--wait", "-o", "yaml")
	if code != 0 || !strings.Contains(errOut, "clipets: deleted") || !strings.Contains(out, "result: deleted") || strings.Contains(out, "clipets: deleted") {
		t.Fatalf("routes delete: exit %d\n%s\n%s", code, out, errOut)
	}
	s := s0(t, storePath)
	if sp, err := s.GetSpec(context.Background(), "clipets"); err != nil || !sp.Deleted {
		t.Fatalf("after delete the route store has %+v, %v", sp, err)
	}
	_, errOut, code = run(t, "routes", "status", "clipets", "--broker-url", "http://"+addr, "--password-file", filepath.Join(dir, "missing"))
	if code == 0 || !strings.Contains(errOut, "password-file") {
		t.Fatalf("missing password file: exit %d %s", code, errOut)
	}
}
