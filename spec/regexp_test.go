package spec

import (
	"errors"
	"fmt"
	"regexp"
	"regexp/syntax"
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

// checkRegexpCompile is how CheckRegexp decided before it stopped
// building a matcher: regexp.Compile for the error, then the RE2 size
// estimate of its own parse. checkRegexp must give the same error, of the
// same type and text, for every expression.
func checkRegexpCompile(expr string) error {
	if _, err := regexp.Compile(expr); err != nil {
		return err
	}
	n, err := RE2ProgramSize(expr)
	if err != nil {
		return err
	}
	if n+re2Margin > MaxRE2ProgramSize {
		return fmt.Errorf("too complex for Envoy: its RE2 program size is about %d (estimated, plus a safety margin of %d), over Envoy's limit of %d (re2.max_program_size.error_level), and Envoy would refuse the whole route table; write + or * instead of a long counted repetition such as {64}", n, re2Margin, MaxRE2ProgramSize)
	}
	return nil
}

// sameRegexpVerdict reports whether two verdicts are the same: both nil,
// or errors of one type with one text (a *syntax.Error also with one
// code and expression).
func sameRegexpVerdict(got, want error) bool {
	if (got == nil) != (want == nil) {
		return false
	}
	if got == nil {
		return true
	}
	if fmt.Sprintf("%T", got) != fmt.Sprintf("%T", want) || got.Error() != want.Error() {
		return false
	}
	var gs, ws *syntax.Error
	if errors.As(want, &ws) {
		return errors.As(got, &gs) && *gs == *ws
	}
	return true
}

// refusedRegexps are expressions CheckRegexp must refuse, one for each
// way to fail: Go's parse errors, Go's size, repeat and nesting bounds,
// and Envoy's RE2 program size.
var refusedRegexps = []string{
	`(`, `)`, `a{2,1}`, `\p{Nope}`, `[z-a]`, `*`, `a**`, `x{1001}`, `(?<>a)`, `\8`, `[[:nope:]]`,
	"\xff", `(?z)`, `[a`, `a{1000}{1000}`,
	`((((((((((a{100}){100}){100}){100}){100}){100}){100}){100}){100}){100})`,
	strings.Repeat("(", 1001) + strings.Repeat(")", 1001),
	"(?:" + strings.Repeat("a", 4000) + "){1000}",
	`^/x/[a-f0-9]{64}$`, `^/api/v[0-9]+/users/[a-f0-9-]{36}$`, `^[a-z]{1,50}$`, `\p{L}`, `^(?:[^/]|\s){30}$`, `a{1000}`,
	`^/x/\d{90}$`, // estimated 97: refused by the safety margin only
}

// TestCheckRegexpSameAsCompile: every refused expression (and a few
// accepted ones) gets from checkRegexp exactly the error regexp.Compile
// plus the size estimate gave; each of refusedRegexps is refused.
func TestCheckRegexpSameAsCompile(t *testing.T) {
	accepted := []string{``, `a`, `^/items/[0-9]+$`, `(?i)x`, `^/x/[a-f0-9]{32}$`, `.*`, `(?s).`, `^(?:ab|ab){30}$`,
		`^/x/\d{89}$`, // estimated 96: the largest of its kind under the margin
		`(?P<n>a)(?P<n>b)`, `\Q`, strings.Repeat("(?:", 1001) + "a" + strings.Repeat(")", 1001)}
	for _, expr := range append(append([]string(nil), refusedRegexps...), accepted...) {
		got, want := checkRegexp(expr), checkRegexpCompile(expr)
		if !sameRegexpVerdict(got, want) {
			t.Errorf("checkRegexp(%.60q) = %#v, regexp.Compile and the estimate say %#v", expr, got, want)
		}
	}
	for _, expr := range refusedRegexps {
		if err := checkRegexp(expr); err == nil {
			t.Errorf("checkRegexp(%.60q) = nil, want an error", expr)
		}
	}
	for _, expr := range accepted {
		if err := checkRegexp(expr); err != nil {
			t.Errorf("checkRegexp(%q) = %v", expr, err)
		}
	}
}

// FuzzCheckRegexpSameAsCompile: for any expression up to 256 bytes,
// checkRegexp's verdict is regexp.Compile's plus the size estimate's.
// (Longer ones only repeat the grammar; mutations of the long seeds of
// the table test build programs of millions of instructions, which
// stall the fuzzer. The table test holds the size and nesting bounds.)
func FuzzCheckRegexpSameAsCompile(f *testing.F) {
	for _, expr := range refusedRegexps {
		if len(expr) <= 256 {
			f.Add(expr)
		}
	}
	for _, c := range re2Sizes {
		f.Add(c.expr)
	}
	for _, c := range re2Odd {
		f.Add(c.expr)
	}
	f.Add(`(?:(?:a{10}){10}){10}`)
	f.Add(`a{100}{1}`)
	f.Fuzz(func(t *testing.T, expr string) {
		if len(expr) > 256 {
			return
		}
		if got, want := checkRegexp(expr), checkRegexpCompile(expr); !sameRegexpVerdict(got, want) {
			t.Fatalf("checkRegexp(%q) = %#v, regexp.Compile and the estimate say %#v", expr, got, want)
		}
	})
}

// BenchmarkCheckRegexp: one verdict (no memo) for 1,000 distinct route
// regexes of the compile bench's kind, by regexp.Compile plus the size
// estimate (compile, as before) and by checkRegexp (syntax).
func BenchmarkCheckRegexp(b *testing.B) {
	exprs := make([]string, 1000)
	for i := range exprs {
		exprs[i] = fmt.Sprintf("^/items/(?:[0-9]+|s0-%04d-[a-f]+)$", i)
	}
	for _, c := range []struct {
		name  string
		check func(string) error
	}{{"compile", checkRegexpCompile}, {"syntax", checkRegexp}} {
		b.Run(c.name, func(b *testing.B) {
			b.ReportAllocs()
			for i := 0; i < b.N; i++ {
				if err := c.check(exprs[i%len(exprs)]); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
