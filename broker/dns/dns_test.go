package dns_test

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/route53"

	"github.com/gatehouse-edge/gatehouse/broker/dns"
	"github.com/gatehouse-edge/gatehouse/broker/dns/route53fake"
	"github.com/gatehouse-edge/gatehouse/internal/testenv"
)

func TestDryRunLogsTheChangeSet(t *testing.T) {
	var buf bytes.Buffer
	d := dns.DryRun{Log: slog.New(slog.NewTextHandler(&buf, nil))}
	o := dns.Owner{ID: "gh", Instance: "i-1"}
	if err := d.Ensure(context.Background(), o, []string{"Pets.example.com", "*.pets.example.com"}, "edge.example.net", 60); err != nil {
		t.Fatal(err)
	}
	out := buf.String()
	for _, want := range []string{"name=pets.example.com type=CNAME value=edge.example.net ttl=60", `name=*.pets.example.com`, "marker=_gatehouse._wildcard.pets.example.com", "gatehouse/instance=i-1"} {
		if !strings.Contains(out, want) {
			t.Errorf("dry-run log lacks %q:\n%s", want, out)
		}
	}
}

func route53Client(url string) *route53.Client {
	return route53.New(route53.Options{Region: "us-east-1", BaseEndpoint: aws.String(url),
		Credentials: testenv.AWSCredentials(), RetryMaxAttempts: 1})
}

// TestRoute53TouchesOnlyOwnedRecords runs the real SDK client against the
// Route 53 double: records are created with an ownership marker, a
// record without a marker or with another instance's is never
// overwritten or deleted, and removal deletes exactly what was created.
func TestRoute53TouchesOnlyOwnedRecords(t *testing.T) {
	z := route53fake.Start(t, "Z123")
	r := &dns.Route53{Client: route53Client(z.URL), ZoneID: "Z123"}
	ctx := context.Background()
	a := dns.Owner{ID: "gh", Instance: "inst-a"}
	b := dns.Owner{ID: "gh", Instance: "inst-b"}
	// Somebody else's record in the zone: never Gatehouse's.
	z.Put(route53fake.RRSet{Name: "vpn.example.com", Type: "A", TTL: 60, Values: []string{"192.0.2.10"}})
	z.Put(route53fake.RRSet{Name: "legacy.example.com", Type: "CNAME", TTL: 60, Values: []string{"old.example.net"}})

	if err := r.Ensure(ctx, a, []string{"a.example.com", "*.w.example.com"}, "edge.example.net", 300); err != nil {
		t.Fatal(err)
	}
	if s, ok := z.Get("a.example.com", "CNAME"); !ok || s.Values[0] != "edge.example.net" || s.TTL != 300 {
		t.Fatalf("a.example.com = %+v %v", s, ok)
	}
	if s, ok := z.Get("_gatehouse.a.example.com", "TXT"); !ok || !strings.Contains(s.Values[0], "gatehouse/instance=inst-a") {
		t.Fatalf("marker = %+v %v", s, ok)
	}
	if _, ok := z.Get("*.w.example.com", "CNAME"); !ok {
		t.Fatal("the wildcard record was not created")
	}
	// Idempotent: a second run changes nothing.
	before, _ := z.Batches()
	if err := r.Ensure(ctx, a, []string{"a.example.com", "*.w.example.com"}, "edge.example.net", 300); err != nil {
		t.Fatal(err)
	}
	if after, _ := z.Batches(); after != before {
		t.Fatalf("a repeated Ensure sent %d change batch(es)", after-before)
	}
	// Another instance may neither claim nor remove a's records.
	err := r.Ensure(ctx, b, []string{"a.example.com"}, "evil.example.net", 300)
	if !errors.Is(err, dns.ErrNotOwned) || !strings.Contains(err.Error(), "another instance") {
		t.Fatalf("Ensure by another instance: %v", err)
	}
	if err := r.Check(ctx, b, []string{"a.example.com"}); !errors.Is(err, dns.ErrNotOwned) {
		t.Fatalf("Check by another instance: %v", err)
	}
	if err := r.Remove(ctx, b, []string{"a.example.com"}); err != nil {
		t.Fatal(err)
	}
	if s, _ := z.Get("a.example.com", "CNAME"); s.Values[0] != "edge.example.net" {
		t.Fatalf("another instance changed a's record: %+v", s)
	}
	// Records Gatehouse did not create: refused, untouched, even by Remove.
	for _, h := range []string{"vpn.example.com", "legacy.example.com"} {
		err := r.Ensure(ctx, a, []string{h}, "edge.example.net", 300)
		if !errors.Is(err, dns.ErrNotOwned) || !strings.Contains(err.Error(), "did not create") {
			t.Fatalf("Ensure over %s: %v", h, err)
		}
		if err := r.Remove(ctx, a, []string{h}); err != nil {
			t.Fatal(err)
		}
	}
	if s, ok := z.Get("legacy.example.com", "CNAME"); !ok || s.Values[0] != "old.example.net" {
		t.Fatalf("legacy.example.com was changed: %+v %v", s, ok)
	}
	if _, ok := z.Get("vpn.example.com", "A"); !ok {
		t.Fatal("vpn.example.com was deleted")
	}
	// A target change updates the owned record in one atomic batch.
	if err := r.Ensure(ctx, a, []string{"a.example.com"}, "cdn.example.net", 300); err != nil {
		t.Fatal(err)
	}
	if s, _ := z.Get("a.example.com", "CNAME"); s.Values[0] != "cdn.example.net" {
		t.Fatalf("after a target change: %+v", s)
	}
	// Remove deletes exactly what a created; a second Remove is a no-op.
	if err := r.Remove(ctx, a, []string{"a.example.com", "*.w.example.com"}); err != nil {
		t.Fatal(err)
	}
	if err := r.Remove(ctx, a, []string{"a.example.com", "*.w.example.com"}); err != nil {
		t.Fatal(err)
	}
	var left []string
	for _, s := range z.Sets() {
		left = append(left, s.Name+"/"+s.Type)
	}
	if strings.Join(left, " ") != "legacy.example.com/CNAME vpn.example.com/A" {
		t.Fatalf("zone after removal: %v", left)
	}
}

