package spec

import (
	"regexp"
	"strings"
	"testing"
)

// The patterns the hand-written matchers stand for.
var matchers = []struct {
	name string
	re   *regexp.Regexp
	fn   func(string) bool
}{
	{name: "name", re: regexp.MustCompile(`^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$`), fn: isName},
	{name: "host", re: regexp.MustCompile(`^(\*\.)?[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?(\.[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)*$`), fn: isHost},
	{name: "header", re: regexp.MustCompile(`^[a-z0-9!#$%&'*+\-.^_|~` + "`" + `]+$`), fn: isHeaderName},
	{name: "hex64", re: regexp.MustCompile(`^[0-9a-f]{64}$`), fn: isHex64},
	{name: "upper", re: regexp.MustCompile(`^[A-Z]+$`), fn: isUpperWord},
}

var matchSeeds = []string{
	"", "a", "-", "a-", "-a", "a-b", "A", "petstore", "svc-0001", strings.Repeat("a", 63), strings.Repeat("a", 64),
	"*.a", "*.", "*", "a.b.c", "a..b", ".a", "a.", "*.*.a", "a.b-.c", "x-api-key", "x_y", "X-Y", "a b", "a\n",
	"GET", "Get", "GET\n", strings.Repeat("0f", 32), strings.Repeat("0F", 32), strings.Repeat("0f", 33),
	"!#$%&'*+-.^_|~`", "\xff", "é", "a\x00",
}

func TestMatchersMatchTheirPatterns(t *testing.T) {
	for _, m := range matchers {
		for _, s := range matchSeeds {
			if got, want := m.fn(s), m.re.MatchString(s); got != want {
				t.Errorf("%s(%q) = %v, the pattern says %v", m.name, s, got, want)
			}
		}
	}
}

func FuzzMatchers(f *testing.F) {
	for _, s := range matchSeeds {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		for _, m := range matchers {
			if got, want := m.fn(s), m.re.MatchString(s); got != want {
				t.Fatalf("%s(%q) = %v, the pattern says %v", m.name, s, got, want)
			}
		}
	})
}
