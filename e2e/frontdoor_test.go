package e2e

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gatehouse-edge/gatehouse/dev"
)

// TestTwoDevSuitesBannerCurlLines runs two `gatehouse dev` suites side by
// side on their own ports and data directories: the first with the
// example specs, whose banner's curl lines (run here as Go HTTP requests)
// go through its front door and show 200, 401, 403 and 429, and fill its
// access log; the second with no examples, whose banner advertises no
// petstore route, demo key or command that needs them, and whose front
// door follows its own (empty) config.
func TestTwoDevSuitesBannerCurlLines(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	cfgA, outA := devConfig(t)
	cfgB, outB := devConfig(t)
	cfgB.ExamplesDir = ""
	var epA, epB dev.Endpoints
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { defer wg.Done(); epA, _ = runDevAsync(t, ctx, cfgA, outA) }()
	go func() { defer wg.Done(); epB, _ = runDevAsync(t, ctx, cfgB, outB) }()
	wg.Wait()
	if epA.FrontDoor == "" || epB.FrontDoor == "" || epA.FrontDoor == epB.FrontDoor {
		t.Fatalf("front doors %q and %q: want two distinct ones", epA.FrontDoor, epB.FrontDoor)
	}

	// Suite A: every curl line of the banner, with the status it promises.
	banner := outA.String()
	cmds := bannerCurls(t, banner)
	var seen []int
	for _, c := range cmds {
		var got []int
		for i := 0; i < c.repeat; i++ {
			got = append(got, c.run(t, ctx))
		}
		if len(got) != len(c.want) {
			t.Fatalf("%s\n  says %v but runs %d time(s)", c.line, c.want, len(got))
		}
		for i := range got {
			if got[i] != c.want[i] {
				t.Fatalf("%s\n  got %v, the banner says %v\n%s", c.line, got, c.want, banner)
			}
		}
		seen = append(seen, got...)
	}
	for _, want := range []int{200, 401, 403, 429} {
		if !containsInt(seen, want) {
			t.Fatalf("the banner's curl lines showed %v; want %d among them\n%s", seen, want, banner)
		}
	}
	// The front door is an Envoy stand-in: on the control plane it is an
	// Envoy of the dev group, authenticated by that group's certificate.
	checkFrontDoorNode(t, ctx, epA)
	// The access-log page (its query API) fills with those requests.
	s := &suite{t: t, ep: epA}
	waitUntil(t, 20*time.Second, "the front door's requests in the access log", func() bool {
		recs := s.queryLogs(ctx, url.Values{"since": {"1h"}, "limit": {"100"}})
		statuses := map[int]int{}
		for _, r := range recs {
			statuses[r.Status]++
		}
		return statuses[200] >= 5 && statuses[401] >= 1 && statuses[403] >= 1 && statuses[429] >= 1
	})

	// Suite B: nothing provisioned, nothing advertised that needs it.
	bannerB := outB.String()
	for _, bad := range []string{"petstore", dev.DemoAPIKey, "--spec-dir  ", "--spec-dir --", "-f /petstore.yaml", "ALICE", "curl -s -o /dev/null"} {
		if strings.Contains(bannerB, bad) {
			t.Fatalf("banner without examples contains %q:\n%s", bad, bannerB)
		}
	}
	if !strings.Contains(bannerB, epB.FrontDoor) || !strings.Contains(bannerB, epB.AccessLogAPI) {
		t.Fatalf("banner without examples does not show its front door %s and query API %s:\n%s", epB.FrontDoor, epB.AccessLogAPI, bannerB)
	}
	// Both banners say how to attach an Envoy on the secure path.
	for name, b := range map[string]string{"with examples": banner, "without examples": bannerB} {
		for _, want := range []string{"mutual TLS", "--xds-ca-file", "--xds-cert-file", "--xds-key-file", "--front-door-addr"} {
			if !strings.Contains(b, want) {
				t.Fatalf("banner %s lacks %q:\n%s", name, want, b)
			}
		}
	}
	// B's front door follows B's xDS, which has no spec and so no
	// listener (an Envoy would refuse the connection): no petstore there.
	req, _ := http.NewRequestWithContext(ctx, "GET", epB.FrontDoor+"/healthz", nil)
	req.Host = petstore
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusServiceUnavailable || !strings.Contains(string(body), "holds no listener") {
		t.Fatalf("suite B's front door, petstore /healthz: %d %s, want 503 holds no listener (B has no specs)", resp.StatusCode, body)
	}
}

// runDevAsync is runDev for a goroutine: it reports through t.Error.
func runDevAsync(t *testing.T, ctx context.Context, cfg dev.Config, out *lockedBuffer) (dev.Endpoints, func() error) {
	epc := make(chan dev.Endpoints, 1)
	cfg.Ready = func(e dev.Endpoints) { epc <- e }
	errc := make(chan error, 1)
	runCtx, cancel := context.WithCancel(ctx)
	go func() { errc <- dev.Run(runCtx, cfg) }()
	var once sync.Once
	var stopErr error
	stop := func() error {
		once.Do(func() {
			cancel()
			select {
			case stopErr = <-errc:
			case <-time.After(30 * time.Second):
				stopErr = context.DeadlineExceeded
			}
		})
		return stopErr
	}
	t.Cleanup(func() {
		if err := stop(); err != nil {
			t.Errorf("dev.Run: %v", err)
		}
	})
	select {
	case ep := <-epc:
		return ep, stop
	case err := <-errc:
		t.Errorf("dev.Run: %v\n%s", err, out.String())
	case <-time.After(150 * time.Second):
		t.Errorf("suite not ready after 150s:\n%s", out.String())
	}
	return dev.Endpoints{}, stop
}

func containsInt(s []int, v int) bool {
	for _, x := range s {
		if x == v {
			return true
		}
	}
	return false
}

// checkFrontDoorNode: the control plane sees the dev front door as a
// node of the dev group whose client certificate names that group (it
// dials xDS as an Envoy of the group would, with its certificate).
func checkFrontDoorNode(t *testing.T, ctx context.Context, ep dev.Endpoints) {
	t.Helper()
	req, _ := http.NewRequestWithContext(ctx, "GET", ep.ControlPlaneAdmin+"/debug/nodes", nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var body struct {
		Nodes []struct {
			NodeID    string `json:"node_id"`
			NodeGroup string `json:"node_group"`
			CertGroup string `json:"certificate_node_group"`
			UserAgent string `json:"user_agent"`
		} `json:"nodes"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&body); err != nil {
		t.Fatal(err)
	}
	for _, n := range body.Nodes {
		if n.NodeID == "dev-frontdoor" {
			if n.NodeGroup != ep.NodeGroup || n.CertGroup != ep.NodeGroup || !strings.HasPrefix(n.UserAgent, "envoy") {
				t.Fatalf("front door node %+v: want group %s, bound to a certificate of that group, user agent envoy", n, ep.NodeGroup)
			}
			return
		}
	}
	t.Fatalf("no dev-frontdoor node on the control plane: %+v", body.Nodes)
}
