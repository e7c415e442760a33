package ratelimitsidecar

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	ratelimitv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/common/ratelimit/v3"
	rlsv3 "github.com/envoyproxy/go-control-plane/envoy/service/ratelimit/v3"
	"github.com/gatehouse-edge/gatehouse/internal/testenv"
	"google.golang.org/protobuf/encoding/protojson"
)

// The conformance test: the outcomes and lookups a user switching from
// envoyproxy/ratelimit relies on, against the real sidecar over gRPC. The
// fixtures under testdata/conformance were written for this repository
// from envoyproxy/ratelimit's documented behaviour (config loading, the
// settings MERGE_DOMAIN_CONFIG, QUOTA_MODE, LIMIT_RESPONSE_HEADERS_ENABLED
// and LIMIT_*_HEADER, RESPONSE_DYNAMIC_METADATA, and its stat names).

const conformanceDir = "testdata/conformance"

// copyFixtures copies the named fixture files into a fresh directory.
func copyFixtures(t *testing.T, files ...string) string {
	t.Helper()
	dir := t.TempDir()
	for _, f := range files {
		b, err := os.ReadFile(filepath.Join(conformanceDir, f))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, filepath.Base(f)), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// TestConformanceRejects: every broken config is refused with
// envoyproxy/ratelimit's reason behind a file:line prefix, and the sidecar
// does not start (Run returns the error; the command exits 1).
func TestConformanceRejects(t *testing.T) {
	cases := []struct {
		files []string
		merge bool
		want  string
	}{
		{files: []string{"reject/bad_unit.yaml"}, want: "bad_unit.yaml:5: invalid rate limit unit 'fortnight'"},
		{files: []string{"reject/bad_yaml.yaml"}, want: "bad_yaml.yaml:3: error loading config file: "},
		{files: []string{"reject/duplicate_key.yaml"}, want: "duplicate_key.yaml:6: duplicate descriptor composite key 'conf.k_v'"},
		{files: []string{"reject/empty_domain.yaml"}, want: "empty_domain.yaml:1: config file cannot have empty domain"},
		{files: []string{"reject/empty_key.yaml"}, want: "empty_key.yaml:3: descriptor has empty key"},
		{files: []string{"reject/misspelled_key.yaml"}, want: "misspelled_key.yaml:4: config error, unknown key 'ratelimit'"},
		{files: []string{"reject/misspelled_key2.yaml"}, want: "misspelled_key2.yaml:6: config error, unknown key 'requestsperunit'"},
		{files: []string{"reject/non_map_list.yaml"}, want: "non_map_list.yaml:3: config error, yaml file contains list of type other than map: x"},
		{files: []string{"reject/non_string_key.yaml"}, want: "non_string_key.yaml:1: config error, key is not of type string: 0.25"},
		{files: []string{"reject/replaces_empty.yaml"}, want: "replaces_empty.yaml:3: should not have an empty replaces entry"},
		{files: []string{"reject/replaces_self.yaml"}, want: "replaces_self.yaml:3: replaces should not contain name of same descriptor"},
		{files: []string{"reject/unlimited_with_unit.yaml"}, want: "unlimited_with_unit.yaml:3: should not specify rate limit unit when unlimited"},
		// Without MERGE_DOMAIN_CONFIG a domain lives in one file.
		{files: []string{"load/merge/a_orders.yaml", "load/merge/b_orders.yaml"}, want: "b_orders.yaml:1: duplicate domain 'merged' in config file"},
		// With it, a composite key two files declare is still refused.
		{files: []string{"load/merge/a_orders.yaml", "load/merge/b_orders.yaml", "load/merge/a_orders.yaml:c_again.yaml"}, merge: true,
			want: "c_again.yaml:3: duplicate descriptor composite key 'merged.orders_create'"},
	}
	for _, c := range cases {
		t.Run(filepath.Base(c.files[0]), func(t *testing.T) {
			dir := t.TempDir()
			for _, f := range c.files {
				src, dst, _ := strings.Cut(f, ":")
				if dst == "" {
					dst = filepath.Base(src)
				}
				b, err := os.ReadFile(filepath.Join(conformanceDir, src))
				if err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(filepath.Join(dir, dst), b, 0o644); err != nil {
					t.Fatal(err)
				}
			}
			var logs bytes.Buffer
			err := Run(context.Background(), Config{ConfigDir: dir, MergeDomainConfig: c.merge, GRPCAddr: "127.0.0.1:0", AdminAddr: "127.0.0.1:0",
				Log: slog.New(slog.NewTextHandler(&logs, nil))})
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("got %v\nwant an error containing %q", err, c.want)
			}
			// Point 6: the log says the sidecar does not start, not that a
			// previous config keeps serving (there is none).
			if l := logs.String(); !strings.Contains(l, "the sidecar does not start") || strings.Contains(l, "keeps serving") {
				t.Fatalf("start-up log: %s", l)
			}
		})
	}
}

