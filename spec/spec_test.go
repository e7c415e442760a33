package spec

import (
	"bufio"
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// fixtureWant reads the "# want: <text>" and "# line: <n>" header of an
// invalid fixture.
func fixtureWant(t *testing.T, file string) (want string, line int) {
	t.Helper()
	f, err := os.Open(file)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "# want: "); ok {
			want = v
		}
		if v, ok := strings.CutPrefix(sc.Text(), "# line: "); ok {
			line, _ = strconv.Atoi(v)
		}
	}
	if want == "" || line == 0 {
		t.Fatalf("%s: fixture has no '# want:' and '# line:' header", file)
	}
	return want, line
}

func TestInvalidFixtures(t *testing.T) {
	files, _ := filepath.Glob("testdata/invalid/*.yaml")
	if len(files) < 22 {
		t.Fatalf("found %d invalid fixtures, want one per bad-spec case of ROUTE_SPEC.md (22)", len(files))
	}
	for _, file := range files {
		t.Run(filepath.Base(file), func(t *testing.T) {
			want, line := fixtureWant(t, file)
			_, err := Load(file)
			var list ErrorList
			if !errors.As(err, &list) {
				t.Fatalf("Load(%s) = %v, want an ErrorList", file, err)
			}
			wantLine := file + ":" + strconv.Itoa(line) + ": " + want
			for _, e := range list {
				if strings.HasPrefix(e.Error(), wantLine) {
					return
				}
			}
			t.Fatalf("no error starts with\n  %s\ngot:\n%v", wantLine, err)
		})
	}
}

func TestValidFixtures(t *testing.T) {
	docs, err := Load("testdata/valid")
	if err != nil {
		t.Fatalf("Load(testdata/valid): %v", err)
	}
	if len(docs) != 3 {
		t.Fatalf("got %d documents, want 3", len(docs))
	}
}

func TestAllProblemsOfAFileReportedTogether(t *testing.T) {
	src := `apiVersion: gatehouse/v2
kind: EdgeRoute
metadata: {name: Bad_Name, team: t, colour: red}
spec:
  hosts: []
  upstreams: [{name: api, endpoints: ["not-an-ip:80"]}]
  routes:
    - name: r
      match: {pathPrefix: /, pathRegex: "("}
      upstream: nope
      timeout: soon
      rateLimits: [{name: l, by: [bogus], limit: 0/minute}]
`
	docs, err := Parse("bad.yaml", []byte(src))
	var list ErrorList
	errors.As(err, &list)
	if verr := Validate(docs); verr != nil {
		var more ErrorList
		errors.As(verr, &more)
		list = append(list, more...)
	}
	for _, want := range []string{
		"bad.yaml:1: apiVersion: must be \"gatehouse/v1\"",
		"bad.yaml:3: metadata.colour: unknown field",
		"bad.yaml:3: metadata.name: \"Bad_Name\" must be lower-case",
		"bad.yaml:5: spec.hosts: at least one host is required",
		"bad.yaml:6: spec.upstreams[0].endpoints[0]: \"not-an-ip:80\": static endpoints must be IP:port",
		"bad.yaml:9: spec.routes[0].match: exactly one of path, pathPrefix or pathRegex",
		"bad.yaml:9: spec.routes[0].match.pathRegex: invalid regex",
		"bad.yaml:10: spec.routes[0].upstream: unknown upstream \"nope\"",
		"bad.yaml:11: spec.routes[0].timeout: invalid duration \"soon\"",
		"bad.yaml:12: spec.routes[0].rateLimits[0].by[0]: unknown source \"bogus\"",
		"bad.yaml:12: spec.routes[0].rateLimits[0].limit: limit \"0/minute\": request count must be greater than 0",
	} {
		if !strings.Contains(list.Error(), want) {
			t.Errorf("missing %q in:\n%s", want, list.Error())
		}
	}
}

func TestMultiDocumentAndJSON(t *testing.T) {
	a, err := os.ReadFile("testdata/valid/petstore.yaml")
	if err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile("testdata/valid/status-page.yaml")
	if err != nil {
		t.Fatal(err)
	}
	multi := append(append(append([]byte{}, a...), []byte("---\n")...), append(b, []byte("---\n")...)...)
	docs, err := Parse("multi.yaml", multi)
	if err != nil || len(docs) != 2 {
		t.Fatalf("Parse(multi) = %d docs, %v; want 2, nil", len(docs), err)
	}
	if docs[1].Name() != "status-page" || docs[1].Index != 1 {
		t.Fatalf("second document = %q (index %d)", docs[1].Name(), docs[1].Index)
	}
	// A line in the second document is counted from the start of the file.
	if l := docs[1].Line("spec.routes[0].rateLimits[0]"); l <= strings.Count(string(a), "\n") {
		t.Fatalf("line of a field in document 2 = %d, want after document 1", l)
	}
	jdocs, err := Load("testdata/valid/everything.json")
	if err != nil {
		t.Fatal(err)
	}
	if got := jdocs[0].Line("spec.routes[0].rateLimits[1].burst"); got != 29 {
		t.Fatalf("JSON line of burst = %d, want 29", got)
	}
}

