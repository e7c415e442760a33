package spec

import (
	"fmt"
	"strings"
)

// Error is one problem with a spec: where it is and why it is wrong.
type Error struct {
	File   string // file name, or a label such as "parameters" for bytes not from a file
	Line   int    // 1-based; 0 when unknown
	Spec   string // metadata.name, when known
	Path   string // field path such as spec.routes[2].rateLimits[0].limit
	Reason string
}

func (e *Error) Error() string {
	var b strings.Builder
	b.WriteString(e.File)
	if e.Line > 0 {
		fmt.Fprintf(&b, ":%d", e.Line)
	}
	if e.Path != "" {
		b.WriteString(": ")
		b.WriteString(e.Path)
	}
	b.WriteString(": ")
	b.WriteString(e.Reason)
	return b.String()
}

// ErrorList is every problem found, in file order. It is returned as an
// error by Parse, Load and Validate; use errors.As to get at the items.
type ErrorList []*Error

func (l ErrorList) Error() string {
	lines := make([]string, len(l))
	for i, e := range l {
		lines[i] = e.Error()
	}
	return strings.Join(lines, "\n")
}

// Unwrap exposes the items to errors.Is and errors.As.
func (l ErrorList) Unwrap() []error {
	out := make([]error, len(l))
	for i, e := range l {
		out[i] = e
	}
	return out
}

// BySpec groups the problems by spec name ("" for problems found before the
// name was known).
func (l ErrorList) BySpec() map[string]ErrorList {
	out := map[string]ErrorList{}
	for _, e := range l {
		out[e.Spec] = append(out[e.Spec], e)
	}
	return out
}

func (l ErrorList) err() error {
	if len(l) == 0 {
		return nil
	}
	return l
}
