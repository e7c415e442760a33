package frontdoor

import (
	"context"
	"github.com/gatehouse-edge/gatehouse/contract"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	alv3 "github.com/envoyproxy/go-control-plane/envoy/data/accesslog/v3"
	extauthzv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/ext_authz/v3"
	alsv3 "github.com/envoyproxy/go-control-plane/envoy/service/accesslog/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/gatehouse-edge/gatehouse/controlplane/compile"
	"github.com/gatehouse-edge/gatehouse/controlplane/envoy"
	"github.com/gatehouse-edge/gatehouse/internal/testenv"
)

// alsCollector is a real ALS server handing each HTTP entry to a channel.
type alsCollector struct {
	alsv3.UnimplementedAccessLogServiceServer
	entries chan *alv3.HTTPAccessLogEntry
}

func (c *alsCollector) StreamAccessLogs(s alsv3.AccessLogService_StreamAccessLogsServer) error {
	for {
		m, err := s.Recv()
		if err != nil {
			return nil
		}
		for _, e := range m.GetHttpLogs().GetLogEntry() {
			c.entries <- e
		}
	}
}

// TestDoorFillsCustomTagsFromRouteMetadata: the door fills the ALS
// entry's custom_tags as Envoy does from the access log's custom_tags
// config: config_version is the matched route's gatehouse.revision
// metadata, on a public route (no ext_authz, so no dynamic metadata) as
// on any other; the value equals the route table's gatehouse.revision
// context extension, both from the xDS the node holds. A request no
// route matches has no route metadata and so no tag; request headers
// never set it.
func TestDoorFillsCustomTagsFromRouteMetadata(t *testing.T) {
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}))
	defer up.Close()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	col := &alsCollector{entries: make(chan *alv3.HTTPAccessLogEntry, 8)}
	srv := grpc.NewServer()
	alsv3.RegisterAccessLogServiceServer(srv, col)
	go func() { _ = srv.Serve(l) }()
	defer srv.Stop()

	sidecars := envoy.Sidecars{Authz: testenv.ClosedAddr(t), RateLimit: testenv.ClosedAddr(t), AccessLog: l.Addr().String()}
	node := compiledNode(t, compile.Options{Sidecars: sidecars, HTTPAddress: "127.0.0.1:10080"},
		strings.Replace(doorSpec, "UPSTREAM", strings.TrimPrefix(up.URL, "http://"), 1))
	rc := node.routes[envoy.RouteConfigName]
	per := &extauthzv3.ExtAuthzPerRoute{}
	if err := rc.GetTypedPerFilterConfig()[contract.ExtAuthzFilter].UnmarshalTo(per); err != nil {
		t.Fatal(err)
	}
	version := per.GetCheckSettings().GetContextExtensions()[contract.ContextRevision]
	if version == "" {
		t.Fatal("the route table has no gatehouse.revision")
	}
	door, err := New(node, Options{Dial: []grpc.DialOption{grpc.WithTransportCredentials(insecure.NewCredentials())}})
	if err != nil {
		t.Fatal(err)
	}
	defer door.Close()
	next := func() *alv3.HTTPAccessLogEntry {
		t.Helper()
		select {
		case e := <-col.entries:
			return e
		case <-time.After(10 * time.Second):
			t.Fatal("no ALS entry within 10s")
			return nil
		}
	}

	// A client cannot name the version its request counts under.
	o, err := door.Do(context.Background(), Request{Method: "GET", Host: "s.example.com", Path: "/", ClientIP: "192.0.2.1",
		Headers: map[string]string{"config_version": "forged", "x-gatehouse-revision": "forged"}})
	if err != nil {
		t.Fatal(err)
	}
	if o.Status != http.StatusOK || o.Route != "s/public" {
		t.Fatalf("public route: %d on %q, want 200 on s/public", o.Status, o.Route)
	}
	e := next()
	if e.GetCommonProperties().GetMetadata() != nil {
		t.Errorf("public route entry has dynamic metadata %v; ext_authz is disabled there", e.GetCommonProperties().GetMetadata())
	}
	if got := e.GetCommonProperties().GetCustomTags()[contract.ConfigVersionTag]; got != version {
		t.Errorf("public route entry custom_tags %v, want config_version %q", e.GetCommonProperties().GetCustomTags(), version)
	}

	if _, err := door.Do(context.Background(), Request{Method: "GET", Host: "other.example.com", Path: "/"}); err != nil {
		t.Fatal(err)
	}
	if e := next(); len(e.GetCommonProperties().GetCustomTags()) != 0 {
		t.Errorf("no-route entry custom_tags %v, want none", e.GetCommonProperties().GetCustomTags())
	}
}