// lookup is one replayed check: the descriptors of one request, sent
// allowed times expecting OK and then once more expecting want (allowed 0:
// one call).
type lookup struct {
	name    string
	domain  string
	descs   [][]string
	allowed int
	want    string
}

// answer renders a response as "OVERALL | CODE lim=N/UNIT[ name=X] rem=R"
// per descriptor ("lim=none" without a limit, "unlimited").
func answer(resp *rlsv3.RateLimitResponse) string {
	parts := []string{resp.GetOverallCode().String()}
	for _, st := range resp.GetStatuses() {
		code := "OK"
		if st.GetCode() == rlsv3.RateLimitResponse_OVER_LIMIT {
			code = "OVER"
		}
		l := st.GetCurrentLimit()
		switch {
		case l == nil && st.GetLimitRemaining() == math.MaxUint32:
			parts = append(parts, code+" unlimited")
		case l == nil:
			parts = append(parts, fmt.Sprintf("%s lim=none rem=%d", code, st.GetLimitRemaining()))
		default:
			name := ""
			if l.GetName() != "" {
				name = " name=" + l.GetName()
			}
			parts = append(parts, fmt.Sprintf("%s lim=%d/%s%s rem=%d", code, l.GetRequestsPerUnit(), l.GetUnit(), name, st.GetLimitRemaining()))
		}
	}
	return strings.Join(parts, " | ")
}