func TestCanonicalJSONRoundTrip(t *testing.T) {
	docs, err := Load("testdata/valid")
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range docs {
		j, err := d.EdgeRoute.CanonicalJSON()
		if err != nil {
			t.Fatal(err)
		}
		again, err := Parse("canonical.json", j)
		if err != nil {
			t.Fatalf("%s: canonical JSON does not parse: %v\n%s", d.Name(), err, j)
		}
		if diff := cmp.Diff(d.EdgeRoute, again[0].EdgeRoute); diff != "" {
			t.Fatalf("%s: round trip changed the spec (-loaded +reloaded):\n%s", d.Name(), diff)
		}
		if err := ValidateOne(again[0]); err != nil {
			t.Fatalf("%s: canonical form does not validate: %v", d.Name(), err)
		}
		j2, _ := again[0].EdgeRoute.CanonicalJSON()
		if string(j) != string(j2) {
			t.Fatalf("%s: canonical JSON is not stable:\n%s\n%s", d.Name(), j, j2)
		}
	}
}

func TestDirectoryErrors(t *testing.T) {
	if _, err := Load(t.TempDir()); err == nil || !strings.Contains(err.Error(), "no .yaml, .yml or .json files") {
		t.Fatalf("empty dir: %v", err)
	}
	if _, err := Load("testdata/does-not-exist"); err == nil || !strings.Contains(err.Error(), "cannot read") {
		t.Fatalf("missing path: %v", err)
	}
	if _, err := Parse("big.yaml", make([]byte, MaxDocumentSize+1)); err == nil || !strings.Contains(err.Error(), "byte limit") {
		t.Fatalf("oversized: %v", err)
	}
	if _, err := Parse("syntax.yaml", []byte("a: [b\n")); err == nil || !strings.Contains(err.Error(), "syntax error") {
		t.Fatalf("syntax: %v", err)
	}
}

func TestParseLimit(t *testing.T) {
	for _, c := range []struct {
		in   string
		want Limit
		err  string
	}{
		{in: "100/minute", want: Limit{Requests: 100, Window: 60e9, Unit: "minute"}},
		{in: "50/second", want: Limit{Requests: 50, Window: 1e9, Unit: "second"}},
		{in: "5000/15m", want: Limit{Requests: 5000, Window: 900e9}},
		{in: "100/30s", want: Limit{Requests: 100, Window: 30e9}},
		{in: "1/day", want: Limit{Requests: 1, Window: 86400e9, Unit: "day"}},
		{in: "0/minute", err: "greater than 0"},
		{in: "10/fortnight", err: "unknown unit"},
		{in: "10/500ms", err: "under 1s"},
		{in: "10/1500ms", err: "whole number of seconds"},
		{in: "ten/minute", err: "not a whole number"},
		{in: "100", err: "must look like N/unit"},
		{in: "99999999999/minute", err: "larger than"},
	} {
		got, err := ParseLimit(c.in)
		if c.err != "" {
			if err == nil || !strings.Contains(err.Error(), c.err) {
				t.Errorf("ParseLimit(%q) error = %v, want %q", c.in, err, c.err)
			}
			continue
		}
		if err != nil || got != c.want {
			t.Errorf("ParseLimit(%q) = %+v, %v; want %+v", c.in, got, err, c.want)
		}
		if again, _ := ParseLimit(got.String()); again != got {
			t.Errorf("ParseLimit(%q).String() = %q does not round-trip", c.in, got.String())
		}
	}
}

func TestParseSource(t *testing.T) {
	for in, key := range map[string]string{
		"identity.subject":   "identity.subject",
		"identity.claim.org": "identity.claim.org",
		"apikey.id":          "apikey.id",
		"header.X-Tenant":    "header.x-tenant",
		"client.ip":          "remote_address",
		"request.method":     "request.method",
		"request.path":       "request.path",
	} {
		s, err := ParseSource(in)
		if err != nil || s.DescriptorKey() != key {
			t.Errorf("ParseSource(%q) = %+v (key %q), %v; want key %q", in, s, s.DescriptorKey(), err, key)
		}
	}
	for _, bad := range []string{"", "identity", "header.", "identity.claim.", "cookie.x"} {
		if _, err := ParseSource(bad); err == nil {
			t.Errorf("ParseSource(%q) accepted", bad)
		}
	}
}

func TestDefaults(t *testing.T) {
	docs, err := Load("testdata/valid/petstore.yaml")
	if err != nil {
		t.Fatal(err)
	}
	s := docs[0].EdgeRoute.Spec
	if got := s.Routes[0].EffectiveTimeout(); got != DefaultRouteTimeout {
		t.Errorf("route timeout default = %s", got)
	}
	if got := s.Routes[2].AuthMode(); got != ModePublic {
		t.Errorf("route without auth: mode %q, want public", got)
	}
	if got := s.Routes[0].AuthMode(); got != ModeEnforce {
		t.Errorf("route with auth and no mode: %q, want enforce", got)
	}
	if got := s.Identity.JWT[0].EffectiveAlgorithms(); strings.Join(got, ",") != "RS256,ES256,EdDSA" {
		t.Errorf("default algorithms = %v", got)
	}
	if got := s.Routes[0].RateLimits[0].EffectiveAlgorithm(); got != AlgorithmFixedWindow {
		t.Errorf("default algorithm = %q", got)
	}
	if got := s.Identity.ProviderKind("partners"); got != "apiKey" {
		t.Errorf("ProviderKind(partners) = %q", got)
	}
}
