package spec

import (
	"fmt"
	"regexp"
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
