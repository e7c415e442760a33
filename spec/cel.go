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

// CompileWhen type-checks a `when` expression and requires a boolean result.
func CompileWhen(env *cel.Env, expr string) (*cel.Ast, error) {
	ast, iss := env.Compile(expr)
	if iss.Err() != nil {
		return nil, fmt.Errorf("CEL does not compile: %v", iss.Err())
	}
	if !ast.OutputType().IsExactType(cel.BoolType) {
		return nil, fmt.Errorf("CEL expression must be boolean, but its type is %s (compare it, e.g. `... == \"x\"`)", ast.OutputType())
	}
	return ast, nil
}
