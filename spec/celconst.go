package spec

import (
	"fmt"

	"cel.dev/cel-go/cel"
	celast "cel.dev/cel-go/common/ast"
	"cel.dev/cel-go/common/operators"
	"cel.dev/cel-go/common/overloads"
	"cel.dev/cel-go/common/types"
)

// What cel-go's type checker leaves to later: a `when` expression can
// type-check and still be refused when the authz sidecar plans it
// (Program with OptOptimize, authz/build.go), because planning evaluates
// some calls whose arguments are constants:
//
//   - matches (both overloads: x.matches(p) and matches(x, p)): a literal
//     pattern is compiled by Go's regexp package ("error parsing regexp");
//     one joined from literals ("(" + "a") is not folded, and compiled
//     on every evaluation;
//   - the type conversions (bool, bytes, double, duration, dyn, int,
//     string, timestamp, type, uint) of a constant: evaluated once
//     (int("x"), timestamp("bad"), string(b"\xff") fail).
//
// The environment (NewCELEnv) declares CEL's standard library and no
// extension, so matches is its only function that takes a regex. A
// pattern that is not a literal (built from request data) is checked by
// the authz engine on each evaluation with the same rules
// (CheckRequestRegexp, authz/celpattern.go); a refused one is an
// evaluation error, a rule that cannot be evaluated (it fails closed).
//
// checkWhenConstants refuses what planning would refuse, so that
// validation refuses what a sidecar would: every literal matches pattern,
// and every pattern joined from literals only (constString), must pass
// celPattern (the rules and limit of path regexes, stricter than
// Go's regexp), and an expression with a conversion of a constant is
// planned the way the sidecar plans it.
func checkWhenConstants(env *cel.Env, ast *cel.Ast) error {
	plan, err := whenConstants(ast.NativeRep())
	if err != nil {
		return err
	}
	if plan {
		if _, err := env.Program(ast, cel.EvalOptions(cel.OptOptimize)); err != nil {
			return fmt.Errorf("a constant part cannot be evaluated (the authz sidecar evaluates conversions of constants when it loads the rule, and would refuse the policy): %w", err)
		}
	}
	return nil
}

// whenConstants is checkWhenConstants's walk of a checked expression:
// the first matches pattern of literals (constString) that celPattern
// refuses (with its position), and whether the expression converts a
// constant, which only planning it decides.
func whenConstants(native *celast.AST) (plan bool, first error) {
	celast.PreOrderVisit(native.Expr(), celast.NewExprVisitor(func(e celast.Expr) {
		if first != nil || e.Kind() != celast.CallKind {
			return
		}
		call := e.AsCall()
		args := call.Args()
		switch fn := call.FunctionName(); {
		case fn == overloads.Matches:
			p := matchesPattern(call)
			if p == nil {
				return
			}
			s, at, ok := constString(p)
			if !ok {
				return
			}
			if err := celPattern(s); err != nil {
				loc := native.SourceInfo().GetStartLocation(at)
				first = fmt.Errorf("the pattern %s of matches (line %d, column %d) is an invalid regex: %w", quotePattern(s), loc.Line(), loc.Column()+1, err)
			}
		case overloads.IsTypeConversionFunction(fn) && len(args) == 1 && constantExpr(args[0]):
			plan = true
		}
	}))
	return plan, first
}

// matchesPattern is the pattern argument of a matches call: the only
// argument of x.matches(p), the second of matches(x, p); nil for any
// other shape.
func matchesPattern(call celast.CallExpr) celast.Expr {
	args := call.Args()
	switch {
	case call.IsMemberFunction() && len(args) == 1:
		return args[0]
	case !call.IsMemberFunction() && len(args) == 2:
		return args[1]
	}
	return nil
}

// foldJoinedPatterns rewrites every matches pattern of a checked
// expression that is joined from literals only (constString) into the
// string literal it always is. cel-go compiles a literal pattern once,
// when it plans the program (OptOptimize, as the authz sidecar plans),
// and any other pattern on every evaluation; checkWhenConstants has held
// each such pattern to celPattern's rule first. The rewritten node keeps
// its id, so its position and its type (string) stay.
func foldJoinedPatterns(native *celast.AST) {
	fac := celast.NewExprFactory()
	celast.PreOrderVisit(native.Expr(), celast.NewExprVisitor(func(e celast.Expr) {
		if e.Kind() != celast.CallKind || e.AsCall().FunctionName() != overloads.Matches {
			return
		}
		p := matchesPattern(e.AsCall())
		if p == nil || p.Kind() == celast.LiteralKind {
			return
		}
		if s, _, ok := constString(p); ok {
			p.SetKindCase(fac.NewLiteral(p.ID(), types.String(s)))
		}
	}))
}

// celPattern reports whether a literal pattern of CEL's matches is
// accepted: the same rules, limit and error text as a path or header
// regex (CheckRegexp, without its memo: CELChecker remembers the verdict
// of the whole expression). Both ways a `when` expression is validated
// (the fast verdict and cel-go's checked expression) use it.
func celPattern(pattern string) error { return checkRegexp(pattern) }

// constString is the string a pattern expression always has when it is
// a string literal or literals joined by + ("^/v1/" + "[a-z]+$"), and
// the id of its first literal (where the pattern starts in the source);
// ok is false for anything else. The authz sidecar does not fold such a
// concatenation when it loads the rule: it would compile the pattern on
// every request, and an invalid one would fail every request closed, so
// validation holds it to the rule of a literal pattern. Its length is
// bounded by the expression's; its depth by cel-go's parser's.
func constString(e celast.Expr) (s string, at int64, ok bool) {
	switch e.Kind() {
	case celast.LiteralKind:
		lit, isString := e.AsLiteral().(types.String)
		return string(lit), e.ID(), isString
	case celast.CallKind:
		call := e.AsCall()
		if call.FunctionName() != operators.Add || call.IsMemberFunction() || len(call.Args()) != 2 {
			return "", 0, false
		}
		l, at, ok := constString(call.Args()[0])
		if !ok {
			return "", 0, false
		}
		r, _, ok := constString(call.Args()[1])
		if !ok {
			return "", 0, false
		}
		return l + r, at, true
	}
	return "", 0, false
}

// constantExpr reports whether e reads no variable: literals, and lists,
// maps and calls of constants (what cel-go's planner may fold).
func constantExpr(e celast.Expr) bool {
	ok := true
	celast.PreOrderVisit(e, celast.NewExprVisitor(func(x celast.Expr) {
		switch x.Kind() {
		case celast.IdentKind, celast.SelectKind, celast.ComprehensionKind, celast.StructKind, celast.UnspecifiedExprKind:
			ok = false
		}
	}))
	return ok
}

// quotePattern quotes a pattern for an error message, cut to 64 bytes.
func quotePattern(s string) string {
	const max = 64
	if len(s) > max {
		return fmt.Sprintf("%q...", s[:max])
	}
	return fmt.Sprintf("%q", s)
}
