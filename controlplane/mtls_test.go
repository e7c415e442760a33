package controlplane_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	"github.com/gatehouse-edge/gatehouse/controlplane"
	"github.com/gatehouse-edge/gatehouse/controlplane/source"
	"github.com/gatehouse-edge/gatehouse/internal/testenv"
	"github.com/gatehouse-edge/gatehouse/internal/tlsconfig"
	"github.com/gatehouse-edge/gatehouse/internal/xdsclient"
)

// tlsControlPlane runs `gatehouse controlplane` (controlplane.Run) with
// mutual TLS on 127.0.0.1:0 over a spec directory.
type tlsControlPlane struct {
	*harness
	pki *testenv.PKI
}

func startTLSControlPlane(t *testing.T, cfg controlplane.Config, specs map[string]string) *tlsControlPlane {
	t.Helper()
	pki := testenv.NewPKI(t)
	h := &harness{t: t, dir: t.TempDir(), reg: prometheus.NewRegistry()}
	for name, body := range specs {
		h.write(name, body)
	}
	src, err := source.NewDir(h.dir, source.Options{HoldOff: 10 * time.Millisecond, PollInterval: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	cfg.Source, cfg.Registry, cfg.HoldOff = src, h.reg, 20*time.Millisecond
	cfg.TLS = pki.ServerTLS(t, "controlplane")
	l, err := controlplane.Listen("127.0.0.1:0", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	h.addr = l.XDS.Addr().String()
	ctx, cancel := context.WithCancel(context.Background())
	if h.cp, err = controlplane.New(ctx, cfg); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- h.cp.Serve(ctx, l) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("controlplane.Run: %v", err)
		}
	})
	return &tlsControlPlane{harness: h, pki: pki}
}

// dialTLS opens an ADS stream presenting cc.
func dialTLS(t *testing.T, addr string, cc tlsconfig.Client, id, group string) *adsClient {
	t.Helper()
	return openADS(t, dialXDSTLS(t, addr, cc), id, group)
}

// dialXDSTLS is a client connection to the xDS port at addr with cc's
// node certificate.
func dialXDSTLS(t *testing.T, addr string, cc tlsconfig.Client) *grpc.ClientConn {
	t.Helper()
	tc, err := cc.Config("--xds")
	if err != nil {
		t.Fatal(err)
	}
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(credentials.NewTLS(tc)))
	if err != nil {
		t.Fatal(err)
	}
	return conn
}

func openADS(t *testing.T, conn *grpc.ClientConn, id, group string) *adsClient {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	c := &adsClient{t: t, node: &corev3.Node{Id: id, Cluster: group}, resps: make(chan *discoveryv3.DiscoveryResponse, 64), cancel: cancel, errc: make(chan error, 1)}
	st, err := discoveryv3.NewAggregatedDiscoveryServiceClient(conn).StreamAggregatedResources(ctx)
	if err != nil {
		c.errc <- err
		close(c.resps)
		t.Cleanup(func() { cancel(); conn.Close() })
		c.stream = nil
		return c
	}
	c.stream = st
	go func() {
		defer close(c.resps)
		for {
			r, err := st.Recv()
			if err != nil {
				c.errc <- err
				return
			}
			c.resps <- r
		}
	}()
	t.Cleanup(func() { cancel(); conn.Close() })
	return c
}

// refused sends a CDS request and returns the error that ends the stream
// (nil when a response arrives instead).
func (c *adsClient) refused() error {
	c.t.Helper()
	if c.stream != nil {
		req := &discoveryv3.DiscoveryRequest{Node: c.node, TypeUrl: cdsType}
		_ = c.stream.Send(req)
	}
	select {
	case r, ok := <-c.resps:
		if ok && r != nil {
			return nil
		}
		return <-c.errc
	case <-time.After(15 * time.Second):
		c.t.Fatal("no response and no error")
	}
	return nil
}

