package main

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gatehouse-edge/gatehouse/internal/testenv"
)

// TestRolloutStatus runs `gatehouse controlplane` with a canary group on
// a directory holding a good and a broken spec, then `gatehouse rollout
// status` against its admin port: the phase, what the groups are served
// and the spec left out with its reason.
func TestRolloutStatus(t *testing.T) {
	dir := t.TempDir()
	good, err := os.ReadFile("../../deploy/examples/petstore.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "petstore.yaml"), good, 0o644); err != nil {
		t.Fatal(err)
	}
	bad := `apiVersion: gatehouse/v1
kind: EdgeRoute
metadata: {name: broken, team: t}
spec:
  hosts: [broken.example.com]
  upstreams: [{name: api, endpoints: ["10.0.0.1:80"]}]
  routes:
    - {name: r, match: {pathPrefix: /}, upstream: nope}
`
	if err := os.WriteFile(filepath.Join(dir, "broken.yaml"), []byte(bad), 0o644); err != nil {
		t.Fatal(err)
	}
	xdsAddr := fmt.Sprintf("127.0.0.1:%d", testenv.FreePort(t))
	adminAddr := fmt.Sprintf("127.0.0.1:%d", testenv.FreePort(t))
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		root := newRootCmd()
		root.SetArgs([]string{"controlplane", "--source", "file:" + dir, "--xds-addr", xdsAddr, "--admin-addr", adminAddr, "--canary-group", "canary", "--log-level", "error"})
		root.SetOut(io.Discard)
		if err := root.ExecuteContext(ctx); err != nil {
			t.Errorf("controlplane: %v", err)
		}
	}()
	defer wg.Wait()
	defer cancel()

	admin := "http://" + adminAddr
	var out string
	deadline := time.Now().Add(20 * time.Second)
	for {
		if resp, err := http.Get(admin + "/debug/specs"); err == nil {
			resp.Body.Close()
			var errOut string
			var code int
			out, errOut, code = run(t, "rollout", "status", "--controlplane-admin", admin)
			if code != 0 {
				t.Fatalf("rollout status: exit %d: %s", code, errOut)
			}
			if strings.Contains(out, "LEFT OUT") {
				break
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("rollout status never showed the compiled revision:\n%s", out)
		}
		time.Sleep(100 * time.Millisecond)
	}
	for _, want := range []string{"phase:      idle", "verdict:    the fleet runs the newest good version", "specs:      1 published, 1 left out", "LEFT OUT broken:", "nope"} {
		if !strings.Contains(out, want) {
			t.Fatalf("rollout status lacks %q:\n%s", want, out)
		}
	}
	if _, errOut, code := run(t, "rollout", "status", "--controlplane-admin", "http://"+fmt.Sprintf("127.0.0.1:%d", testenv.FreePort(t))); code == 0 || !strings.Contains(errOut, "rollout status") {
		t.Fatalf("rollout status against nothing: exit %d, stderr %q", code, errOut)
	}
}
