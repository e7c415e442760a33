package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	bootstrapv3 "github.com/envoyproxy/go-control-plane/envoy/config/bootstrap/v3"
	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/types/known/anypb"

	"github.com/gatehouse-edge/gatehouse/controlplane/compile"
	"github.com/gatehouse-edge/gatehouse/internal/testenv"
	"github.com/gatehouse-edge/gatehouse/internal/xdsclient"
)

func TestBootstrapValidates(t *testing.T) {
	t.Setenv("GATEHOUSE_BOOTSTRAP_NODE_GROUP", "eu-west-1") // env twin
	out, errOut, code := run(t, "bootstrap", "--node-id", "edge-7", "--xds-server", "10.1.2.3:18000")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	b := &bootstrapv3.Bootstrap{}
	if err := protojson.Unmarshal([]byte(out), b); err != nil {
		t.Fatalf("bootstrap is not valid Envoy JSON: %v\n%s", err, out)
	}
	if err := compile.ValidateAll(b); err != nil {
		t.Fatalf("ValidateAll: %v", err)
	}
	if b.GetNode().GetId() != "edge-7" || b.GetNode().GetCluster() != "eu-west-1" {
		t.Errorf("node = %v", b.GetNode())
	}
	var names []string
	for _, c := range b.GetStaticResources().GetClusters() {
		names = append(names, c.GetName())
	}
	if strings.Join(names, ",") != "gatehouse_xds,gatehouse_authz,gatehouse_ratelimit,gatehouse_accesslog" {
		t.Errorf("static clusters = %v", names)
	}
	if b.GetDynamicResources().GetAdsConfig().GetGrpcServices()[0].GetEnvoyGrpc().GetClusterName() != "gatehouse_xds" || b.GetDynamicResources().GetCdsConfig().GetAds() == nil {
		t.Errorf("dynamic resources = %v", b.GetDynamicResources())
	}
	if b.GetDynamicResources().GetAdsConfig().GetApiType().String() != "GRPC" {
		t.Errorf("api type = %v, want GRPC (state of the world) by default", b.GetDynamicResources().GetAdsConfig().GetApiType())
	}
	out, _, _ = run(t, "bootstrap", "--node-id", "n", "--xds-server", "10.1.2.3:18000", "--delta")
	if err := protojson.Unmarshal([]byte(out), b); err != nil || b.GetDynamicResources().GetAdsConfig().GetApiType().String() != "DELTA_GRPC" {
		t.Errorf("--delta: %v, api type %v", err, b.GetDynamicResources().GetAdsConfig().GetApiType())
	}
	if _, errOut, code := run(t, "bootstrap", "--node-group", "g"); code == 0 || !strings.Contains(errOut, "--xds-server") {
		t.Errorf("missing --xds-server: exit %d, %q", code, errOut)
	}
}

func TestSpecRender(t *testing.T) {
	out, errOut, code := run(t, "spec", "render", "../../deploy/examples/", "--node-group", "us-east-1")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	var r compile.Rendered
	if err := json.Unmarshal([]byte(out), &r); err != nil {
		t.Fatal(err)
	}
	if r.NodeGroup != "us-east-1" || r.Version == "" || len(r.Resources["type.googleapis.com/envoy.config.listener.v3.Listener"]) != 1 {
		t.Errorf("render = group %q version %q, %d listeners", r.NodeGroup, r.Version, len(r.Resources["type.googleapis.com/envoy.config.listener.v3.Listener"]))
	}
	dir := t.TempDir()
	writeFile(t, dir+"/bad.yaml", "apiVersion: gatehouse/v1\nkind: EdgeRoute\nmetadata: {name: bad, team: t}\nspec: {hosts: [], upstreams: [], routes: []}\n")
	if _, errOut, code := run(t, "spec", "render", dir); code != 1 || !strings.Contains(errOut, "spec.hosts") {
		t.Errorf("bad spec: exit %d, stderr %q", code, errOut)
	}
}

func TestExplainCommand(t *testing.T) {
	out, errOut, code := run(t, "explain", "--spec-dir", "../../deploy/examples", "--request", "GET https://status.example.com/incidents", "--json")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	var r struct {
		Route      string `json:"route"`
		RateLimits []struct {
			Entries [][]string `json:"entries"`
		} `json:"rate_limits"`
	}
	if err := json.Unmarshal([]byte(out), &r); err != nil {
		t.Fatal(err)
	}
	if r.Route != "status-page/all" || len(r.RateLimits) != 1 || r.RateLimits[0].Entries[2][0] != "remote_address" {
		t.Errorf("explain = %+v", r)
	}
}

// TestControlplaneCommand runs `gatehouse controlplane` on loopback and
// reads its clusters with the sidecars' xDS client and its /debug/specs.
func TestControlplaneCommand(t *testing.T) {
	xdsAddr := fmt.Sprintf("127.0.0.1:%d", testenv.FreePort(t))
	adminAddr := fmt.Sprintf("127.0.0.1:%d", testenv.FreePort(t))
	t.Setenv("GATEHOUSE_CONTROLPLANE_SOURCE", "file:../../deploy/examples")
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		root := newRootCmd()
		root.SetArgs([]string{"controlplane", "--xds-addr", xdsAddr, "--admin-addr", adminAddr, "--log-level", "warn"})
		root.SetOut(io.Discard)
		if err := root.ExecuteContext(ctx); err != nil {
			t.Errorf("controlplane: %v", err)
		}
	}()
	defer wg.Wait()
	defer cancel()

	got := make(chan []string, 1)
	cctx, ccancel := context.WithCancel(ctx)
	defer ccancel()
	go xdsclient.Run(cctx, xdsclient.Config{Server: xdsAddr, NodeID: "t", NodeCluster: "us-east-1",
		TypeURL: "type.googleapis.com/envoy.config.cluster.v3.Cluster", InitialBackoff: 20 * time.Millisecond},
		func(_ string, res []*anypb.Any) error {
			var names []string
			for _, a := range res {
				c := &clusterv3.Cluster{}
				if err := a.UnmarshalTo(c); err != nil {
					return err
				}
				names = append(names, c.GetName())
			}
			select {
			case got <- names:
			default:
			}
			return nil
		})
	select {
	case names := <-got:
		if !strings.Contains(strings.Join(names, ","), "petstore/api") {
			t.Errorf("clusters = %v", names)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("no clusters from gatehouse controlplane")
	}
	resp, err := http.Get("http://" + adminAddr + "/debug/specs")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 || !strings.Contains(string(body), `"name": "petstore"`) || !strings.Contains(string(body), `"published": true`) {
		t.Errorf("/debug/specs = %d %s", resp.StatusCode, body)
	}
	for _, p := range []string{"/debug/nodes", "/debug/config?node_group=us-east-1", "/metrics", "/readyz"} {
		r, err := http.Get("http://" + adminAddr + p)
		if err != nil {
			t.Fatal(err)
		}
		r.Body.Close()
		if r.StatusCode != 200 {
			t.Errorf("%s = %d", p, r.StatusCode)
		}
	}
}

func writeFile(t *testing.T, path, body string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
}