// TestXDSMutualTLSBindsNodeGroupToCertificate is the hidden check's three
// cases: no client certificate, a certificate of another group, the right
// one; plus plaintext against the TLS port.
func TestXDSMutualTLSBindsNodeGroupToCertificate(t *testing.T) {
	h := startTLSControlPlane(t, controlplane.Config{}, map[string]string{"a.yaml": specYAML("a", "a.example.com", "10.0.0.1:80")})

	noCert := dialTLS(t, h.addr, tlsconfig.Client{CAFile: h.pki.CAFile}, "envoy-0", "edge")
	if err := noCert.refused(); err == nil {
		t.Fatal("a node without a client certificate was served")
	} else if c := status.Code(err); c != codes.Unavailable && c != codes.Unauthenticated {
		t.Errorf("no certificate: %v, want the handshake refused", err)
	}

	conn, _ := grpc.NewClient(h.addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err := openADS(t, conn, "envoy-p", "edge").refused(); err == nil {
		t.Fatal("a plaintext node was served by the TLS port")
	}

	other := dialTLS(t, h.addr, h.pki.NodeTLS(t, "envoy-other", "other"), "envoy-1", "edge")
	err := other.refused()
	if status.Code(err) != codes.PermissionDenied || !strings.Contains(err.Error(), `"other"`) {
		t.Fatalf("certificate of group other, node.cluster edge: %v, want PermissionDenied naming the certificate's group", err)
	}
	if n := labelledCounter(t, h.reg, "gatehouse_xds_streams_refused_total", "reason", "group_mismatch"); n != 1 {
		t.Errorf("group_mismatch refusals counted %v, want 1", n)
	}

	// A certificate without a node group is not a node.
	srvCert, srvKey := h.pki.Server(t, "not-a-node")
	if err := dialTLS(t, h.addr, tlsconfig.Client{CAFile: h.pki.CAFile, CertFile: srvCert, KeyFile: srvKey}, "envoy-2", "edge").refused(); status.Code(err) != codes.PermissionDenied {
		t.Fatalf("certificate without a node group: %v, want PermissionDenied", err)
	}

	right := dialTLS(t, h.addr, h.pki.NodeTLS(t, "envoy-edge", "edge"), "envoy-3", "edge")
	if err := right.refused(); err != nil {
		t.Fatalf("node with the certificate of its group refused: %v", err)
	}
	if got := h.cp.XDS().Nodes(); len(got) != 1 || got[0].CertGroup != "edge" {
		t.Errorf("nodes = %+v, want envoy-3 with certificate group edge", got)
	}
}

// TestNodeCannotChangeGroupMidStream: the node of a later request may not
// differ from the first one's (go-control-plane would serve its group).
func TestNodeCannotChangeGroupMidStream(t *testing.T) {
	h := startControlPlane(t, controlplane.Config{}, map[string]string{"a.yaml": specYAML("a", "a.example.com", "10.0.0.1:80")})
	c := dialADS(t, h.addr, "n1", "edge")
	c.send(cdsType, nil, "", "", "")
	c.recv(cdsType)
	if err := c.stream.Send(&discoveryv3.DiscoveryRequest{Node: &corev3.Node{Id: "n1", Cluster: "secret-group"}, TypeUrl: ldsType}); err != nil {
		t.Fatal(err)
	}
	timeout := time.After(10 * time.Second)
	for open := true; open; {
		select {
		case _, open = <-c.resps:
		case <-timeout:
			t.Fatal("a stream that changed its node.cluster was not refused")
		}
	}
	if err := <-c.errc; status.Code(err) != codes.PermissionDenied {
		t.Fatalf("changed node.cluster: %v, want PermissionDenied", err)
	}
}

// TestCanaryNeedsMinNACKsFromDistinctAuthenticatedNodes: one canary node
// (NACKing twice) does not roll back; a second distinct one does.
func TestCanaryNeedsMinNACKsFromDistinctAuthenticatedNodes(t *testing.T) {
	h := startTLSControlPlane(t, controlplane.Config{CanaryGroup: "canary", Soak: time.Hour}, map[string]string{"a.yaml": specYAML("a", "a.example.com", "10.0.0.1:80")})
	cc := h.pki.NodeTLS(t, "canary-node", "canary")
	c1 := dialTLS(t, h.addr, cc, "canary-1", "canary")
	c2 := dialTLS(t, h.addr, cc, "canary-2", "canary")
	var v1 [2]*discoveryv3.DiscoveryResponse
	for i, c := range []*adsClient{c1, c2} {
		c.send(cdsType, nil, "", "", "")
		v1[i] = c.recv(cdsType)
		c.send(cdsType, nil, v1[i].GetVersionInfo(), v1[i].GetNonce(), "")
	}
	h.write("b.yaml", specYAML("b", "b.example.com", "10.0.0.2:80")) // a new cluster
	r1, r2 := c1.recv(cdsType), c2.recv(cdsType)
	h.waitRollout(controlplane.PhaseSoaking)

	c1.send(cdsType, nil, v1[0].GetVersionInfo(), r1.GetNonce(), "rejected by node 1")
	time.Sleep(300 * time.Millisecond)
	if ph := h.cp.State().Rollout.Phase; ph != controlplane.PhaseSoaking {
		t.Fatalf("one NACK rolled back (phase %s)", ph)
	}
	// The same node again, on a new stream: still one node.
	c1b := dialTLS(t, h.addr, cc, "canary-1", "canary")
	c1b.send(cdsType, nil, "", "", "")
	r1b := c1b.recv(cdsType)
	c1b.send(cdsType, nil, "", r1b.GetNonce(), "rejected by node 1 again")
	time.Sleep(300 * time.Millisecond)
	if ph := h.cp.State().Rollout.Phase; ph != controlplane.PhaseSoaking {
		t.Fatalf("the same node NACKing twice rolled back (phase %s)", ph)
	}
	long := strings.Repeat("x", 5000)
	c2.send(cdsType, nil, v1[1].GetVersionInfo(), r2.GetNonce(), long)
	st := h.waitRollout(controlplane.PhaseRolledBack)
	if len(st.Rollout.Reason) > 2*1024 || !strings.Contains(st.Rollout.Reason, "canary-2") {
		t.Errorf("rollback reason (%d bytes) = %.200q, want canary-2 and the NACK text capped", len(st.Rollout.Reason), st.Rollout.Reason)
	}
}

// TestMaxNodeGroups: nodes without a certificate cannot create more than
// --max-node-groups groups; groups the specs name are always served.
func TestMaxNodeGroups(t *testing.T) {
	h := startControlPlane(t, controlplane.Config{MaxNodeGroups: 3}, map[string]string{"a.yaml": specYAML("a", "a.example.com", "10.0.0.1:80")})
	h.waitServed("", func(string) bool { return true })
	served, refused := 0, 0
	for i := range 40 {
		c := dialADS(t, h.addr, fmt.Sprintf("n%d", i), fmt.Sprintf("random-%d", i))
		if err := c.refused(); err == nil {
			served++
		} else if status.Code(err) == codes.PermissionDenied {
			refused++
		} else {
			t.Fatalf("stream %d: %v", i, err)
		}
	}
	if served != 3 || refused != 37 {
		t.Errorf("served %d, refused %d; want 3 and 37", served, refused)
	}
	if n := h.cp.Publisher().Groups(); n > 3 {
		t.Errorf("publisher holds %d groups, want at most 3", n)
	}
}

// TestNodeGroupsAllowList: with --node-groups, exactly those.
func TestNodeGroupsAllowList(t *testing.T) {
	h := startControlPlane(t, controlplane.Config{NodeGroups: []string{"edge"}}, map[string]string{"a.yaml": specYAML("a", "a.example.com", "10.0.0.1:80")})
	if err := dialADS(t, h.addr, "n1", "edge").refused(); err != nil {
		t.Fatalf("listed group refused: %v", err)
	}
	if err := dialADS(t, h.addr, "n2", "other").refused(); status.Code(err) != codes.PermissionDenied {
		t.Fatalf("unlisted group: %v, want PermissionDenied", err)
	}
}

// TestIdleNodeGroupsAreDropped: a group whose last node left is dropped
// after the grace period, which frees its place under the cap.
func TestIdleNodeGroupsAreDropped(t *testing.T) {
	h := startControlPlane(t, controlplane.Config{MaxNodeGroups: 1, GroupGrace: 200 * time.Millisecond}, map[string]string{"a.yaml": specYAML("a", "a.example.com", "10.0.0.1:80")})
	h.waitServed("", func(string) bool { return true })
	c := dialADS(t, h.addr, "n1", "g1")
	if err := c.refused(); err != nil {
		t.Fatal(err)
	}
	if err := dialADS(t, h.addr, "n2", "g2").refused(); status.Code(err) != codes.PermissionDenied {
		t.Fatalf("second group under a cap of 1: %v", err)
	}
	c.cancel()
	deadline := time.Now().Add(10 * time.Second)
	for {
		if _, ok := h.cp.Publisher().State().Served["g1"]; !ok {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("idle group g1 still served: %v", h.cp.Publisher().State().Served)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err := dialADS(t, h.addr, "n3", "g2").refused(); err != nil {
		t.Fatalf("g2 after g1 was dropped: %v", err)
	}
}

// TestSecretsNeverGoToSidecars: a subscription of the sidecars' xDS
// client to SDS secrets is refused; an Envoy of the group gets them.
func TestSecretsNeverGoToSidecars(t *testing.T) {
	certDir := t.TempDir()
	writeCert(t, certDir, "shop-cert", "shop.example.com")
	cfg := controlplane.Config{}
	cfg.Compile.CertDir = certDir
	h := startControlPlane(t, cfg, map[string]string{"shop.yaml": withTLS(specYAML("shop", "shop.example.com", "10.0.0.1:80"), "shop-cert")})
	h.waitServed("", func(string) bool { return true })

	side := dialADS(t, h.addr, "dev-authz", "edge")
	side.node.UserAgentName = xdsclient.UserAgent
	side.send(sdsType, []string{"shop-cert"}, "", "", "")
	select {
	case r, ok := <-side.resps:
		if ok {
			t.Fatalf("sidecar got %d secrets", len(r.GetResources()))
		}
	case <-time.After(15 * time.Second):
		t.Fatal("sidecar stream neither refused nor answered")
	}
	if _, err := side.stream.Recv(); status.Code(err) != codes.PermissionDenied {
		t.Fatalf("sidecar SDS subscription: %v, want PermissionDenied", err)
	}

	envoyNode := dialADS(t, h.addr, "envoy-1", "edge")
	envoyNode.node.UserAgentName = "envoy"
	envoyNode.send(sdsType, []string{"shop-cert"}, "", "", "")
	if r := envoyNode.recv(sdsType); len(r.GetResources()) != 1 {
		t.Fatalf("envoy got %d secrets, want 1", len(r.GetResources()))
	}
}

// labelledCounter is the value of name{label=value} in reg (0 if absent).
func labelledCounter(t *testing.T, reg *prometheus.Registry, name, label, value string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == label && l.GetValue() == value {
					return m.GetCounter().GetValue()
				}
			}
		}
	}
	return 0
}
