package e2e

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/gatehouse-edge/gatehouse/broker/osbclient"
)

// TestDevAllowsExactlyItsDemoUpstream: gatehouse dev provisions the
// examples against its echo upstream (the one address on the node it
// allows) and refuses, with 400 and the field path, a spec pointing at
// anything else on the node: a sidecar, the broker, Envoy admin.
func TestDevAllowsExactlyItsDemoUpstream(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	s := startSuite(t, ctx)
	specFor := func(name, endpoint string) []byte {
		return []byte(`{"apiVersion":"gatehouse/v1","kind":"EdgeRoute","metadata":{"name":"` + name + `","team":"t"},
"spec":{"hosts":["` + name + `.example.com"],"upstreams":[{"name":"api","endpoints":["` + endpoint + `"]}],
"routes":[{"name":"r","match":{"pathPrefix":"/"},"upstream":"api"}]}}`)
	}
	for i, ep := range []string{s.ep.Authz, strings.TrimPrefix(s.ep.Broker, "http://"), "127.0.0.1:9901", "169.254.169.254:80"} {
		_, err := s.osb.Provision(ctx, "bad"+string(rune('a'+i)), specFor("bad"+string(rune('a'+i)), ep))
		var oe *osbclient.Error
		if !errors.As(err, &oe) || oe.Code != 400 || !strings.Contains(oe.Description, "spec.upstreams[0].endpoints[0]") {
			t.Errorf("provision with upstream %s: %v, want 400 naming spec.upstreams[0].endpoints[0]", ep, err)
		}
	}
	echo := strings.TrimPrefix(s.ep.Echo, "http://")
	resp, err := s.osb.Provision(ctx, "echo", specFor("echo", echo))
	if err != nil {
		t.Fatalf("provision with the demo upstream %s: %v", echo, err)
	}
	final, err := osbclient.Wait(ctx, time.Minute, func(ctx context.Context) (*osbclient.Response, error) {
		return s.osb.LastOperation(ctx, "echo", resp.Operation)
	}, nil)
	if err != nil || final.State != "succeeded" {
		t.Fatalf("provision with the demo upstream: %v %+v", err, final)
	}
}
