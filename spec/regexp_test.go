package spec

import (
	"fmt"
	"regexp"
	"strings"
	"testing"
)

func TestCheckRegexpMatchesCompile(t *testing.T) {
	for range 2 { // the second round answers from the memo
		for _, expr := range []string{`^/items/[0-9]+$`, `(`, `a{2,1}`, `\p{Nope}`, ``, `(?i)x`} {
			_, want := regexp.Compile(expr)
			if got := CheckRegexp(expr); fmt.Sprint(got) != fmt.Sprint(want) {
				t.Errorf("CheckRegexp(%q) = %v, want %v", expr, got, want)
			}
		}
	}
	for i := range maxRegexpVerdicts + 10 { // the memo stays bounded
		CheckRegexp(fmt.Sprintf("x%d", i))
	}
	if n := len(regexpVerdicts.m); n > maxRegexpVerdicts {
		t.Fatalf("memo holds %d verdicts", n)
	}
}

// re2Sizes are program sizes RE2 itself reported (RE2::ProgramSize of
// RE2 2022-06-01, the number Envoy compares with
// re2.max_program_size.error_level) for expressions of the kind route
// specs hold.
var re2Sizes = []struct {
	expr string
	re2  int
}{
	{`^/x/[a-f0-9]{64}$`, 132},
	{`^/api/v[0-9]+/users/[a-f0-9-]{36}$`, 121},
	{`^[a-z]{1,50}$`, 101},
	{`^/x/[a-f0-9]{50}$`, 104},
	{`^/x/\d{97}$`, 101},
	{`^/x/\d{95}$`, 99},
	{`^/x/[a-f0-9]{48}$`, 100},
	{`^/x/[a-f0-9]{45}$`, 94},
	{`^/x/[a-f0-9]{32}$`, 68},
	{`^/x/[a-f0-9]{16}$`, 36},
	{`^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$`, 70},
	{`^/uuid/[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$`, 72},
	{`^(GET|HEAD|POST|PUT|PATCH|DELETE|OPTIONS|TRACE|CONNECT)$`, 46},
	{`^/api/v2/organizations/[^/]+/projects/[^/]+/builds/[0-9]+$`, 42},
	{`^/api/(v1|v2|v3)/items/[0-9]{1,10}$`, 34},
	{`^/api/.*/admin(/.*)?$`, 30},
	{`^/users/[^/]+/orders/[0-9]+$`, 23},
	{`^/static/.*\.(css|js|png)$`, 23},
	{`^/api/v[0-9]+/users/[a-f0-9-]+$`, 17},
	{`^/v[12]/.*`, 14},
	{`^Bearer .+$`, 13},
	{`.*`, 12},
	{`.`, 12},
	{`(?s).`, 11},
	{`[[:alpha:]]`, 5},
	{`(?i)abc`, 7},
	{`^/pets/[0-9]+$`, 6},
	{`a`, 5},
	{`^\p{Greek}+$`, 65},
	{`\p{L}`, 1197},
	{`^(?:(?:(?:x){1,})?){2,7}$`, 41},
	{`(?:\b)*`, 9},
	{`(?:(?i:k)){4,}`, 21},
}

// re2Odd are RE2's numbers for expressions no route needs, where Go's
// parser and RE2's differ most: the estimate must stay above them, but
// may be far above.
var re2Odd = []struct {
	expr string
	re2  int
}{
	{`^(?:(?:(?:.|.)|(?:x|[0-9]))){5,6}$`, 69}, // Go merges .|. into one class, RE2 does not
	{`(?:(?:.){1,})*`, 18},
	{`(?:(?:(?:(?:[^a-z])+|(?:[\x{100}-\x{2000}])+))+){6,}`, 165},
	{`^(?:[^/]|\s){30}$`, 242},
	{`^(?:ab|ab){30}$`, 62},
	{`^(?:(?i:é)|(?i:é)){30}$`, 92},
}

