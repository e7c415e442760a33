package controlplane_test

import (
	"context"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"github.com/prometheus/client_golang/prometheus"
	statuspb "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/gatehouse-edge/gatehouse/contract"
	"github.com/gatehouse-edge/gatehouse/controlplane"
	"github.com/gatehouse-edge/gatehouse/controlplane/source"
	"github.com/gatehouse-edge/gatehouse/controlplane/xds"
)

// Type URLs the fleet subscribes to.
const (
	ldsType = "type.googleapis.com/envoy.config.listener.v3.Listener"
	rdsType = "type.googleapis.com/envoy.config.route.v3.RouteConfiguration"
	cdsType = "type.googleapis.com/envoy.config.cluster.v3.Cluster"
	edsType = "type.googleapis.com/envoy.config.endpoint.v3.ClusterLoadAssignment"
)

// harness runs a control plane on 127.0.0.1 over a spec directory.
type harness struct {
	t    *testing.T
	dir  string
	addr string
	cp   *controlplane.ControlPlane
	reg  *prometheus.Registry
}

func startControlPlane(t *testing.T, cfg controlplane.Config, specs map[string]string) *harness {
	t.Helper()
	h := &harness{t: t, dir: t.TempDir(), reg: prometheus.NewRegistry()}
	for name, body := range specs {
		h.write(name, body)
	}
	src, err := source.NewDir(h.dir, source.Options{HoldOff: 10 * time.Millisecond, PollInterval: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cfg.Source = src
	cfg.Registry = h.reg
	if cfg.HoldOff == 0 {
		cfg.HoldOff = 20 * time.Millisecond
	}
	cp, err := controlplane.New(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	h.cp = cp
	h.addr = serveXDS(t, ctx, cancel, cp)
	return h
}

// serveXDS serves cp's ADS on 127.0.0.1:0 and runs cp under ctx until the
// test ends, then cancels ctx and stops both; it returns the xDS address.
func serveXDS(t *testing.T, ctx context.Context, cancel context.CancelFunc, cp *controlplane.ControlPlane) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	gs := grpc.NewServer(xds.ServerOptions()...)
	cp.RegisterXDS(gs)
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { defer wg.Done(); _ = gs.Serve(l) }()
	go func() { defer wg.Done(); _ = cp.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		gs.Stop()
		wg.Wait()
	})
	return l.Addr().String()
}

func (h *harness) write(name, body string) {
	h.t.Helper()
	if err := os.WriteFile(filepath.Join(h.dir, name), []byte(body), 0o644); err != nil {
		h.t.Fatal(err)
	}
}

// waitVersion waits until the publisher serves a group a version other
// than not, and returns it.
func (h *harness) waitServed(group string, ok func(string) bool) string {
	h.t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for time.Now().Before(deadline) {
		st := h.cp.Publisher().State()
		v := st.Served[group]
		if group == "" {
			v = st.GoodVersion
		}
		if v != "" && ok(v) {
			return v
		}
		time.Sleep(10 * time.Millisecond)
	}
	h.t.Fatalf("group %s never served the expected version; state %+v", group, h.cp.Publisher().State())
	return ""
}

// adsClient is a hand-driven ADS SotW stream, so tests decide when to ACK
// or NACK and can count every response.
type adsClient struct {
	t        *testing.T
	node     *corev3.Node
	stream   discoveryv3.AggregatedDiscoveryService_StreamAggregatedResourcesClient
	resps    chan *discoveryv3.DiscoveryResponse
	cancel   context.CancelFunc
	sentNode bool
	errc     chan error // the error that ended the stream (openADS)
}

func dialADS(t *testing.T, addr, id, group string) *adsClient {
	t.Helper()
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	return openADS(t, conn, id, group)
}

func (c *adsClient) send(typeURL string, names []string, version, nonce string, nack string) {
	c.t.Helper()
	req := &discoveryv3.DiscoveryRequest{TypeUrl: typeURL, ResourceNames: names, VersionInfo: version, ResponseNonce: nonce}
	if !c.sentNode {
		req.Node = c.node // like Envoy: the node on the first message only
		c.sentNode = true
	}
	if nack != "" {
		req.ErrorDetail = &statuspb.Status{Code: 3, Message: nack}
	}
	if err := c.stream.Send(req); err != nil {
		c.t.Fatalf("send: %v", err)
	}
}

// recv waits for the next response of typeURL (others are kept in order
// for later calls is not needed: tests subscribe one type at a time).
func (c *adsClient) recv(typeURL string) *discoveryv3.DiscoveryResponse {
	c.t.Helper()
	select {
	case r, ok := <-c.resps:
		if !ok {
			c.t.Fatal("stream closed")
		}
		if r.GetTypeUrl() != typeURL {
			c.t.Fatalf("got a %s response, want %s", r.GetTypeUrl(), typeURL)
		}
		return r
	case <-time.After(15 * time.Second):
		c.t.Fatalf("no %s response", typeURL)
	}
	return nil
}

// quiet asserts no response arrives for d and returns how many did.
func (c *adsClient) count(d time.Duration) int {
	n := 0
	timeout := time.After(d)
	for {
		select {
		case _, ok := <-c.resps:
			if !ok {
				return n
			}
			n++
		case <-timeout:
			return n
		}
	}
}

func specYAML(name, host, endpoint string) string {
	return strings.NewReplacer("NAME", name, "HOST", host, "EP", endpoint).Replace(`apiVersion: gatehouse/v1
kind: EdgeRoute
metadata: {name: NAME, team: t}
spec:
  hosts: [HOST]
  upstreams: [{name: api, endpoints: ["EP"]}]
  routes:
    - name: r
      match: {pathPrefix: /}
      upstream: api
      rateLimits:
        - {name: per-ip, by: [client.ip], limit: 10/second}
`)
}

// typeVersions is the version of each resource type that cp serves group
// now (each type has its own version; it changes only with the type's
// resources).
func typeVersions(t *testing.T, cp *controlplane.ControlPlane, group string) map[string]string {
	t.Helper()
	snap, ok := cp.XDS().Snapshot(group)
	if !ok {
		t.Fatalf("no snapshot for node group %s", group)
	}
	out := map[string]string{}
	for _, typ := range []string{ldsType, rdsType, cdsType, edsType, contract.ExtensionConfigType, contract.RateLimitConfigType, resourcev3.SecretType} {
		if v := snap.GetVersion(typ); v != "" {
			out[typ] = v
		}
	}
	return out
}

// runningRevision waits until node id runs a revision (it ACKed, for
// every type it ACKed, that revision's version) accepted by ok, and
// returns it.
func runningRevision(t *testing.T, cp *controlplane.ControlPlane, id string, ok func(string) bool) string {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		for _, n := range cp.XDS().Nodes() {
			if n.NodeID == id && n.Revision != "" && ok(n.Revision) {
				return n.Revision
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("node %s never ran the expected revision: %+v", id, cp.XDS().Nodes())
		}
		time.Sleep(10 * time.Millisecond)
	}
}
