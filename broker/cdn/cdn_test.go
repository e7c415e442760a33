package cdn_test

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/cloudfront"

	"github.com/gatehouse-edge/gatehouse/broker/cdn"
	"github.com/gatehouse-edge/gatehouse/broker/cdn/cloudfrontfake"
	"github.com/gatehouse-edge/gatehouse/internal/testenv"
)

func client(url string) *cloudfront.Client {
	return cloudfront.New(cloudfront.Options{Region: "us-east-1", BaseEndpoint: aws.String(url), RetryMaxAttempts: 1,
		Credentials: testenv.AWSCredentials()})
}

// TestCloudFrontOwnedDistributionLifecycle runs the real SDK client
// against the CloudFront double: create with the ownership marker,
// update on host changes (If-Match), refuse hosts of another
// distribution, never touch another owner's distribution, and on removal
// disable, wait for deployment, then delete.
func TestCloudFrontOwnedDistributionLifecycle(t *testing.T) {
	f := cloudfrontfake.Start(t)
	other := f.Put("somebody-else", "shop.example.com")
	c := &cdn.CloudFront{Client: client(f.URL), Origin: "fleet-lb.example.net", Poll: 5 * time.Millisecond}
	ctx := context.Background()
	a := cdn.Owner{ID: "gh", Instance: "inst-a"}
	b := cdn.Owner{ID: "gh", Instance: "inst-b"}

	domain, err := c.Ensure(ctx, a, []string{"A.example.com", "b.example.com"})
	if err != nil {
		t.Fatal(err)
	}
	ds := f.Distributions()
	var mine cloudfrontfake.Distribution
	for _, d := range ds {
		if d.CallerReference == "gatehouse:gh:inst-a" {
			mine = d
		}
	}
	if mine.ID == "" || domain != mine.DomainName || !strings.HasSuffix(domain, ".cloudfront.net") || mine.Origin != "fleet-lb.example.net" ||
		strings.Join(mine.Aliases, ",") != "a.example.com,b.example.com" || !mine.Enabled || mine.Comment != "gatehouse:gh:inst-a" {
		t.Fatalf("created distribution %+v (domain %q)", mine, domain)
	}
	// Idempotent.
	n := len(f.Ops())
	if d2, err := c.Ensure(ctx, a, []string{"b.example.com", "a.example.com"}); err != nil || d2 != domain || len(f.Ops()) != n {
		t.Fatalf("repeated Ensure: %q %v, ops %v", d2, err, f.Ops()[n:])
	}
	// Host change: an update conditional on the ETag.
	if _, err := c.Ensure(ctx, a, []string{"a.example.com"}); err != nil {
		t.Fatal(err)
	}
	// A host of somebody else's distribution, or of another instance's.
	for _, tc := range []struct {
		o    cdn.Owner
		host string
	}{{a, "shop.example.com"}, {b, "a.example.com"}} {
		_, err := c.Ensure(ctx, tc.o, []string{tc.host})
		if !errors.Is(err, cdn.ErrNotOwned) || !strings.Contains(err.Error(), tc.host) {
			t.Fatalf("Ensure(%s, %s): %v", tc.o.Instance, tc.host, err)
		}
		if err := c.Check(ctx, tc.o, []string{tc.host}); !errors.Is(err, cdn.ErrNotOwned) {
			t.Fatalf("Check(%s, %s): %v", tc.o.Instance, tc.host, err)
		}
	}
	// b owns nothing: removing b's distribution touches nobody's.
	if err := c.Remove(ctx, b); err != nil {
		t.Fatal(err)
	}
	if err := c.Remove(ctx, a); err != nil {
		t.Fatal(err)
	}
	left := f.Distributions()
	if len(left) != 1 || left[0].ID != other || !left[0].Enabled {
		t.Fatalf("after removal: %+v", left)
	}
	ops := strings.Join(f.Ops(), "\n")
	for _, want := range []string{"POST create", "PUT update " + mine.ID, "PUT disable " + mine.ID, "DELETE " + mine.ID} {
		if !strings.Contains(ops, want) {
			t.Errorf("ops lack %q:\n%s", want, ops)
		}
	}
	if strings.Index(ops, "PUT disable") > strings.Index(ops, "DELETE "+mine.ID) {
		t.Errorf("deleted before disabling:\n%s", ops)
	}
	if strings.Contains(ops, other) {
		t.Errorf("somebody else's distribution was touched:\n%s", ops)
	}
}

