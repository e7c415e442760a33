package broker_test

import (
	"context"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/route53"

	"github.com/gatehouse-edge/gatehouse/broker/api"
	"github.com/gatehouse-edge/gatehouse/broker/dns"
	"github.com/gatehouse-edge/gatehouse/broker/dns/route53fake"
	"github.com/gatehouse-edge/gatehouse/internal/testenv"
)

// TestDNSStepDryRun runs the optional DNS step in dry-run mode through the
// pipeline: provision would create a record per host, an update would
// delete the records of hosts it drops, deprovision the rest.
func TestDNSStepDryRun(t *testing.T) {
	var buf testenv.SyncBuffer
	p := newPipeline(t, pipelineOpts{dns: dns.DryRun{Log: slog.New(slog.NewTextHandler(&buf, nil))}})
	p.provision(t, "d1", edgeRoute("dnsdemo", "a.dns.example.com", "b.dns.example.com"))
	if out := buf.String(); !containsAll(out, "would create", "name=a.dns.example.com type=CNAME value=edge.example.net", "name=b.dns.example.com", "marker=_gatehouse.a.dns.example.com", "gatehouse/instance=d1") {
		t.Fatalf("after provision:\n%s", out)
	}
	r := p.do(t, "PATCH", "/v2/service_instances/d1?accepts_incomplete=true", map[string]any{"service_id": api.ServiceID, "parameters": edgeRoute("dnsdemo", "a.dns.example.com")})
	p.expect(t, r, 202, "update")
	if last := p.waitOp(t, "/v2/service_instances/d1", r.str("operation"), 20*time.Second); last.str("state") != "succeeded" {
		t.Fatal(last.Raw)
	}
	if out := buf.String(); !strings.Contains(out, "would delete record if owned\" instance=d1 name=b.dns.example.com") || strings.Contains(out, "would delete record if owned\" instance=d1 name=a.dns.example.com") {
		t.Fatalf("after dropping b:\n%s", out)
	}
	r = p.do(t, "DELETE", "/v2/service_instances/d1?accepts_incomplete=true&service_id="+api.ServiceID+"&plan_id="+api.PlanID, nil)
	p.expect(t, r, 202, "deprovision")
	p.waitOp(t, "/v2/service_instances/d1", r.str("operation"), 20*time.Second)
	if out := buf.String(); !strings.Contains(out, "would delete record if owned\" instance=d1 name=a.dns.example.com") {
		t.Fatalf("after deprovision:\n%s", out)
	}
}

