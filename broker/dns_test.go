package broker_test

import (
	"bytes"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gatehouse-edge/gatehouse/broker/api"
	"github.com/gatehouse-edge/gatehouse/broker/dns"
)

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// TestDNSStepDryRun runs the optional DNS step in dry-run mode through the
// pipeline: provision upserts a record per host, an update deletes the
// records of hosts it drops, deprovision deletes the rest.
func TestDNSStepDryRun(t *testing.T) {
	var buf syncBuffer
	p := newPipeline(t, pipelineOpts{dns: dns.DryRun{Log: slog.New(slog.NewTextHandler(&buf, nil))}})
	p.provision(t, "d1", edgeRoute("dnsdemo", "a.dns.example.com", "b.dns.example.com"))
	if out := buf.String(); !containsAll(out, "action=UPSERT name=a.dns.example.com type=CNAME value=edge.example.net", "action=UPSERT name=b.dns.example.com") {
		t.Fatalf("after provision:\n%s", out)
	}
	r := p.do(t, "PATCH", "/v2/service_instances/d1?accepts_incomplete=true", map[string]any{"service_id": api.ServiceID, "parameters": edgeRoute("dnsdemo", "a.dns.example.com")})
	p.expect(t, r, 202, "update")
	if last := p.waitOp(t, "/v2/service_instances/d1", r.str("operation"), 20*time.Second); last.str("state") != "succeeded" {
		t.Fatal(last.Raw)
	}
	if out := buf.String(); !strings.Contains(out, "action=DELETE name=b.dns.example.com") || strings.Contains(out, "action=DELETE name=a.dns.example.com") {
		t.Fatalf("after dropping b:\n%s", out)
	}
	r = p.do(t, "DELETE", "/v2/service_instances/d1?accepts_incomplete=true&service_id="+api.ServiceID+"&plan_id="+api.PlanID, nil)
	p.expect(t, r, 202, "deprovision")
	p.waitOp(t, "/v2/service_instances/d1", r.str("operation"), 20*time.Second)
	if out := buf.String(); !strings.Contains(out, "action=DELETE name=a.dns.example.com") {
		t.Fatalf("after deprovision:\n%s", out)
	}
}