// TestCloudFrontFakeEnforcesETagsAndDisableBeforeDelete checks the double
// with the SDK: no If-Match, a stale one, and deleting an enabled or
// still-deploying distribution are refused.
func TestCloudFrontFakeEnforcesETagsAndDisableBeforeDelete(t *testing.T) {
	f := cloudfrontfake.Start(t)
	cl := client(f.URL)
	ctx := context.Background()
	c := &cdn.CloudFront{Client: cl, Origin: "lb.example.net"}
	if _, err := c.Ensure(ctx, cdn.Owner{ID: "gh", Instance: "x"}, []string{"x.example.com"}); err != nil {
		t.Fatal(err)
	}
	id := f.Distributions()[0].ID
	got, err := cl.GetDistribution(ctx, &cloudfront.GetDistributionInput{Id: aws.String(id)})
	if err != nil {
		t.Fatal(err)
	}
	etag := aws.ToString(got.ETag)
	if _, err := cl.DeleteDistribution(ctx, &cloudfront.DeleteDistributionInput{Id: aws.String(id)}); err == nil || !strings.Contains(err.Error(), "InvalidIfMatchVersion") {
		t.Fatalf("delete without If-Match: %v", err)
	}
	if _, err := cl.DeleteDistribution(ctx, &cloudfront.DeleteDistributionInput{Id: aws.String(id), IfMatch: aws.String("stale")}); err == nil || !strings.Contains(err.Error(), "PreconditionFailed") {
		t.Fatalf("delete with a stale If-Match: %v", err)
	}
	if _, err := cl.DeleteDistribution(ctx, &cloudfront.DeleteDistributionInput{Id: aws.String(id), IfMatch: aws.String(etag)}); err == nil || !strings.Contains(err.Error(), "DistributionNotDisabled") {
		t.Fatalf("delete while enabled: %v", err)
	}
	cfg := got.Distribution.DistributionConfig
	cfg.Enabled = aws.Bool(false)
	up, err := cl.UpdateDistribution(ctx, &cloudfront.UpdateDistributionInput{Id: aws.String(id), IfMatch: aws.String(etag), DistributionConfig: cfg})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := cl.UpdateDistribution(ctx, &cloudfront.UpdateDistributionInput{Id: aws.String(id), IfMatch: aws.String(etag), DistributionConfig: cfg}); err == nil || !strings.Contains(err.Error(), "PreconditionFailed") {
		t.Fatalf("update with the old ETag: %v", err)
	}
	if _, err := cl.DeleteDistribution(ctx, &cloudfront.DeleteDistributionInput{Id: aws.String(id), IfMatch: up.ETag}); err == nil || !strings.Contains(err.Error(), "DistributionNotDisabled") {
		t.Fatalf("delete while the disable is still deploying: %v", err)
	}
}

func TestDryRunLogs(t *testing.T) {
	var buf bytes.Buffer
	d := cdn.DryRun{Log: slog.New(slog.NewTextHandler(&buf, nil)), Origin: "lb.example.net"}
	o := cdn.Owner{ID: "gh", Instance: "i-1"}
	if dom, err := d.Ensure(context.Background(), o, []string{"b.example.com", "a.example.com"}); err != nil || dom != "" {
		t.Fatal(dom, err)
	}
	_ = d.Remove(context.Background(), o)
	out := buf.String()
	for _, want := range []string{"would create or update distribution", "aliases=a.example.com,b.example.com", "origin=lb.example.net", "marker=gatehouse:gh:i-1", "would disable, then delete"} {
		if !strings.Contains(out, want) {
			t.Errorf("dry-run log lacks %q:\n%s", want, out)
		}
	}
}
