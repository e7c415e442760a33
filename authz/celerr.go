package authz

import (
	"errors"
	"regexp"
	"regexp/syntax"
	"strconv"
	"strings"

	"cel.dev/cel-go/common/types"
	"cel.dev/cel-go/common/types/ref"
)

// CEL evaluation errors may quote the values a rule read: cel-go's "no
// such key: <key>" names a key built from a header, a conversion or a
// regexp parse error ends with the text it could not take. Those values
// can be a bearer token, a cookie or an API key, and process logs never
// carry one (docs/SECURITY.md). evalErrorText is the one place that
// turns an evaluation error into text that may leave the engine: it
// says what failed and why in terms fixed by cel-go or by the engine
// (the function or overload, the class of error), never a value. An
// error it does not know is named by class only.

// valueFreeError is an error whose text the engine wrote and that
// quotes no request value (e.g. a request-built matches pattern
// refused: celpattern.go). evalErrorText passes it on as it is.
type valueFreeError string

func (e valueFreeError) Error() string { return string(e) }

// newValueFreeErr is the CEL error value of a valueFreeError.
func newValueFreeErr(text string) ref.Val { return types.WrapErr(valueFreeError(text)) }

// regexpErrorText is why Go's regexp refuses a pattern, without the
// part of the pattern its error text ends with.
func regexpErrorText(err error) string {
	var se *syntax.Error
	if errors.As(err, &se) {
		return "error parsing regexp: " + string(se.Code)
	}
	return err.Error()
}

// evalErrorFixed are cel-go evaluation error texts that carry no value.
var evalErrorFixed = []string{
	"division by zero",
	"modulus by zero",
	"integer overflow",
	"NaN values cannot be ordered",
	"operation cancelled",
	"operation interrupted",
	"actual cost limit exceeded",
	"invalid UTF-8 in bytes, cannot convert to string",
	"optional.none() dereference",
}

// evalErrorShapes are cel-go texts made only of type, function and
// overload names (identifiers, never a value); a text matching one is
// kept whole.
var evalErrorShapes = regexp.MustCompile(
	`^(?:no such overload(?:: [A-Za-z_.@][A-Za-z0-9_.@]*(?:\([A-Za-z0-9_., ]*\))?(?: [0-9]+)?)?` +
		`|type conversion error from '[A-Za-z0-9_.]+' to '[A-Za-z0-9_.]+'` +
		`|unsupported type conversion)$`)

// evalErrorClasses are cel-go texts whose tail may quote a value; only
// the class (the text before it) is kept.
var evalErrorClasses = []string{
	"no such key",
	"no such attribute",
	"no such field",
	"no such overload",
	"index out of bounds",
	"index out of range",
	"invalid RFC 3339 timestamp",
	"type conversion error",
	"unsupported conversion to ref.Val",
	"invalid duration",
	"error parsing regexp",
	"matches",
}

// evalError is the value-free text of an error of ru's `when`, with
// where in the expression it arose when cel-go says (line:column, from
// the rule's source; both come from the spec, not the request).
func (ru *rule) evalError(err error) string {
	text := evalErrorText(err)
	var ce *types.Err
	if errors.As(err, &ce) && ce.NodeID() != 0 && ru.src != nil {
		if loc := ru.src.GetStartLocation(ce.NodeID()); loc.Line() > 0 {
			text += " (at " + ru.name + ".when:" + strconv.Itoa(loc.Line()) + ":" + strconv.Itoa(loc.Column()+1) + ")"
		}
	}
	return text
}

// evalErrorText is the value-free text of err, an error of a CEL
// evaluation (see above).
func evalErrorText(err error) string {
	var vf valueFreeError
	if errors.As(err, &vf) {
		return string(vf)
	}
	var ne *strconv.NumError
	if errors.As(err, &ne) {
		return "strconv." + ne.Func + ": " + ne.Err.Error()
	}
	msg := err.Error()
	for _, f := range evalErrorFixed {
		if msg == f {
			return msg
		}
	}
	if evalErrorShapes.MatchString(msg) {
		return msg
	}
	for _, c := range evalErrorClasses {
		if strings.HasPrefix(msg, c) {
			return c + " (the rest of cel-go's text may quote request data; not shown)"
		}
	}
	return "evaluation error (cel-go's text may quote request data; not shown)"
}
