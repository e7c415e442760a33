package controlplane_test

import (
	"context"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"github.com/envoyproxy/go-control-plane/pkg/cache/types"
	cachev3 "github.com/envoyproxy/go-control-plane/pkg/cache/v3"
	serverv3 "github.com/envoyproxy/go-control-plane/pkg/server/v3"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	statuspb "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/proto"

	"github.com/gatehouse-edge/gatehouse/controlplane"
	"github.com/gatehouse-edge/gatehouse/controlplane/xds"
)

func examples(t *testing.T) map[string]string {
	t.Helper()
	out := map[string]string{}
	for _, f := range []string{"petstore.yaml", "status-page.yaml"} {
		b, err := os.ReadFile(filepath.Join("..", "deploy", "examples", f))
		if err != nil {
			t.Fatal(err)
		}
		out[f] = string(b)
	}
	return out
}

func names[T interface{ GetName() string }](t *testing.T, r *discoveryv3.DiscoveryResponse, mk func() T) []string {
	t.Helper()
	var out []string
	for _, a := range r.GetResources() {
		m := mk()
		if err := a.UnmarshalTo(any(m).(proto.Message)); err != nil {
			t.Fatal(err)
		}
		out = append(out, m.GetName())
	}
	return out
}

// TestFleetNodeReceivesAndACKs drives an Envoy-like ADS client through
// CDS, EDS, LDS and RDS and checks what it receives and what the control
// plane records about it.
func TestFleetNodeReceivesAndACKs(t *testing.T) {
	h := startControlPlane(t, controlplane.Config{}, examples(t))
	c := dialADS(t, h.addr, "envoy-1", "us-east-1")

	c.send(cdsType, nil, "", "", "")
	cds := c.recv(cdsType)
	version := cds.GetVersionInfo()
	got := names(t, cds, func() *clusterv3.Cluster { return &clusterv3.Cluster{} })
	for _, want := range []string{"gatehouse_authz", "gatehouse_ratelimit", "gatehouse_accesslog", "petstore/api", "status-page/web"} {
		if !slices.Contains(got, want) {
			t.Errorf("CDS lacks %s: %v", want, got)
		}
	}
	c.send(cdsType, nil, version, cds.GetNonce(), "")

	c.send(edsType, []string{"petstore/api"}, "", "", "")
	eds := c.recv(edsType)
	cla := &endpointv3.ClusterLoadAssignment{}
	if len(eds.GetResources()) != 1 || eds.GetResources()[0].UnmarshalTo(cla) != nil {
		t.Fatalf("EDS = %v", eds.GetResources())
	}
	if ep := cla.GetEndpoints()[0].GetLbEndpoints()[0].GetEndpoint().GetAddress().GetSocketAddress(); ep.GetAddress() != "192.0.2.10" || ep.GetPortValue() != 9080 {
		t.Errorf("petstore/api endpoint = %v", ep)
	}
	c.send(edsType, []string{"petstore/api"}, eds.GetVersionInfo(), eds.GetNonce(), "")

	c.send(ldsType, nil, "", "", "")
	lds := c.recv(ldsType)
	if got := names(t, lds, func() *listenerv3.Listener { return &listenerv3.Listener{} }); !slices.Equal(got, []string{"gatehouse_http"}) {
		t.Errorf("LDS = %v", got)
	}
	c.send(ldsType, nil, lds.GetVersionInfo(), lds.GetNonce(), "")

	c.send(rdsType, []string{"gatehouse_routes"}, "", "", "")
	rds := c.recv(rdsType)
	rc := &routev3.RouteConfiguration{}
	if err := rds.GetResources()[0].UnmarshalTo(rc); err != nil {
		t.Fatal(err)
	}
	var vhosts []string
	for _, vh := range rc.GetVirtualHosts() {
		vhosts = append(vhosts, vh.GetName())
	}
	if !slices.Equal(vhosts, []string{"petstore", "status-page"}) {
		t.Errorf("virtual hosts = %v", vhosts)
	}
	c.send(rdsType, []string{"gatehouse_routes"}, rds.GetVersionInfo(), rds.GetNonce(), "")

	// Each type carries its own version: the snapshot's for that type.
	served := typeVersions(t, h.cp, "us-east-1")
	for _, r := range []*discoveryv3.DiscoveryResponse{cds, eds, lds, rds} {
		if r.GetVersionInfo() != served[r.GetTypeUrl()] {
			t.Errorf("%s version %q, want the type's version %q", r.GetTypeUrl(), r.GetVersionInfo(), served[r.GetTypeUrl()])
		}
	}
	// The control plane recorded every ACK, and the revision they add up to.
	rev := h.cp.Publisher().State().Served["us-east-1"]
	deadline := time.Now().Add(10 * time.Second)
	for {
		nodes := h.cp.XDS().Nodes()
		if len(nodes) == 1 && len(nodes[0].Acked) == 4 {
			n := nodes[0]
			if n.NodeID != "envoy-1" || n.NodeGroup != "us-east-1" || n.Acked[cdsType] != version || n.Revision != rev || n.LastNACK != nil {
				t.Fatalf("node status = %+v", n)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("ACKs not recorded: %+v", nodes)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestNACKIsRecordedAndNotResent: a node rejecting a version gets no
// re-send of it (go-control-plane#962), is recorded per node, and receives
// the next version when there is one.
func TestNACKIsRecordedAndNotResent(t *testing.T) {
	h := startControlPlane(t, controlplane.Config{}, map[string]string{"a.yaml": specYAML("a", "a.example.com", "10.0.0.1:80")})
	c := dialADS(t, h.addr, "envoy-1", "us-east-1")
	c.send(cdsType, nil, "", "", "")
	v1 := c.recv(cdsType)
	c.send(cdsType, nil, "", v1.GetNonce(), "cluster a/api: rejected by this Envoy")

	if n := c.count(time.Second); n != 0 {
		t.Fatalf("%d responses after the NACK, want none until the next version", n)
	}
	nodes := h.cp.XDS().Nodes()
	if len(nodes) != 1 || nodes[0].LastNACK == nil {
		t.Fatalf("NACK not recorded: %+v", nodes)
	}
	if n := nodes[0].LastNACK; n.TypeVersion != v1.GetVersionInfo() || n.Version != h.cp.Publisher().State().Served["us-east-1"] || n.TypeURL != cdsType || !strings.Contains(n.Message, "rejected by this Envoy") {
		t.Errorf("last NACK = %+v", n)
	}
	if got := testutil.ToFloat64(mustCounter(t, h, "gatehouse_xds_nack_resends_suppressed_total")); got < 1 {
		t.Errorf("suppressed re-sends = %v", got)
	}
	if got := gaugeValue(t, h, "gatehouse_xds_streams_rejecting"); got != 1 {
		t.Errorf("streams rejecting = %v, want 1", got)
	}

	// A new spec brings a new cluster: a new CDS version.
	h.write("b.yaml", specYAML("b", "b.example.com", "10.0.0.2:80"))
	v2 := c.recv(cdsType)
	if v2.GetVersionInfo() == v1.GetVersionInfo() {
		t.Fatal("got the rejected version again")
	}
	c.send(cdsType, nil, v2.GetVersionInfo(), v2.GetNonce(), "")
	if n := c.count(500 * time.Millisecond); n != 0 {
		t.Errorf("%d responses after ACKing the new version", n)
	}
	if got := gaugeValue(t, h, "gatehouse_xds_streams_rejecting"); got != 0 {
		t.Errorf("streams rejecting after the ACK = %v, want 0", got)
	}
}

// TestNACKLoopInPlainGoControlPlane shows the bug the test above guards
// against: the same client against go-control-plane's plain snapshot cache
// is sent the rejected version again and again. If this ever stops
// failing upstream, the suppression can go.
func TestNACKLoopInPlainGoControlPlane(t *testing.T) {
	cache := cachev3.NewSnapshotCache(false, xds.GroupHash{}, nil)
	snap, err := cachev3.NewSnapshot("v1", map[string][]types.Resource{cdsType: {&clusterv3.Cluster{Name: "x"}}})
	if err != nil {
		t.Fatal(err)
	}
	if err := cache.SetSnapshot(context.Background(), "g", snap); err != nil {
		t.Fatal(err)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	gs := grpc.NewServer()
	discoveryv3.RegisterAggregatedDiscoveryServiceServer(gs, serverv3.NewServer(context.Background(), cache, nil))
	go gs.Serve(l)
	t.Cleanup(gs.Stop)

	c := dialADS(t, l.Addr().String(), "n", "g")
	c.send(cdsType, nil, "", "", "")
	responses := 0
	deadline := time.After(10 * time.Second)
	for responses < 20 {
		select {
		case r := <-c.resps:
			responses++
			c.send(cdsType, nil, "", r.GetNonce(), "rejected")
		case <-deadline:
			t.Fatalf("only %d responses: go-control-plane no longer loops on NACK", responses)
		}
	}
}

// TestDeltaNACKIsNotResent does the same over delta xDS.
func TestDeltaNACKIsNotResent(t *testing.T) {
	h := startControlPlane(t, controlplane.Config{}, map[string]string{"a.yaml": specYAML("a", "a.example.com", "10.0.0.1:80")})
	conn, err := grpc.NewClient(h.addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	st, err := discoveryv3.NewAggregatedDiscoveryServiceClient(conn).DeltaAggregatedResources(ctx)
	if err != nil {
		t.Fatal(err)
	}
	resps := make(chan *discoveryv3.DeltaDiscoveryResponse, 16)
	go func() {
		for {
			r, err := st.Recv()
			if err != nil {
				close(resps)
				return
			}
			resps <- r
		}
	}()
	node := dialNode("delta-1", "us-east-1")
	if err := st.Send(&discoveryv3.DeltaDiscoveryRequest{Node: node, TypeUrl: cdsType}); err != nil {
		t.Fatal(err)
	}
	var first *discoveryv3.DeltaDiscoveryResponse
	select {
	case first = <-resps:
	case <-time.After(15 * time.Second):
		t.Fatal("no delta response")
	}
	var got []string
	for _, r := range first.GetResources() {
		got = append(got, r.GetName())
	}
	if !slices.Contains(got, "a/api") || !slices.Contains(got, "gatehouse_authz") {
		t.Fatalf("delta CDS = %v", got)
	}
	if err := st.Send(&discoveryv3.DeltaDiscoveryRequest{TypeUrl: cdsType, ResponseNonce: first.GetNonce(), ErrorDetail: &statuspb.Status{Code: 3, Message: "nope"}}); err != nil {
		t.Fatal(err)
	}
	select {
	case r := <-resps:
		t.Fatalf("re-sent after a delta NACK: %v", r)
	case <-time.After(time.Second):
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		nodes := h.cp.XDS().Nodes()
		if len(nodes) == 1 && nodes[0].LastNACK != nil {
			if nodes[0].Protocol != "delta" || nodes[0].LastNACK.Message != "nope" {
				t.Fatalf("node = %+v", nodes[0])
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("delta NACK not recorded: %+v", nodes)
		}
		time.Sleep(10 * time.Millisecond)
	}
	// A changed cluster arrives as a delta holding just that cluster.
	h.write("a.yaml", strings.Replace(specYAML("a", "a.example.com", "10.0.0.1:80"),
		`upstreams: [{name: api, endpoints: ["10.0.0.1:80"]}]`,
		`upstreams: [{name: api, endpoints: ["10.0.0.1:80"], connectTimeout: 5s}]`, 1))
	select {
	case r := <-resps:
		if len(r.GetResources()) != 1 || r.GetResources()[0].GetName() != "a/api" {
			var n []string
			for _, x := range r.GetResources() {
				n = append(n, x.GetName())
			}
			t.Fatalf("delta after change = %v, want just a/api", n)
		}
	case <-time.After(15 * time.Second):
		t.Fatal("no delta after the change")
	}
}

func dialNode(id, group string) *corev3.Node { return &corev3.Node{Id: id, Cluster: group} }

func mustCounter(t *testing.T, h *harness, name string) prometheus.Collector {
	t.Helper()
	mfs, err := h.reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	total := 0.0
	found := false
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		found = true
		for _, m := range mf.GetMetric() {
			total += m.GetCounter().GetValue()
		}
	}
	if !found {
		t.Fatalf("metric %s not registered", name)
	}
	c := prometheus.NewCounter(prometheus.CounterOpts{Name: "x"})
	c.Add(total)
	return c
}

func gaugeValue(t *testing.T, h *harness, name string) float64 {
	t.Helper()
	mfs, err := h.reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == name && len(mf.GetMetric()) == 1 {
			return mf.GetMetric()[0].GetGauge().GetValue()
		}
	}
	t.Fatalf("gauge %s not found", name)
	return 0
}
