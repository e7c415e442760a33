package broker_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/cloudfront"
	"github.com/aws/aws-sdk-go-v2/service/route53"

	"github.com/gatehouse-edge/gatehouse/broker/api"
	"github.com/gatehouse-edge/gatehouse/broker/cdn"
	"github.com/gatehouse-edge/gatehouse/broker/cdn/cloudfrontfake"
	"github.com/gatehouse-edge/gatehouse/broker/dns"
	"github.com/gatehouse-edge/gatehouse/broker/dns/route53fake"
	"github.com/gatehouse-edge/gatehouse/internal/testenv"
)

func cdnProvisionBody(params any) map[string]any {
	b := provisionBody(params)
	b["plan_id"] = cdn.PlanID
	return b
}

// TestCDNPlanOwnsItsDistribution drives the CDN plan over OSB HTTP with
// the worker's CloudFront and Route 53 steps on the real SDK clients
// against the two doubles: provision creates a distribution (origin: the
// fleet's load balancer) and points the DNS records at it, an update
// changes its aliases, a host of somebody else's distribution is refused
// before anything is published, and deprovision removes the records,
// disables the distribution and deletes it once deployed, never touching
// anybody else's. On SQLite and on DynamoDB (dynalite) + SQS (goaws).
func TestCDNPlanOwnsItsDistribution(t *testing.T) {
	for _, be := range allBackends(t) {
		t.Run(be.name, func(t *testing.T) {
			st, q := be.open(t, 2*time.Second)
			cf := cloudfrontfake.Start(t)
			theirs := cf.Put("somebody-else", "shop.cdn.example.com")
			z := route53fake.Start(t, "ZCDN")
			cfc := cloudfront.New(cloudfront.Options{Region: "us-east-1", BaseEndpoint: aws.String(cf.URL), Credentials: testenv.AWSCredentials(), RetryMaxAttempts: 1})
			r53 := route53.New(route53.Options{Region: "us-east-1", BaseEndpoint: aws.String(z.URL), Credentials: testenv.AWSCredentials(), RetryMaxAttempts: 1})
			p := newPipeline(t, pipelineOpts{store: st, queue: q,
				dns: &dns.Route53{Client: r53, ZoneID: "ZCDN"},
				cdn: &cdn.CloudFront{Client: cfc, Origin: "fleet-lb.example.net", Poll: 5 * time.Millisecond}})
			ctx := context.Background()

			r := p.do(t, "PUT", "/v2/service_instances/c1?accepts_incomplete=true", cdnProvisionBody(edgeRoute("cdnpets", "a.cdn.example.com")))
			p.expect(t, r, 202, "provision on the CDN plan")
			if last := p.waitOp(t, "/v2/service_instances/c1", r.str("operation"), 20*time.Second); last.str("state") != "succeeded" {
				t.Fatalf("provision: %s", last.Raw)
			}
			var mine cloudfrontfake.Distribution
			for _, d := range cf.Distributions() {
				if d.CallerReference == "gatehouse:gatehouse:c1" {
					mine = d
				}
			}
			if mine.ID == "" || mine.Origin != "fleet-lb.example.net" || strings.Join(mine.Aliases, ",") != "a.cdn.example.com" {
				t.Fatalf("distributions: %+v", cf.Distributions())
			}
			if s, ok := z.Get("a.cdn.example.com", "CNAME"); !ok || s.Values[0] != mine.DomainName {
				t.Fatalf("a.cdn.example.com = %+v, want a CNAME to %s", s, mine.DomainName)
			}

			// The plan cannot change in an update.
			p.expect(t, p.do(t, "PATCH", "/v2/service_instances/c1?accepts_incomplete=true", map[string]any{"service_id": api.ServiceID, "plan_id": api.PlanID,
				"parameters": edgeRoute("cdnpets", "a.cdn.example.com", "b.cdn.example.com")}), 400, "plan change")

			// Host change: the distribution's aliases follow, and the new
			// record points at it too.
			r = p.do(t, "PATCH", "/v2/service_instances/c1?accepts_incomplete=true", map[string]any{"service_id": api.ServiceID, "parameters": edgeRoute("cdnpets", "a.cdn.example.com", "b.cdn.example.com")})
			p.expect(t, r, 202, "update")
			if last := p.waitOp(t, "/v2/service_instances/c1", r.str("operation"), 20*time.Second); last.str("state") != "succeeded" {
				t.Fatalf("update: %s", last.Raw)
			}
			for _, d := range cf.Distributions() {
				if d.ID == mine.ID && strings.Join(d.Aliases, ",") != "a.cdn.example.com,b.cdn.example.com" {
					t.Fatalf("aliases after the update: %v", d.Aliases)
				}
			}
			if s, ok := z.Get("b.cdn.example.com", "CNAME"); !ok || s.Values[0] != mine.DomainName {
				t.Fatalf("b.cdn.example.com = %+v", s)
			}

			// A host of somebody else's distribution: refused, nothing stored.
			r = p.do(t, "PUT", "/v2/service_instances/c2?accepts_incomplete=true", cdnProvisionBody(edgeRoute("cdnshop", "shop.cdn.example.com")))
			p.expect(t, r, 202, "provision over another distribution's alias")
			last := p.waitOp(t, "/v2/service_instances/c2", r.str("operation"), 20*time.Second)
			if last.str("state") != "failed" || !strings.Contains(last.str("description"), "cdn step: host shop.cdn.example.com: it is an alias of CloudFront distribution "+theirs) {
				t.Fatalf("provision over another distribution: %s", last.Raw)
			}
			if _, err := p.Store.GetSpec(ctx, "cdnshop"); err == nil {
				t.Fatal("the refused spec reached the route store")
			}

			// Deprovision: records gone, distribution disabled then deleted.
			r = p.do(t, "DELETE", "/v2/service_instances/c1?accepts_incomplete=true&service_id="+api.ServiceID+"&plan_id="+cdn.PlanID, nil)
			p.expect(t, r, 202, "deprovision")
			if last := p.waitOp(t, "/v2/service_instances/c1", r.str("operation"), 20*time.Second); last.Code != 410 && last.str("state") != "succeeded" {
				t.Fatalf("deprovision: %d %s", last.Code, last.Raw)
			}
			if left := cf.Distributions(); len(left) != 1 || left[0].ID != theirs || !left[0].Enabled {
				t.Fatalf("distributions after deprovision: %+v", left)
			}
			ops := strings.Join(cf.Ops(), "\n")
			if i, j := strings.Index(ops, "PUT disable "+mine.ID), strings.Index(ops, "DELETE "+mine.ID); i < 0 || j < i {
				t.Fatalf("want disable, then delete:\n%s", ops)
			}
			if strings.Contains(ops, " "+theirs) {
				t.Fatalf("somebody else's distribution was touched:\n%s", ops)
			}
			if n := len(z.Sets()); n != 0 {
				t.Fatalf("zone after deprovision: %+v", z.Sets())
			}
		})
	}
}

// TestCDNPlanWithoutCDNFails: a worker without --cdn-origin fails
// operations on the CDN plan with a clear reason instead of serving the
// instance without its CDN.
func TestCDNPlanWithoutCDNFails(t *testing.T) {
	p := newPipeline(t, pipelineOpts{})
	r := p.do(t, "PUT", "/v2/service_instances/nc?accepts_incomplete=true", cdnProvisionBody(edgeRoute("nocdn")))
	p.expect(t, r, 202, "provision on the CDN plan")
	last := p.waitOp(t, "/v2/service_instances/nc", r.str("operation"), 20*time.Second)
	if last.str("state") != "failed" || !strings.Contains(last.str("description"), "plan standard-cdn is not available") {
		t.Fatalf("last_operation: %s", last.Raw)
	}
}