// TestDNSStepOwnsItsRecords drives provision, update and deprovision over
// OSB HTTP with the worker's DNS step on the real Route 53 SDK client
// against the Route 53 double: the step creates records with ownership
// markers, refuses hosts whose records it did not create (the operation
// fails, nothing is published or overwritten), and deprovision removes
// exactly what it created. On SQLite and on DynamoDB (dynalite) + SQS
// (goaws).
func TestDNSStepOwnsItsRecords(t *testing.T) {
	for _, be := range allBackends(t) {
		t.Run(be.name, func(t *testing.T) {
			st, q := be.open(t, 2*time.Second)
			z := route53fake.Start(t, "ZGATE")
			z.Put(route53fake.RRSet{Name: "legacy.dns.example.com", Type: "CNAME", TTL: 60, Values: []string{"old.example.net"}})
			z.Put(route53fake.RRSet{Name: "vpn.dns.example.com", Type: "A", TTL: 60, Values: []string{"192.0.2.1"}})
			// A leftover of another Gatehouse deployment sharing the zone.
			z.Put(route53fake.RRSet{Name: "other.dns.example.com", Type: "CNAME", TTL: 60, Values: []string{"edge.other.net"}})
			z.Put(route53fake.RRSet{Name: "_gatehouse.other.dns.example.com", Type: "TXT", TTL: 60, Values: []string{`"heritage=gatehouse,gatehouse/owner=staging,gatehouse/instance=x"`}})
			r53 := route53.New(route53.Options{Region: "us-east-1", BaseEndpoint: aws.String(z.URL), Credentials: testenv.AWSCredentials(), RetryMaxAttempts: 1})
			p := newPipeline(t, pipelineOpts{store: st, queue: q, dns: &dns.Route53{Client: r53, ZoneID: "ZGATE"}})
			ctx := context.Background()

			p.provision(t, "d1", edgeRoute("dnsowned", "a.dns.example.com", "b.dns.example.com"))
			for _, h := range []string{"a.dns.example.com", "b.dns.example.com"} {
				if s, ok := z.Get(h, "CNAME"); !ok || s.Values[0] != "edge.example.net" {
					t.Fatalf("%s = %+v %v", h, s, ok)
				}
				if s, ok := z.Get("_gatehouse."+h, "TXT"); !ok || !strings.Contains(s.Values[0], "gatehouse/instance=d1") {
					t.Fatalf("marker of %s = %+v %v", h, s, ok)
				}
			}
			// Names Gatehouse did not create, or another owner's: refused,
			// nothing published, nothing overwritten.
			for i, h := range []string{"legacy.dns.example.com", "vpn.dns.example.com", "other.dns.example.com"} {
				id := "take" + string(rune('0'+i))
				r := p.do(t, "PUT", "/v2/service_instances/"+id+"?accepts_incomplete=true", provisionBody(edgeRoute("takeover"+string(rune('0'+i)), h)))
				p.expect(t, r, 202, "provision "+h)
				last := p.waitOp(t, "/v2/service_instances/"+id, r.str("operation"), 20*time.Second)
				if last.str("state") != "failed" || !strings.Contains(last.str("description"), "host "+h) || !strings.Contains(last.str("description"), "Gatehouse changes only records it created") {
					t.Fatalf("provision over %s: %s", h, last.Raw)
				}
				if _, err := p.Store.GetSpec(ctx, "takeover"+string(rune('0'+i))); err == nil {
					t.Fatalf("the spec claiming %s reached the route store", h)
				}
			}
			if s, _ := z.Get("legacy.dns.example.com", "CNAME"); s.Values[0] != "old.example.net" {
				t.Fatalf("legacy record overwritten: %+v", s)
			}
			if s, _ := z.Get("other.dns.example.com", "CNAME"); s.Values[0] != "edge.other.net" {
				t.Fatalf("the other deployment's record overwritten: %+v", s)
			}
			// Update drops b: exactly b's record and marker go.
			r := p.do(t, "PATCH", "/v2/service_instances/d1?accepts_incomplete=true", map[string]any{"service_id": api.ServiceID, "parameters": edgeRoute("dnsowned", "a.dns.example.com")})
			p.expect(t, r, 202, "update")
			if last := p.waitOp(t, "/v2/service_instances/d1", r.str("operation"), 20*time.Second); last.str("state") != "succeeded" {
				t.Fatal(last.Raw)
			}
			if _, ok := z.Get("b.dns.example.com", "CNAME"); ok {
				t.Fatal("b's record survived the update that dropped it")
			}
			if _, ok := z.Get("_gatehouse.b.dns.example.com", "TXT"); ok {
				t.Fatal("b's marker survived the update that dropped it")
			}
			// Deprovision removes exactly what d1 created.
			r = p.do(t, "DELETE", "/v2/service_instances/d1?accepts_incomplete=true&service_id="+api.ServiceID+"&plan_id="+api.PlanID, nil)
			p.expect(t, r, 202, "deprovision")
			p.waitOp(t, "/v2/service_instances/d1", r.str("operation"), 20*time.Second)
			var left []string
			for _, s := range z.Sets() {
				left = append(left, s.Name+"/"+s.Type)
			}
			if got := strings.Join(left, " "); got != "legacy.dns.example.com/CNAME other.dns.example.com/CNAME _gatehouse.other.dns.example.com/TXT vpn.dns.example.com/A" {
				t.Fatalf("zone after deprovision: %s", got)
			}
		})
	}
}