// TestRoute53RaceIsRefusedNotOverwritten: a record created by someone
// else between Gatehouse's read and its write makes Route 53 refuse the
// CREATE; the step reads again and reports the name as not owned.
func TestRoute53RaceIsRefusedNotOverwritten(t *testing.T) {
	z := route53fake.Start(t, "Z1")
	raced := false
	c := &racingClient{Client: route53Client(z.URL), before: func() {
		if !raced {
			raced = true
			z.Put(route53fake.RRSet{Name: "race.example.com", Type: "CNAME", TTL: 60, Values: []string{"theirs.example.net"}})
		}
	}}
	r := &dns.Route53{Client: c, ZoneID: "Z1"}
	err := r.Ensure(context.Background(), dns.Owner{ID: "gh", Instance: "i"}, []string{"race.example.com"}, "edge.example.net", 300)
	if !errors.Is(err, dns.ErrNotOwned) {
		t.Fatalf("Ensure after a racing write: %v", err)
	}
	if s, _ := z.Get("race.example.com", "CNAME"); s.Values[0] != "theirs.example.net" {
		t.Fatalf("the racing record was overwritten: %+v", s)
	}
	if _, ok := z.Get("_gatehouse.race.example.com", "TXT"); ok {
		t.Fatal("a refused batch left its marker behind (batches must be atomic)")
	}
	if _, refused := z.Batches(); refused != 1 {
		t.Fatalf("%d refused batches, want 1", refused)
	}
}

type racingClient struct {
	*route53.Client
	before func()
}

func (c *racingClient) ChangeResourceRecordSets(ctx context.Context, in *route53.ChangeResourceRecordSetsInput, opts ...func(*route53.Options)) (*route53.ChangeResourceRecordSetsOutput, error) {
	c.before()
	return c.Client.ChangeResourceRecordSets(ctx, in, opts...)
}

