package spec

import (
	"regexp"
	"sync"
)

// maxRegexpVerdicts bounds the memo of CheckRegexp; when it is full the
// memo starts over.
const maxRegexpVerdicts = 4096

var regexpVerdicts struct {
	sync.Mutex
	m map[string]error
}

// CheckRegexp reports whether expr compiles as a Go (RE2 syntax) regular
// expression: the error regexp.Compile returns, or nil. Validation and the
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
	_, err = regexp.Compile(expr)
	regexpVerdicts.Lock()
	if regexpVerdicts.m == nil || len(regexpVerdicts.m) >= maxRegexpVerdicts {
		regexpVerdicts.m = make(map[string]error)
	}
	regexpVerdicts.m[expr] = err
	regexpVerdicts.Unlock()
	return err
}
