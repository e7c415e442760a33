package broker_test

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/gatehouse-edge/gatehouse/broker"
	"github.com/gatehouse-edge/gatehouse/broker/osbclient"
	"github.com/gatehouse-edge/gatehouse/broker/queue/sqlitequeue"
	"github.com/gatehouse-edge/gatehouse/broker/store/sqlitestore"
	"github.com/gatehouse-edge/gatehouse/spec"
)

// TestBrokerRefusesNodeServicesEvenWhenAllowed: with the operator's
// allow-list covering loopback, the broker still answers 400 for an
// upstream equal to a node service (a sidecar) or to the broker itself,
// and 202 for the allowed address.
func TestBrokerRefusesNodeServicesEvenWhenAllowed(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	dir := t.TempDir()
	st, err := sqlitestore.Open(ctx, filepath.Join(dir, "store.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	q, err := sqlitequeue.Open(ctx, filepath.Join(dir, "queue.db"), sqlitequeue.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer q.Close()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		err := broker.Run(ctx, broker.Config{Store: st, Queue: q, Username: "u", Password: "p",
			Log: slog.New(slog.NewTextHandler(io.Discard, nil)), Registry: prometheus.NewRegistry(), HTTPListener: l, AdminAddr: "-",
			UpstreamAllow: spec.MustParseUpstreamAllow("127.0.0.0/8"),
			NodeServices:  []spec.NodeService{{Addr: "127.0.0.1:9001", What: "the authz sidecar"}}})
		if err != nil && ctx.Err() == nil {
			t.Errorf("broker.Run: %v", err)
		}
	}()
	defer func() { cancel(); wg.Wait() }()
	c := &osbclient.Client{BaseURL: "http://" + l.Addr().String(), Username: "u", Password: "p"}
	body := func(name, ep string) []byte {
		return []byte(`{"apiVersion":"gatehouse/v1","kind":"EdgeRoute","metadata":{"name":"` + name + `","team":"t"},
"spec":{"hosts":["` + name + `.example.com"],"upstreams":[{"name":"api","endpoints":["` + ep + `"]}],
"routes":[{"name":"r","match":{"pathPrefix":"/"},"upstream":"api"}]}}`)
	}
	for name, tc := range map[string]struct{ ep, what string }{
		"sidecar": {"127.0.0.1:9001", "the authz sidecar"},
		"itself":  {l.Addr().String(), "the broker"},
	} {
		_, err := c.Provision(ctx, name, body(name, tc.ep))
		var oe *osbclient.Error
		if !errors.As(err, &oe) || oe.Code != 400 || !strings.Contains(oe.Description, "spec.upstreams[0].endpoints[0]") || !strings.Contains(oe.Description, tc.what) {
			t.Errorf("upstream %s: %v, want 400 naming %s", tc.ep, err, tc.what)
		}
	}
	if _, err := c.Provision(ctx, "ok", body("ok", "127.0.0.1:9080")); err != nil {
		t.Errorf("allowed upstream: %v", err)
	}
}
