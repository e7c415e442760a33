package spec

import (
	"fmt"
	"regexp/syntax"
	"sync"
)

// re2Margin is added to the estimate before it is compared with Envoy's
// limit: in rare constructs (alternatives mixing case-insensitive
// non-ASCII letters and classes, which Go's parser merges differently
// from RE2's) RE2's program is up to a few instructions larger than the
// estimate.
const re2Margin = 4

// maxRegexpVerdicts bounds the memo of CheckRegexp; when it is full the
// memo starts over.
const maxRegexpVerdicts = 4096

var regexpVerdicts struct {
	sync.Mutex
	m map[string]error
}

// CheckRegexp reports whether expr compiles as a Go (RE2 syntax) regular
// expression (the error regexp.Compile returns) and whether Envoy would
// compile it: its estimated RE2 program size (RE2ProgramSize) is at most
// MaxRE2ProgramSize. Nil when both hold. Validation and the
// Envoy builders both check every pathRegex and header regex, and specs
// repeat them, so the verdict (which depends on the text only) is
// remembered. Safe for concurrent use.
func CheckRegexp(expr string) error {
	regexpVerdicts.Lock()
	err, ok := regexpVerdicts.m[expr]
	regexpVerdicts.Unlock()
	if ok {
		return err
	}
	err = checkRegexp(expr)
	regexpVerdicts.Lock()
	if regexpVerdicts.m == nil || len(regexpVerdicts.m) >= maxRegexpVerdicts {
		regexpVerdicts.m = make(map[string]error)
	}
	regexpVerdicts.m[expr] = err
	regexpVerdicts.Unlock()
	return err
}

// CheckRequestRegexp is CheckRegexp (the same verdict and error) for a
// pattern that arrives with a request, such as a CEL matches pattern
// read from a header: it is not remembered (each such pattern may be
// new, and would only churn the memo), and a pattern over the size bound
// is refused from its parse tree, before any program is built, so a
// short pattern that expands to a huge program ((?:a{1000}){1000}) costs
// a parse and an estimate only. Safe for concurrent use.
func CheckRequestRegexp(expr string) error { return checkRegexp(expr) }

// checkRegexp is CheckRegexp without the memo. It does what
// regexp.Compile does up to the point where an error can arise (parse
// with the Perl flags, which is also where Go's size and nesting bounds
// are enforced, then simplify and compile the program), with the same
// errors, but builds no matcher (no one-pass analysis, prefix or pools):
// validation only needs the verdict. The parsed tree is the one the RE2
// size estimate walks, so the expression is parsed once for both; the
// estimate comes before the program (syntax.Compile never fails, so the
// order changes no verdict or text), which keeps an oversized pattern
// from being expanded at all.
func checkRegexp(expr string) error {
	re, err := syntax.Parse(expr, syntax.Perl)
	if err != nil {
		return err
	}
	n := re2ProgramSize(expr, re)
	if n+re2Margin > MaxRE2ProgramSize {
		return fmt.Errorf("too complex for Envoy: its RE2 program size is about %d (estimated, plus a safety margin of %d), over Envoy's limit of %d (re2.max_program_size.error_level), and Envoy would refuse the whole route table; write + or * instead of a long counted repetition such as {64}", n, re2Margin, MaxRE2ProgramSize)
	}
	if _, err := syntax.Compile(re.Simplify()); err != nil {
		return err
	}
	return nil
}
