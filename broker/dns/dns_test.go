package dns_test

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/route53"

	"github.com/gatehouse-edge/gatehouse/broker/dns"
)

func TestDryRunLogsTheChangeSet(t *testing.T) {
	var buf bytes.Buffer
	d := dns.DryRun{Log: slog.New(slog.NewTextHandler(&buf, nil))}
	if err := d.Apply(context.Background(), "pets", dns.Changes(dns.Upsert, []string{"Pets.example.com", "*.pets.example.com"}, "edge.example.net", 60)); err != nil {
		t.Fatal(err)
	}
	out := buf.String()
	for _, want := range []string{"action=UPSERT name=pets.example.com type=CNAME value=edge.example.net ttl=60", `name=*.pets.example.com`} {
		if !strings.Contains(out, want) {
			t.Errorf("dry-run log lacks %q:\n%s", want, out)
		}
	}
}

// route53Recorder answers ChangeResourceRecordSets on loopback the way
// Route 53 does (there is no Route 53 emulator to run here) and records
// what the real SDK client sent; missing, if set, makes DELETEs of that
// name fail as Route 53 does for a record that is not there.
type route53Recorder struct {
	mu      sync.Mutex
	bodies  []string
	missing string
}

func (r *route53Recorder) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	b, _ := io.ReadAll(req.Body)
	r.mu.Lock()
	r.bodies = append(r.bodies, req.Method+" "+req.URL.Path+"\n"+string(b))
	missing := r.missing
	r.mu.Unlock()
	w.Header().Set("Content-Type", "text/xml")
	if missing != "" && strings.Contains(string(b), "<Action>DELETE</Action>") && strings.Contains(string(b), "<Name>"+missing+"</Name>") {
		w.WriteHeader(400)
		io.WriteString(w, `<?xml version="1.0"?><ErrorResponse xmlns="https://route53.amazonaws.com/doc/2013-04-01/"><Error><Type>Sender</Type><Code>InvalidChangeBatch</Code><Message>[Tried to delete resource record set [name='`+missing+`.', type='CNAME'] but it was not found]</Message></Error><RequestId>r</RequestId></ErrorResponse>`)
		return
	}
	io.WriteString(w, `<?xml version="1.0"?><ChangeResourceRecordSetsResponse xmlns="https://route53.amazonaws.com/doc/2013-04-01/"><ChangeInfo><Id>/change/C1</Id><Status>PENDING</Status><SubmittedAt>2026-01-01T00:00:00Z</SubmittedAt></ChangeInfo></ChangeResourceRecordSetsResponse>`)
}

func TestRoute53SendsOneBatchAndToleratesMissingDeletes(t *testing.T) {
	rec := &route53Recorder{}
	srv := httptest.NewServer(rec)
	defer srv.Close()
	c := route53.New(route53.Options{Region: "us-east-1", BaseEndpoint: aws.String(srv.URL),
		Credentials: aws.CredentialsProviderFunc(func(context.Context) (aws.Credentials, error) {
			return aws.Credentials{AccessKeyID: "a", SecretAccessKey: "b"}, nil
		}), RetryMaxAttempts: 1})
	r := &dns.Route53{Client: c, ZoneID: "Z123"}
	ctx := context.Background()
	if err := r.Apply(ctx, "pets", dns.Changes(dns.Upsert, []string{"a.example.com", "b.example.com"}, "edge.example.net", 300)); err != nil {
		t.Fatal(err)
	}
	rec.mu.Lock()
	first := rec.bodies[0]
	rec.mu.Unlock()
	for _, want := range []string{"/2013-04-01/hostedzone/Z123/rrset", "<Action>UPSERT</Action>", "<Name>a.example.com</Name>", "<Name>b.example.com</Name>", "<Type>CNAME</Type>", "<Value>edge.example.net</Value>", "<TTL>300</TTL>", "EdgeRoute pets"} {
		if !strings.Contains(first, want) {
			t.Errorf("request lacks %s:\n%s", want, first)
		}
	}
	// One of two records is already gone: the delete still succeeds.
	rec.mu.Lock()
	rec.missing, rec.bodies = "a.example.com", nil
	rec.mu.Unlock()
	if err := r.Apply(ctx, "pets", dns.Changes(dns.Delete, []string{"a.example.com", "b.example.com"}, "edge.example.net", 300)); err != nil {
		t.Fatalf("deleting with one record already gone: %v", err)
	}
	rec.mu.Lock()
	n := len(rec.bodies)
	rec.mu.Unlock()
	if n != 3 { // the batch, then each record alone
		t.Fatalf("%d requests, want 3 (batch, then one per record)", n)
	}
	// Route 53 unreachable: the error names the zone and the spec.
	srv.Close()
	err := r.Apply(ctx, "pets", dns.Changes(dns.Upsert, []string{"b.example.com"}, "edge.example.net", 300))
	if err == nil || !strings.Contains(err.Error(), "zone Z123") || !strings.Contains(err.Error(), `EdgeRoute "pets"`) {
		t.Fatalf("with Route 53 down: err = %v", err)
	}
}
