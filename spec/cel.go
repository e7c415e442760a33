package spec

import (
	"fmt"

	"cel.dev/cel-go/cel"
)

// NewCELEnv returns the CEL environment `when` expressions are compiled
// against: `request` and `identity`, each a map from string to dynamic
// values (see ROUTE_SPEC.md for their fields). The authz engine uses the
// same environment so that what validates here is what runs there.
func NewCELEnv() (*cel.Env, error) {
	return cel.NewEnv(
		cel.Variable("request", cel.MapType(cel.StringType, cel.DynType)),
		cel.Variable("identity", cel.MapType(cel.StringType, cel.DynType)),
	)
}

// CompileWhen type-checks a `when` expression and requires a boolean
// result. It also refuses what the authz sidecar would refuse when it
// plans the expression (checkWhenConstants): a literal matches pattern
// that CheckRegexp refuses, a conversion of a constant that fails. In the
// expression it returns, a matches pattern joined from literals only
// ("^/v1/" + "[a-z]+$") is that literal (foldJoinedPatterns), so a
// program planned from it compiles the pattern once, not per evaluation.
func CompileWhen(env *cel.Env, expr string) (*cel.Ast, error) {
	ast, iss := env.Compile(expr)
	if iss.Err() != nil {
		return nil, fmt.Errorf("CEL does not compile: %v", iss.Err())
	}
	if err := checkedWhen(env, ast); err != nil {
		return nil, err
	}
	foldJoinedPatterns(ast.NativeRep())
	return ast, nil
}

// checkedWhen is what CompileWhen requires of a checked expression
// beyond cel-go's checker: a boolean result and checkWhenConstants.
func checkedWhen(env *cel.Env, ast *cel.Ast) error {
	if !ast.OutputType().IsExactType(cel.BoolType) {
		return fmt.Errorf("CEL expression must be boolean, but its type is %s (compare it, e.g. `... == \"x\"`)", ast.OutputType())
	}
	if err := checkWhenConstants(env, ast); err != nil {
		return fmt.Errorf("CEL does not compile: %w", err)
	}
	return nil
}

// CELChecker type-checks `when` expressions against one CEL environment
// and remembers each expression's verdict, so a run over many specs (the
// control plane compiles every rule for validation and again for the authz
// policy) checks each distinct expression once. The verdict of an
// expression depends on its text only. A CELChecker is not safe for
// concurrent use; make one per goroutine and run.
type CELChecker struct {
	env    *cel.Env
	parsed *celParsed
	seen   map[string]error
	// slow counts the expressions given to CompileWhen (cel-go's default
	// parser), for tests and benchmarks.
	slow int
}

// NewCELChecker builds a checker with a fresh NewCELEnv environment.
func NewCELChecker() (*CELChecker, error) {
	env, err := NewCELEnv()
	if err != nil {
		return nil, err
	}
	parsed, err := newCELParsed(env)
	if err != nil {
		return nil, err
	}
	return &CELChecker{env: env, parsed: parsed, seen: map[string]error{}}, nil
}

// Check reports what CompileWhen reports for expr, compiling it only the
// first time this checker sees it. An expression of the common shape
// that celSurelyBool recognises as a valid boolean is not given to cel-go
// at all (its parser is most of a check's cost). An expression of plain
// tokens (celPlain) is parsed by cel-go's Pratt parser and checked by
// cel-go's checker (celParsed), which may only find it valid. Every other
// expression, and so every error, is CompileWhen's (cel-go's default
// parser and checker).
func (c *CELChecker) Check(expr string) error {
	if err, ok := c.seen[expr]; ok {
		return err
	}
	var err error
	if !celSurelyBool(expr) && !c.parsed.valid(expr) {
		c.slow++
		_, err = CompileWhen(c.env, expr)
	}
	c.seen[expr] = err
	return err
}

// CELFastVerdict reports whether CELChecker.Check decides expr without
// cel-go (the common shape celSurelyBool recognises; such an expression
// compiles to a boolean). False means Check gives expr to cel-go's parser
// and checker. Benchmarks use it to say which path their expressions take.
func CELFastVerdict(expr string) bool { return celSurelyBool(expr) }