// TestRoute53FakeEnforcesRoute53Semantics checks the double itself with
// the SDK: CREATE of an existing record, DELETE of a missing or different
// record and a CNAME next to another record are refused, and a refused
// batch changes nothing.
func TestRoute53FakeEnforcesRoute53Semantics(t *testing.T) {
	z := route53fake.Start(t, "Z9")
	c := route53Client(z.URL)
	ctx := context.Background()
	send := func(changes ...string) error { // "ACTION name type value"
		var b []types53Change
		for _, s := range changes {
			f := strings.Fields(s)
			b = append(b, change(f[0], f[1], f[2], f[3]))
		}
		_, err := c.ChangeResourceRecordSets(ctx, input("Z9", b))
		return err
	}
	if err := send("CREATE x.example.com CNAME a.example.net"); err != nil {
		t.Fatal(err)
	}
	for _, bad := range [][]string{
		{"CREATE x.example.com CNAME b.example.net"},
		{"DELETE y.example.com CNAME a.example.net"},
		{"DELETE x.example.com CNAME other.example.net"},
		{"CREATE x.example.com TXT \"t\""},
		{"CREATE z.example.com CNAME z.example.net", "CREATE x.example.com CNAME c.example.net"}, // atomic: z must not appear
	} {
		err := send(bad...)
		if err == nil || !strings.Contains(err.Error(), "InvalidChangeBatch") {
			t.Fatalf("%v: err = %v, want InvalidChangeBatch", bad, err)
		}
	}
	if _, ok := z.Get("z.example.com", "CNAME"); ok {
		t.Fatal("a refused batch applied part of its changes")
	}
	if err := send("UPSERT x.example.com CNAME d.example.net"); err != nil {
		t.Fatal(err)
	}
	if err := send("DELETE x.example.com CNAME d.example.net"); err != nil {
		t.Fatal(err)
	}
	if len(z.Sets()) != 0 {
		t.Fatalf("zone = %+v", z.Sets())
	}
}

// TestRoute53AdoptsOnlyItsOwnLegacyRecords: a CNAME without a marker that
// Gatehouse wrote before markers existed (a host the instance already
// serves, pointing exactly at the fleet) is taken over; the same record
// for a host the instance did not serve, or pointing elsewhere, is not.
func TestRoute53AdoptsOnlyItsOwnLegacyRecords(t *testing.T) {
	z := route53fake.Start(t, "ZL")
	r := &dns.Route53{Client: route53Client(z.URL), ZoneID: "ZL"}
	ctx := context.Background()
	z.Put(route53fake.RRSet{Name: "old.example.com", Type: "CNAME", TTL: 300, Values: []string{"edge.example.net"}})
	z.Put(route53fake.RRSet{Name: "elsewhere.example.com", Type: "CNAME", TTL: 300, Values: []string{"other.example.net"}})
	o := dns.Owner{ID: "gh", Instance: "i", Legacy: []string{"old.example.com", "elsewhere.example.com"}, LegacyTarget: "edge.example.net"}
	stranger := dns.Owner{ID: "gh", Instance: "j", LegacyTarget: "edge.example.net"}
	if err := r.Ensure(ctx, stranger, []string{"old.example.com"}, "edge.example.net", 300); !errors.Is(err, dns.ErrNotOwned) {
		t.Fatalf("an instance that never served the host adopted it: %v", err)
	}
	if err := r.Ensure(ctx, o, []string{"elsewhere.example.com"}, "edge.example.net", 300); !errors.Is(err, dns.ErrNotOwned) {
		t.Fatalf("a record pointing elsewhere was adopted: %v", err)
	}
	if err := r.Ensure(ctx, o, []string{"old.example.com"}, "edge.example.net", 300); err != nil {
		t.Fatal(err)
	}
	if s, ok := z.Get("_gatehouse.old.example.com", "TXT"); !ok || !strings.Contains(s.Values[0], "gatehouse/instance=i") {
		t.Fatalf("adopted record has no marker: %+v", s)
	}
	// Removal of a legacy record the instance served, never marked.
	z.Put(route53fake.RRSet{Name: "old2.example.com", Type: "CNAME", TTL: 300, Values: []string{"edge.example.net."}})
	o.Legacy = append(o.Legacy, "old2.example.com")
	if err := r.Remove(ctx, o, []string{"old.example.com", "old2.example.com", "elsewhere.example.com"}); err != nil {
		t.Fatal(err)
	}
	var left []string
	for _, s := range z.Sets() {
		left = append(left, s.Name)
	}
	if strings.Join(left, " ") != "elsewhere.example.com" {
		t.Fatalf("zone after removal: %v", left)
	}
}