// TestRE2ProgramSizeIsConservative: the estimate is never below RE2's
// own number (else Envoy could refuse what validation let through), and
// close to it for ordinary route regexes.
func TestRE2ProgramSizeIsConservative(t *testing.T) {
	for _, c := range re2Odd {
		if got, err := RE2ProgramSize(c.expr); err != nil || got < c.re2 {
			t.Errorf("RE2ProgramSize(%q) = %d, %v; below RE2's %d", c.expr, got, err, c.re2)
		}
	}
	for _, c := range re2Sizes {
		got, err := RE2ProgramSize(c.expr)
		if err != nil {
			t.Fatalf("RE2ProgramSize(%q): %v", c.expr, err)
		}
		if got < c.re2 {
			t.Errorf("RE2ProgramSize(%q) = %d, below RE2's %d", c.expr, got, c.re2)
		}
		// RE2 leaves a literal prefix after ^ out of the program; the
		// estimate counts it (one per byte), to stay on the safe side.
		prefix := 0
		if rest, ok := strings.CutPrefix(c.expr, "^"); ok {
			prefix = len(rest) - len(strings.TrimLeft(rest, "/abcdefghijklmnopqrstuvwxyz0123456789"))
		}
		if c.re2 <= 100 && !strings.Contains(c.expr, `\p`) && !strings.Contains(c.expr, "{1,})?") && got > c.re2+prefix+10 {
			t.Errorf("RE2ProgramSize(%q) = %d, RE2 says %d: too far above for an ordinary regex", c.expr, got, c.re2)
		}
	}
}

// TestCheckRegexpRefusesWhatEnvoyRefuses: a regex over Envoy's RE2
// program-size limit is refused, whatever Go thinks of it.
func TestCheckRegexpRefusesWhatEnvoyRefuses(t *testing.T) {
	for _, c := range re2Sizes {
		if c.re2 <= MaxRE2ProgramSize {
			continue
		}
		err := CheckRegexp(c.expr)
		if err == nil || !strings.Contains(err.Error(), "too complex for Envoy") {
			t.Errorf("CheckRegexp(%q) = %v; RE2's program size is %d, over Envoy's %d", c.expr, err, c.re2, MaxRE2ProgramSize)
		}
	}
	for _, ok := range []string{`^/x/[a-f0-9]{32}$`, `^/api/v2/organizations/[^/]+/projects/[^/]+/builds/[0-9]+$`, `^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$`} {
		if err := CheckRegexp(ok); err != nil {
			t.Errorf("CheckRegexp(%q) = %v", ok, err)
		}
	}
}

// TestPathRegexOverEnvoyLimitRefusedWithPath: validation names the field.
func TestPathRegexOverEnvoyLimitRefusedWithPath(t *testing.T) {
	data := []byte(`apiVersion: gatehouse/v1
kind: EdgeRoute
metadata: {name: t, team: t}
spec:
  hosts: [t.example.com]
  upstreams: [{name: api, endpoints: ["10.0.0.1:80"]}]
  routes:
    - name: r
      match:
        pathRegex: '^/x/[a-f0-9]{64}$'
        headers: [{name: x-id, regex: '^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}-[0-9a-f]{36}$'}]
      upstream: api
`)
	for _, path := range []string{"spec.routes[0].match.pathRegex", "spec.routes[0].match.headers[0].regex"} {
		at, all := problemsAt(t, Policy{}, data, path)
		if len(at) == 0 || !strings.Contains(at[0], "too complex for Envoy") {
			t.Errorf("problems at %s = %q; all: %v", path, at, all)
		}
	}
}

// FuzzRE2ProgramSize: any expression Go parses gets an estimate, no panic,
// and at least the fail and match instructions.
func FuzzRE2ProgramSize(f *testing.F) {
	for _, c := range re2Sizes {
		f.Add(c.expr)
	}
	f.Fuzz(func(t *testing.T, expr string) {
		n, err := RE2ProgramSize(expr)
		if err == nil && n < 2 {
			t.Fatalf("RE2ProgramSize(%q) = %d", expr, n)
		}
	})
}
