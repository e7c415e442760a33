package config

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"google.golang.org/protobuf/proto"

	rlsconfv3 "github.com/envoyproxy/go-control-plane/ratelimit/config/ratelimit/v3"
)

const good = `# envoyproxy/ratelimit example
domain: mongo_cps
descriptors:
  - key: database
    value: users
    rate_limit:
      unit: second
      requests_per_unit: 500
  - key: database
    value: default
    detailed_metric: true
    value_to_metric: true
    shadow_mode: true
    metadata: {owner: db-team}
    rate_limit:
      unit: Second
      requests_per_unit: 500
      name: default
      replaces:
        - name: users
  - key: tenant
    value: acme-*
    share_threshold: true
    descriptors:
      - key: path
        rate_limit: {unit: 30s, requests_per_unit: 9, algorithm: token-bucket, burst: 3}
`

func TestParseGood(t *testing.T) {
	d, err := Parse("good.yaml", []byte(good))
	if err != nil {
		t.Fatal(err)
	}
	want := &Domain{Name: "mongo_cps", Source: "good.yaml:2", Descriptors: []Descriptor{
		{Key: "database", Value: "users", Source: "good.yaml:4", Policy: &Policy{RequestsPerUnit: 500, Unit: "second", Window: time.Second}},
		{Key: "database", Value: "default", Source: "good.yaml:9", DetailedMetric: true, ValueToMetric: true, ShadowMode: true, Metadata: map[string]any{"owner": "db-team"},
			Policy: &Policy{RequestsPerUnit: 500, Unit: "second", Window: time.Second, Name: "default", Replaces: []string{"users"}}},
		{Key: "tenant", Value: "acme-*", ShareThreshold: true, Source: "good.yaml:21", Descriptors: []Descriptor{
			{Key: "path", Source: "good.yaml:25", Policy: &Policy{RequestsPerUnit: 9, Window: 30 * time.Second, Algorithm: TokenBucket, Burst: 3}},
		}},
	}}
	if diff := cmp.Diff(want, d); diff != "" {
		t.Fatalf("(-want +got)\n%s", diff)
	}
}

// TestBadFiles: every fixture in testdata/bad is rejected with its file
// name, the line of the problem and envoyproxy's reason.
func TestBadFiles(t *testing.T) {
	want := map[string]string{
		"empty_domain.yaml":        "empty_domain.yaml:1: config file cannot have empty domain",
		"bad_unit.yaml":            "bad_unit.yaml:5: invalid rate limit unit 'fortnight'",
		"unknown_key.yaml":         "unknown_key.yaml:4: config error, unknown key 'ratelimit'",
		"empty_key.yaml":           "empty_key.yaml:3: descriptor has empty key",
		"duplicate_key.yaml":       "duplicate_key.yaml:5: duplicate descriptor composite key 'd.a'",
		"unlimited_with_unit.yaml": "unlimited_with_unit.yaml:3: should not specify rate limit unit when unlimited",
		"replaces_self.yaml":       "replaces_self.yaml:3: replaces should not contain name of same descriptor",
		"negative.yaml":            "negative.yaml:4: config error, requests_per_unit must be a whole number",
		"syntax.yaml":              "syntax.yaml:3: error loading config file",
		"share_threshold.yaml":     "share_threshold.yaml:3: share_threshold can only be used with wildcard values",
		"burst_fixed.yaml":         "burst_fixed.yaml:3: burst is only valid with algorithm token-bucket",
		"descriptors_scalar.yaml":  "descriptors_scalar.yaml:2: config error, descriptors must be a list",
		// envoyproxy/ratelimit's wording, file:line kept as the prefix.
		"non_map_list.yaml":   "non_map_list.yaml:3: config error, yaml file contains list of type other than map: first\nnon_map_list.yaml:4: config error, yaml file contains list of type other than map: second",
		"non_string_key.yaml": "non_string_key.yaml:1: config error, key is not of type string: 0.5",
		"metadata_list.yaml":  "metadata_list.yaml:4: error parsing metadata: metadata must be a map",
	}
	files, _ := filepath.Glob("testdata/bad/*.yaml")
	if len(files) != len(want) {
		t.Fatalf("%d fixtures, %d expectations", len(files), len(want))
	}
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		_, err = Parse(filepath.Base(f), data)
		if err == nil {
			t.Errorf("%s: accepted", f)
			continue
		}
		var l ErrorList
		if !errors.As(err, &l) {
			t.Errorf("%s: error %T is not an ErrorList", f, err)
		}
		if w := want[filepath.Base(f)]; !strings.HasPrefix(err.Error(), w) {
			t.Errorf("%s:\n got %q\nwant prefix %q", f, err.Error(), w)
		}
	}
}