func (r *running) request(t *testing.T, domain string, descs [][]string) *rlsv3.RateLimitResponse {
	t.Helper()
	req := &rlsv3.RateLimitRequest{Domain: domain}
	for _, kv := range descs {
		d := &ratelimitv3.RateLimitDescriptor{}
		for i := 0; i+1 < len(kv); i += 2 {
			d.Entries = append(d.Entries, &ratelimitv3.RateLimitDescriptor_Entry{Key: kv[i], Value: kv[i+1]})
		}
		req.Descriptors = append(req.Descriptors, d)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	resp, err := r.client.ShouldRateLimit(ctx, req)
	if err != nil {
		t.Fatalf("ShouldRateLimit: %v", err)
	}
	return resp
}

func (r *running) replay(t *testing.T, ls []lookup) {
	t.Helper()
	for _, l := range ls {
		if strings.Contains(l.want, "/SECOND") {
			// A per-second counter resets at the second: start the step
			// at the beginning of one, so a loaded machine cannot split
			// its calls over two windows.
			now := time.Now()
			time.Sleep(now.Truncate(time.Second).Add(time.Second + 5*time.Millisecond).Sub(now))
		}
		for i := 0; i < l.allowed; i++ {
			if resp := r.request(t, l.domain, l.descs); resp.GetOverallCode() != rlsv3.RateLimitResponse_OK {
				t.Fatalf("%s: call %d of %d allowed: %s", l.name, i+1, l.allowed, answer(resp))
			}
		}
		if got := answer(r.request(t, l.domain, l.descs)); got != l.want {
			t.Errorf("%s:\n got %s\nwant %s", l.name, got, l.want)
		}
	}
}

func kv(s ...string) []string { return s }

// TestConformanceLookups: the configs that load answer as
// envoyproxy/ratelimit does (HEAD for quota_mode), with each setting.
func TestConformanceLookups(t *testing.T) {
	t.Run("basic", func(t *testing.T) {
		r := startRun(t, Config{ConfigDir: copyFixtures(t, "load/basic/basic.yaml")})
		r.replay(t, []lookup{
			{"unknown domain", "nowhere", [][]string{kv("user", "a")}, 0, "OK | OK lim=none rem=0"},
			{"level without a limit", "shop", [][]string{kv("cart", "c1")}, 0, "OK | OK lim=none rem=0"},
			{"nested default value", "shop", [][]string{kv("cart", "c1", "item", "book")}, 4, "OVER_LIMIT | OVER lim=4/SECOND rem=0"},
			{"nested exact value", "shop", [][]string{kv("cart", "c1", "item", "gift")}, 0, "OK | OK lim=8/SECOND rem=7"},
			{"deeper than the config", "shop", [][]string{kv("cart", "c1", "item", "book", "extra", "1")}, 0, "OK | OK lim=none rem=0"},
			{"key default, own counter per value", "shop", [][]string{kv("user", "alice")}, 6, "OVER_LIMIT | OVER lim=6/MINUTE rem=0"},
			{"another value, fresh counter", "shop", [][]string{kv("user", "bob")}, 0, "OK | OK lim=6/MINUTE rem=5"},
			{"value override", "shop", [][]string{kv("user", "admin")}, 0, "OK | OK lim=12/MINUTE rem=11"},
			{"value without rate_limit: no limit", "shop", [][]string{kv("user", "robot")}, 20, "OK | OK lim=none rem=0"},
			{"named limit", "shop", [][]string{kv("export", "e")}, 0, "OK | OK lim=1/DAY name=export_daily rem=0"},
			{"unlimited", "shop", [][]string{kv("health", "h")}, 30, "OK | OK unlimited"},
			{"requests_per_unit 0", "shop", [][]string{kv("free", "f")}, 0, "OVER_LIMIT | OVER lim=0/MINUTE rem=0"},
			{"one over, one unlimited, one free", "shop", [][]string{kv("report", "r"), kv("health", "h"), kv("user", "robot")}, 1,
				"OVER_LIMIT | OVER lim=1/HOUR rem=0 | OK unlimited | OK lim=none rem=0"},
		})
	})
	t.Run("merge", func(t *testing.T) {
		r := startRun(t, Config{ConfigDir: copyFixtures(t, "load/merge/a_orders.yaml", "load/merge/b_orders.yaml"), MergeDomainConfig: true})
		r.replay(t, []lookup{
			{"first file", "merged", [][]string{kv("orders", "create")}, 0, "OK | OK lim=7/MINUTE rem=6"},
			{"second file", "merged", [][]string{kv("orders", "cancel")}, 3, "OVER_LIMIT | OVER lim=3/MINUTE rem=0"},
		})
	})
	t.Run("quota", func(t *testing.T) {
		r := startRun(t, Config{ConfigDir: copyFixtures(t, "load/quota/quota.yaml")})
		r.replay(t, []lookup{
			{"every quota descriptor over", "credits", [][]string{kv("monthly", "m")}, 1, "OVER_LIMIT | OVER lim=1/HOUR rem=0"},
			{"one quota over, one within", "credits", [][]string{kv("monthly", "m"), kv("daily", "d")}, 0, "OK | OVER lim=1/HOUR rem=0 | OK lim=4/HOUR rem=3"},
			{"quota over beside a plain limit within", "credits", [][]string{kv("monthly", "m"), kv("burst", "b")}, 0, "OVER_LIMIT | OVER lim=1/HOUR rem=0 | OK lim=9/HOUR rem=8"},
		})
		g := startRun(t, Config{ConfigDir: copyFixtures(t, "load/quota/quota.yaml"), GlobalQuotaMode: true})
		for i := 0; i < 9; i++ {
			g.request(t, "credits", [][]string{kv("burst", "g")})
		}
		if got := answer(g.request(t, "credits", [][]string{kv("burst", "g"), kv("daily", "g")})); got != "OK | OVER lim=9/HOUR rem=0 | OK lim=4/HOUR rem=3" {
			t.Errorf("QUOTA_MODE, one over one within: %s", got)
		}
		if got := answer(g.request(t, "credits", [][]string{kv("burst", "g")})); got != "OVER_LIMIT | OVER lim=9/HOUR rem=0" {
			t.Errorf("QUOTA_MODE, all over: %s", got)
		}
	})
	t.Run("shadow and headers", func(t *testing.T) {
		r := startRun(t, Config{ConfigDir: copyFixtures(t, "load/shadow/shadow.yaml"), ResponseHeaders: true})
		r.replay(t, []lookup{
			{"plain", "trial", [][]string{kv("plan", "p", "tier", "gold")}, 3, "OVER_LIMIT | OVER lim=3/SECOND rem=0"},
			{"shadow never over", "trial", [][]string{kv("plan", "p", "tier", "beta")}, 6, "OK | OK lim=6/SECOND rem=0"},
		})
		resp := r.request(t, "trial", [][]string{kv("plan", "p", "tier", "beta")})
		h := map[string]string{}
		for _, hv := range resp.GetResponseHeadersToAdd() {
			h[hv.GetKey()] = hv.GetValue()
		}
		if h["RateLimit-Limit"] != "6" || h["RateLimit-Remaining"] != "0" || h["RateLimit-Reset"] != "1" || len(h) != 3 {
			t.Errorf("shadow over-limit headers: %v", h)
		}
		n := startRun(t, Config{ConfigDir: copyFixtures(t, "load/shadow/shadow.yaml"), ResponseHeaders: true,
			LimitHeader: "X-RL-Limit", RemainingHeader: "X-RL-Remaining", ResetHeader: "X-RL-Reset"})
		resp = n.request(t, "trial", [][]string{kv("plan", "p", "tier", "gold")})
		h = map[string]string{}
		for _, hv := range resp.GetResponseHeadersToAdd() {
			h[hv.GetKey()] = hv.GetValue()
		}
		if h["X-RL-Limit"] != "3" || h["X-RL-Remaining"] != "2" || h["X-RL-Reset"] != "1" || len(h) != 3 {
			t.Errorf("LIMIT_*_HEADER names: %v", h)
		}
	})
	t.Run("dynamic metadata", func(t *testing.T) {
		r := startRun(t, Config{ConfigDir: copyFixtures(t, "load/metadata/metadata.yaml"), ResponseDynamicMetadata: true})
		resp := r.request(t, "meta", [][]string{kv("tenant", "acme"), kv("region", "eu")})
		b, err := protojson.Marshal(resp.GetDynamicMetadata())
		if err != nil {
			t.Fatal(err)
		}
		var got bytes.Buffer
		_ = json.Compact(&got, b)
		want := `{"descriptors":[{"entries":["tenant=acme"]},{"entries":["region=eu"]}],"domain":"meta",` +
			`"metadata":{"contact":{"chat":"#edge","pager":"pay-oncall"},"owner":"payments"}}`
		if got.String() != want {
			t.Errorf("dynamic metadata\n got %s\nwant %s", got.String(), want)
		}
		off := startRun(t, Config{ConfigDir: copyFixtures(t, "load/metadata/metadata.yaml")})
		if md := off.request(t, "meta", [][]string{kv("tenant", "acme")}).GetDynamicMetadata(); md != nil {
			t.Errorf("dynamic metadata without RESPONSE_DYNAMIC_METADATA: %v", md)
		}
	})
	t.Run("wildcard and share_threshold", func(t *testing.T) {
		r := startRun(t, Config{ConfigDir: copyFixtures(t, "load/wildcard/wildcard.yaml")})
		r.replay(t, []lookup{
			{"wildcard, own counter per value", "wild", [][]string{kv("bucket", "logs-a")}, 3, "OVER_LIMIT | OVER lim=3/MINUTE rem=0"},
			{"wildcard, other value", "wild", [][]string{kv("bucket", "logs-b")}, 0, "OK | OK lim=3/MINUTE rem=2"},
			{"wildcard matches empty rest", "wild", [][]string{kv("bucket", "logs-")}, 0, "OK | OK lim=3/MINUTE rem=2"},
			{"wildcard no match", "wild", [][]string{kv("bucket", "audit")}, 0, "OK | OK lim=none rem=0"},
			{"share_threshold: values share one counter", "wild", [][]string{kv("object", "img/a.png")}, 0, "OK | OK lim=5/MINUTE rem=4"},
			{"share_threshold: second value", "wild", [][]string{kv("object", "img/b.png")}, 4, "OVER_LIMIT | OVER lim=5/MINUTE rem=0"},
			{"middle wildcard", "wild", [][]string{kv("route", "/v2/items")}, 0, "OK | OK lim=2/MINUTE rem=1"},
			{"middle wildcard no match", "wild", [][]string{kv("route", "/v2/orders")}, 0, "OK | OK lim=none rem=0"},
		})
	})
	t.Run("replaces", func(t *testing.T) {
		r := startRun(t, Config{ConfigDir: copyFixtures(t, "load/replaces/replaces.yaml")})
		r.replay(t, []lookup{
			{"standard alone", "swap", [][]string{kv("client", "c")}, 1, "OVER_LIMIT | OVER lim=1/MINUTE name=standard rem=0"},
			{"partner replaces standard", "swap", [][]string{kv("client", "c"), kv("partner", "p")}, 0, "OK | OK lim=none rem=0 | OK lim=5/MINUTE rem=4"},
		})
	})
	t.Run("detailed_metric stat names", func(t *testing.T) {
		for _, bounded := range []bool{false, true} {
			r := startRun(t, Config{ConfigDir: copyFixtures(t, "load/detailed/detailed.yaml"), BoundedMetricLabels: bounded})
			r.request(t, "stats", [][]string{kv("api_key", "k1")})
			r.request(t, "stats", [][]string{kv("team", "t-red", "op", "read")})
			r.request(t, "stats", [][]string{kv("team", "t-blue", "op", "read")})
			_, metrics := testenv.HTTPGet(t, "http://"+r.adminAddr+"/metrics")
			want := []string{
				`gatehouse_ratelimit_total_hits{domain="stats",rule="stats.api_key_k1"} 1`,
				`gatehouse_ratelimit_total_hits{domain="stats",rule="stats.team_t-*.op_read"} 2`,
			}
			if bounded {
				want = []string{
					`gatehouse_ratelimit_total_hits{domain="stats",rule="stats.api_key"} 1`,
					`gatehouse_ratelimit_total_hits{domain="stats",rule="stats.team_t-*.op"} 2`,
				}
			}
			for _, w := range want {
				if !strings.Contains(metrics, w) {
					t.Errorf("bounded=%v: metrics lack %s", bounded, w)
				}
			}
		}
	})
}

// TestHeaderNamesChecked: LIMIT_*_HEADER values must be HTTP header
// names; anything else (a CR/LF, a space, a colon) is refused at start.
func TestHeaderNamesChecked(t *testing.T) {
	dir := copyFixtures(t, "load/basic/basic.yaml")
	for _, bad := range []string{"X-Limit\r\nSet-Cookie: a=b", "X Limit", "X-Limit:"} {
		_, err := New(Config{ConfigDir: dir, ResponseHeaders: true, ResetHeader: bad})
		if err == nil || !strings.Contains(err.Error(), "--reset-header") {
			t.Errorf("%q: err = %v", bad, err)
		}
	}
	s, err := New(Config{ConfigDir: dir, ResponseHeaders: true, LimitHeader: "X-RateLimit-Limit"})
	if err != nil {
		t.Fatal(err)
	}
	s.Close()
}
