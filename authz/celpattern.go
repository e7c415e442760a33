package authz

import (
	"cel.dev/cel-go/common/overloads"
	"cel.dev/cel-go/common/types"
	"cel.dev/cel-go/common/types/ref"
	"cel.dev/cel-go/interpreter"

	"github.com/gatehouse-edge/gatehouse/spec"
)

// A `when` expression may take a matches pattern from the request
// (request.path.matches(request.headers["x-re"])). Validation checks
// every literal pattern (spec.CompileWhen); such a one it cannot. cel-go
// would compile it with Go's regexp on every evaluation, whatever its
// size: a 7 KB header (a{1000} a thousand times) makes Go build a
// program of a million instructions (about 230 MiB allocated) on every
// request that carries it. checkRequestPatterns makes the rule the
// same as for literals: a pattern spec.CheckRequestRegexp refuses (a
// syntax error, or over the RE2 size bound of path regexes) is an
// evaluation error, found from its parse tree before any program is
// built; the engine treats an error as a rule that cannot be evaluated
// (an allow rule does not match, a deny rule denies: decide.go), so the
// request fails closed.
func checkRequestPatterns(i interpreter.InterpretableV2) (interpreter.InterpretableV2, error) {
	call, ok := i.(interpreter.InterpretableCall)
	if !ok || call.Function() != overloads.Matches || len(call.Args()) != 2 {
		return i, nil
	}
	// Both overloads (x.matches(p), matches(x, p)) take the pattern
	// second. A literal pattern was checked when the rule was compiled
	// (spec.CompileWhen, which also made a pattern joined from literals
	// the literal it is).
	if _, lit := call.Args()[1].(interpreter.InterpretableConst); lit {
		return i, nil
	}
	return &patternCheckedCall{InterpretableCall: call}, nil
}

// patternCheckedCall is a matches call whose pattern is checked before
// the call runs.
type patternCheckedCall struct {
	interpreter.InterpretableCall
}

func (c *patternCheckedCall) Exec(frame *interpreter.ExecutionFrame) ref.Val {
	if err := patternError(c.Args()[1].Exec(frame)); err != nil {
		return err
	}
	return c.InterpretableCall.Exec(frame)
}

func (c *patternCheckedCall) Eval(act interpreter.Activation) ref.Val {
	if err := patternError(c.Args()[1].Eval(act)); err != nil {
		return err
	}
	return c.InterpretableCall.Eval(act)
}

// patternError is the error value for a pattern CheckRequestRegexp
// refuses, else nil (a non-string, an error or an unknown is left to the
// call, which reports it).
func patternError(p ref.Val) ref.Val {
	s, ok := p.(types.String)
	if !ok {
		return nil
	}
	err := spec.CheckRequestRegexp(string(s))
	if err == nil {
		return nil
	}
	// The pattern may be made of a header that carries a credential
	// (request.headers["authorization"]); the error, which the engine
	// logs, says why without quoting any of it (Go's parse error ends
	// with the offending part of the pattern): celerr.go.
	return newValueFreeErr("matches: the pattern from the request is refused: " + regexpErrorText(err))
}