func TestLoadDirDuplicateDomain(t *testing.T) {
	dir := t.TempDir()
	write := func(name, body string) {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("a.yaml", "domain: x\n")
	write("b.yml", "domain: y\ndescriptors:\n  - key: k\n")
	write("notes.txt", "ignored")
	ds, err := LoadDir(dir)
	if err != nil || len(ds) != 2 {
		t.Fatalf("LoadDir: %v %v", ds, err)
	}
	write("c.yaml", "\ndomain: x\n")
	_, err = LoadDir(dir)
	if err == nil || !strings.Contains(err.Error(), "c.yaml:2: duplicate domain 'x'") || !strings.Contains(err.Error(), "a.yaml:1") {
		t.Fatalf("duplicate domain: %v", err)
	}
}

// TestLoadDirMergeDomains: with MergeDomains (MERGE_DOMAIN_CONFIG) the
// files of one domain combine; a composite key both declare is refused
// with envoyproxy's reason, at the later file's line; without it the
// second file is a duplicate domain.
func TestLoadDirMergeDomains(t *testing.T) {
	dir := t.TempDir()
	write := func(name, body string) {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("a.yaml", "domain: shop\ndescriptors:\n  - key: k1\n    value: v1\n    rate_limit: {unit: minute, requests_per_unit: 10}\n")
	write("b.yaml", "domain: shop\ndescriptors:\n  - key: k2\n    value: v2\n    rate_limit: {unit: minute, requests_per_unit: 20}\n")
	if _, err := LoadDir(dir); err == nil || !strings.Contains(err.Error(), "b.yaml:1: duplicate domain 'shop' in config file") {
		t.Fatalf("without merge: %v", err)
	}
	ds, err := LoadDirWith(dir, LoadOptions{MergeDomains: true})
	if err != nil {
		t.Fatal(err)
	}
	if len(ds) != 1 || len(ds[0].Descriptors) != 2 || ds[0].Descriptors[0].Key != "k1" || ds[0].Descriptors[1].Key != "k2" || ds[0].Source != filepath.Join(dir, "a.yaml:1") {
		t.Fatalf("merged: %+v", ds)
	}
	write("c.yaml", "domain: shop\ndescriptors:\n  - key: k1\n    value: v1\n    rate_limit: {unit: hour, requests_per_unit: 1}\n")
	_, err = LoadDirWith(dir, LoadOptions{MergeDomains: true})
	if err == nil || !strings.Contains(err.Error(), "c.yaml:3: duplicate descriptor composite key 'shop.k1_v1'") {
		t.Fatalf("duplicate key across merged files: %v", err)
	}
}

// TestMetadataValues: metadata holds what envoyproxy/ratelimit accepts
// there: numbers, lists, nested maps, dates (kept as text) and non-string
// keys (as text).
func TestMetadataValues(t *testing.T) {
	d, err := Parse("m.yaml", []byte("domain: d\ndescriptors:\n  - key: k\n    metadata: {since: 2024-01-01, n: 3, l: [a, 1.5], m: {1: x, y: null}}\n    rate_limit: {unit: second, requests_per_unit: 1}\n"))
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]any{"since": "2024-01-01", "n": 3, "l": []any{"a", 1.5}, "m": map[string]any{"1": "x", "y": nil}}
	if diff := cmp.Diff(want, d.Descriptors[0].Metadata); diff != "" {
		t.Fatalf("(-want +got)\n%s", diff)
	}
}

func TestFromProto(t *testing.T) {
	c := &rlsconfv3.RateLimitConfig{Name: "n", Domain: "d", Descriptors: []*rlsconfv3.RateLimitDescriptor{{
		Key: "k", ShadowMode: true,
		RateLimit:   &rlsconfv3.RateLimitPolicy{Unit: rlsconfv3.RateLimitUnit_MINUTE, RequestsPerUnit: 4, Name: "x", Replaces: []*rlsconfv3.RateLimitReplace{{Name: "y"}}},
		Descriptors: []*rlsconfv3.RateLimitDescriptor{{Key: "j", Value: "v", RateLimit: &rlsconfv3.RateLimitPolicy{Unlimited: true}}},
	}}}
	d, err := FromProto("xds", c)
	if err != nil {
		t.Fatal(err)
	}
	p := d.Descriptors[0].Policy
	if d.Name != "d" || p.Window != time.Minute || p.RequestsPerUnit != 4 || p.Replaces[0] != "y" || !d.Descriptors[0].ShadowMode || !d.Descriptors[0].Descriptors[0].Policy.Unlimited {
		t.Fatalf("FromProto: %+v", d)
	}
	bad := proto.Clone(c).(*rlsconfv3.RateLimitConfig)
	bad.Descriptors[0].RateLimit.Unit = rlsconfv3.RateLimitUnit_UNKNOWN
	if _, err := FromProto("xds", bad); err == nil || !strings.Contains(err.Error(), "invalid rate limit unit") {
		t.Fatalf("unknown unit accepted: %v", err)
	}
}

func FuzzParse(f *testing.F) {
	f.Add([]byte(good))
	files, _ := filepath.Glob("testdata/bad/*.yaml")
	for _, p := range files {
		b, _ := os.ReadFile(p)
		f.Add(b)
	}
	f.Add([]byte("domain: d\ndescriptors: [{key: a, descriptors: [{key: b, descriptors: [{key: c}]}]}]"))
	f.Add([]byte("&a [*a]"))
	f.Fuzz(func(t *testing.T, data []byte) {
		d, err := Parse("fuzz.yaml", data)
		if err != nil {
			if d != nil {
				t.Fatal("domain returned with an error")
			}
			if !strings.HasPrefix(err.Error(), "fuzz.yaml") {
				t.Fatalf("error does not name the file: %v", err)
			}
			return
		}
		if d.Name == "" {
			t.Fatal("accepted a domain without a name")
		}
		if err := Validate(d); err != nil {
			t.Fatalf("Parse accepted what Validate rejects: %v", err)
		}
	})
}
