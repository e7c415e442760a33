package spec

import (
	"errors"
	"fmt"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"testing"

	"cel.dev/cel-go/cel"
	celast "cel.dev/cel-go/common/ast"
	"cel.dev/cel-go/common/overloads"
	"cel.dev/cel-go/common/types"
)

// celPlanRefused are `when` expressions that type-check but that the
// authz sidecar could not load (or that a literal pattern over the RE2
// bound of path regexes makes unacceptable): validation must refuse
// them. pattern is the literal matches pattern whose CheckRegexp error
// the message must carry ("" for a conversion of a constant), col its
// 1-based column.
var celPlanRefused = []struct {
	expr    string
	pattern string
	col     int
}{
	{expr: `request.path.matches("(")`, pattern: `(`, col: 22},                                       // syntax error
	{expr: `matches(request.path, "(")`, pattern: `(`, col: 23},                                      // the global overload
	{expr: `request.path.matches("[z-a]")`, pattern: `[z-a]`, col: 22},                               // bad range
	{expr: `request.path.matches("a{1001}")`, pattern: `a{1001}`, col: 22},                           // over Go's repeat count
	{expr: `request.path.matches("^/x/[a-f0-9]{64}$")`, pattern: `^/x/[a-f0-9]{64}$`, col: 22},       // Go compiles it; over the RE2 bound
	{expr: `matches(request.path, "^/x/[a-f0-9]{64}$")`, pattern: `^/x/[a-f0-9]{64}$`, col: 23},      // the same, global overload
	{expr: `request.path.matches("(a{10}){10}")`, pattern: `(a{10}){10}`, col: 22},                   // nested repetition beyond the bound
	{expr: `request.path.matches("(\\d")`, pattern: `(\d`, col: 22},                                  // a CEL escape: the pattern is (\d
	{expr: `request.method == "GET" && request.path.matches("(")`, pattern: `(`, col: 49},            // inside &&
	{expr: `request.method == "GET" || matches(request.path, "(x")`, pattern: `(x`, col: 50},         // inside ||
	{expr: `request.method == "GET" ? request.path.matches("(") : false`, pattern: `(`, col: 48},     // inside ?:
	{expr: `request.method == "GET" ? true : !matches(request.path, "(")`, pattern: `(`, col: 57},    // ?: else branch, under !
	{expr: `identity.scopes.exists(s, s.matches("a{1001}"))`, pattern: `a{1001}`, col: 37},           // inside the exists macro
	{expr: `identity.scopes.all(s, matches(s, "(") || s == "x")`, pattern: `(`, col: 35},             // inside all, global overload
	{expr: `request.path.matches("^a$") && request.path.matches("(")`, pattern: `(`, col: 53},        // the second of two
	{expr: "request.method == \"GET\" &&\n  request.path.matches(\"(\")", pattern: `(`, col: 24},     // line 2 (col on that line)
	{expr: `request.path.matches("(" + "a")`, pattern: `(a`, col: 22},                                // joined from literals
	{expr: `matches(request.path, "^/x/" + "[a-f0-9]{64}$")`, pattern: `^/x/[a-f0-9]{64}$`, col: 23}, // the same, global overload
	{expr: `request.path.matches("^a" + ("b" + "("))`, pattern: `^ab(`, col: 22},                     // nested joins
	{expr: "request.path.matches(\n\"^a\" + \"[\")", pattern: `^a[`, col: 1},                         // the pattern starts on line 2
	{expr: `request.time > timestamp("bad")`},                                                        // conversions of a constant,
	{expr: `request.n == int("x")`},                                                                  // evaluated when the sidecar
	{expr: `duration("1x") < request.d`},                                                             // loads the rule
	{expr: `string(b"\xff") == request.path`},                                                        //
	{expr: `request.path.matches(string("("))`},                                                      // a folded pattern
	{expr: `[1].exists(x, int("y") == x) || request.path == "/"`},                                    // inside a macro
}

// celPlanAccepted type-check and load: validation accepts them.
var celPlanAccepted = []string{
	`request.path.matches("^/items/[0-9]+$")`,
	`matches(request.path, "^(gold|silver)$")`,
	`request.path.matches("^/x/[a-f0-9]{32}$")`,
	`request.path.matches("\\d+")`, // an escape: cel-go's path
	`request.path.matches(request.headers["x-re"])`,
	`matches(request.path, identity.claims.re)`,
	`request.path.matches("(" + request.method + ")")`,
	`request.path.matches("^/v1/" + "[a-z]+$")`,
	`request.path.matches("(" + "a" + ")")`,
	`identity.scopes.exists(s, s.matches("^pets:"))`,
	`request.method == "GET" ? request.path.matches("^/a") : matches(request.path, "^/b")`,
	`request.n == int("5") && timestamp("2024-01-01T00:00:00Z") < request.time`,
	`int(request.n) == 5 && string(request.path) == "/"`,
}

// TestCELRefusesWhatTheSidecarCannotLoad: CompileWhen and CELChecker.Check
// (both ways of validating: the fast verdict must leave these to cel-go)
// refuse each expression of celPlanRefused with one error, the same from
// both, that names the pattern, where it is and CheckRegexp's reason; and
// accept celPlanAccepted, which the sidecar loads.
func TestCELRefusesWhatTheSidecarCannotLoad(t *testing.T) {
	env := testCELEnv(t)
	chk := testCELChecker(t)
	for _, c := range celPlanRefused {
		if celSurelyBool(c.expr) {
			t.Errorf("%q: taken by the fast verdict", c.expr)
		}
		_, err := CompileWhen(env, c.expr)
		if err == nil {
			t.Errorf("%q: CompileWhen accepts it", c.expr)
			continue
		}
		if got := chk.Check(c.expr); celErr(got) != celErr(err) {
			t.Errorf("%q: Check says %q, CompileWhen %q", c.expr, celErr(got), celErr(err))
		}
		msg := err.Error()
		if !strings.HasPrefix(msg, "CEL does not compile: ") {
			t.Errorf("%q: %q does not start like the other `when` errors", c.expr, msg)
		}
		if c.pattern == "" {
			if !strings.Contains(msg, "a constant part cannot be evaluated") {
				t.Errorf("%q: %q does not say a constant cannot be evaluated", c.expr, msg)
			}
			continue
		}
		why := CheckRegexp(c.pattern)
		if why == nil {
			t.Fatalf("%q: CheckRegexp accepts %q: the table is wrong", c.expr, c.pattern)
		}
		if !errors.Is(err, why) && !strings.Contains(msg, why.Error()) {
			t.Errorf("%q: %q does not carry CheckRegexp's reason %q", c.expr, msg, why)
		}
		line := 1 + strings.Count(c.expr, "\n")
		want := "the pattern " + quotePattern(c.pattern) + " of matches (line " + strconv.Itoa(line) + ", column " + strconv.Itoa(c.col) + ") is an invalid regex: "
		if !strings.Contains(msg, want) {
			t.Errorf("%q: %q, want it to contain %q", c.expr, msg, want)
		}
	}
	for _, e := range celPlanAccepted {
		if _, err := CompileWhen(env, e); err != nil {
			t.Errorf("%q: refused: %v", e, err)
		}
		if err := chk.Check(e); err != nil {
			t.Errorf("%q: Check refuses it: %v", e, err)
		}
		if _, err := env.Program(mustCompile(t, env, e), cel.EvalOptions(cel.OptOptimize)); err != nil {
			t.Errorf("%q: the sidecar would not load it: %v", e, err)
		}
	}
}

// TestCELAcceptedLoadsInTheSidecar: every expression of the verdict
// table, the refusal tables and the generated ones that validation
// accepts also plans the way the authz sidecar plans it (authz/build.go:
// Program with OptOptimize). Fails when validation lets a literal pattern
// or a constant conversion through that the sidecar refuses.
func TestCELAcceptedLoadsInTheSidecar(t *testing.T) {
	env := testCELEnv(t)
	chk := testCELChecker(t)
	exprs := celVerdictExprs(t)
	for _, c := range celPlanRefused {
		exprs = append(exprs, c.expr)
	}
	exprs = append(exprs, celPlanAccepted...)
	var accepted int
	for _, e := range exprs {
		if chk.Check(e) != nil {
			continue
		}
		accepted++
		if _, err := env.Program(mustCompile(t, env, e), cel.EvalOptions(cel.OptOptimize)); err != nil {
			t.Errorf("%q: validation accepts it, the sidecar would refuse it: %v", e, err)
		}
	}
	if accepted < 100 {
		t.Fatalf("only %d accepted expressions", accepted)
	}
}

// TestCELPatternOneRuleBothPaths: for each pattern, the fast verdict
// takes request.path.matches("p") exactly when cel-go's path accepts it,
// and that is exactly when CheckRegexp accepts p.
func TestCELPatternOneRuleBothPaths(t *testing.T) {
	env := testCELEnv(t)
	for _, p := range []string{`^a$`, `a|b`, ``, `x+`, `[a-z]`, `^/x/[a-f0-9]{32}$`, `^/x/[a-f0-9]{48}$`, `^/x/[a-f0-9]{64}$`,
		`(`, `(x`, `[z-a]`, `a{1001}`, `a{2,1}`, `(a{10}){10}`, `x**`, `(?P<n>a)`, `(?<n>a)`, `(?i)abc`} {
		expr := `request.path.matches("` + p + `")`
		ok := CheckRegexp(p) == nil
		if got := celSurelyBool(expr); got != ok {
			t.Errorf("%q: fast verdict %v, CheckRegexp accepts: %v", p, got, ok)
		}
		_, err := CompileWhen(env, expr)
		if (err == nil) != ok {
			t.Errorf("%q: CompileWhen says %v, CheckRegexp accepts: %v", p, err, ok)
		}
	}
}

func mustCompile(t *testing.T, env *cel.Env, expr string) *cel.Ast {
	t.Helper()
	ast, iss := env.Compile(expr)
	if iss.Err() != nil {
		t.Fatalf("%q: %v", expr, iss.Err())
	}
	return ast
}

// TestCheckRequestRegexp: CheckRequestRegexp gives CheckRegexp's verdict
// and text for every pattern of the tables, and refuses a short pattern
// that expands to a huge program from its parse tree: it allocates a
// small fraction of what building the program would (bytes, not time).
func TestCheckRequestRegexp(t *testing.T) {
	patterns := []string{`^/items/[0-9]+$`, `(`, `a{2,1}`, `\p{Nope}`, ``, `(?i)x`, `(a{10}){10}`, `a{1001}`, `.*`}
	for _, s := range re2Sizes {
		patterns = append(patterns, s.expr)
	}
	for _, p := range patterns {
		if got, want := CheckRequestRegexp(p), CheckRegexp(p); fmt.Sprint(got) != fmt.Sprint(want) {
			t.Errorf("%q: CheckRequestRegexp %v, CheckRegexp %v", p, got, want)
		}
	}
	huge := strings.Repeat("a{1000}", 1000) // a million instructions
	var m0, m1 runtime.MemStats
	runtime.ReadMemStats(&m0)
	err := CheckRequestRegexp(huge)
	runtime.ReadMemStats(&m1)
	if err == nil || !strings.HasPrefix(err.Error(), "too complex for Envoy") {
		t.Fatalf("huge pattern: %v", err)
	}
	if n := m1.TotalAlloc - m0.TotalAlloc; n > 16<<20 {
		t.Errorf("refusing a 7 KB pattern allocated %d MiB: the program was built", n>>20)
	}
}

// FuzzCELAcceptedLoads: whatever expression validation accepts, the authz
// sidecar's planning (Program with OptOptimize) accepts too. Seeded from
// the refusal and acceptance tables and the CEL seeds.
func FuzzCELAcceptedLoads(f *testing.F) {
	for _, c := range celPlanRefused {
		f.Add(c.expr)
	}
	for _, e := range celPlanAccepted {
		f.Add(e)
	}
	for _, e := range celSeeds {
		f.Add(e)
	}
	env := testCELEnv(f)
	f.Fuzz(func(t *testing.T, expr string) {
		if len(expr) > 1024 {
			return
		}
		chk := testCELChecker(t)
		if chk.Check(expr) != nil {
			return
		}
		ast, iss := env.Compile(expr)
		if iss.Err() != nil {
			t.Fatalf("%q: validation accepts it, cel-go does not compile it: %v", expr, iss.Err())
		}
		if _, err := env.Program(ast, cel.EvalOptions(cel.OptOptimize)); err != nil {
			t.Fatalf("%q: validation accepts it, the sidecar would refuse it: %v", expr, err)
		}
	})
}

// TestCompileWhenFoldsJoinedPatterns: CompileWhen returns every matches
// pattern joined from literals only as the one literal it always is (the
// node keeps its id: the same position and type), so that cel-go, which
// compiles a non-literal pattern on every evaluation, compiles it once
// when it plans the program; a pattern that reads the request is left.
func TestCompileWhenFoldsJoinedPatterns(t *testing.T) {
	env := testCELEnv(t)
	for expr, want := range map[string][]string{
		`request.path.matches("^/v1/" + "[a-z]+$")`:                           {"^/v1/[a-z]+$"},
		`matches(request.path, "^/a" + ("b" + "c$"))`:                         {"^/abc$"},
		`request.method == "GET" && request.path.matches("^/" + "x") || true`: {"^/x"},
		`identity.scopes.exists(s, s.matches("^pets:" + "read$"))`:            {"^pets:read$"},
		`request.path.matches("^/lit$")`:                                      {"^/lit$"},
		`request.path.matches("(" + request.method + ")")`:                    nil,
	} {
		a, err := CompileWhen(env, expr)
		if err != nil {
			t.Fatalf("%q: %v", expr, err)
		}
		native := a.NativeRep()
		var got []string
		celast.PreOrderVisit(native.Expr(), celast.NewExprVisitor(func(e celast.Expr) {
			if e.Kind() != celast.CallKind || e.AsCall().FunctionName() != overloads.Matches {
				return
			}
			p := matchesPattern(e.AsCall())
			if p.Kind() != celast.LiteralKind {
				return
			}
			got = append(got, string(p.AsLiteral().(types.String)))
			if typ := native.GetType(p.ID()); !typ.IsExactType(types.StringType) {
				t.Errorf("%q: the folded pattern's type is %v", expr, typ)
			}
		}))
		if !slices.Equal(got, want) {
			t.Errorf("%q: literal patterns %q, want %q", expr, got, want)
		}
		prg, err := env.Program(a, cel.EvalOptions(cel.OptOptimize))
		if err != nil {
			t.Fatalf("%q: does not plan: %v", expr, err)
		}
		out, _, err := prg.Eval(map[string]any{
			"request":  map[string]any{"path": "/v1/abc", "method": "GET"},
			"identity": map[string]any{"scopes": []string{"pets:read"}},
		})
		if err != nil {
			t.Fatalf("%q: %v", expr, err)
		}
		// The folded rule means what the joined one meant.
		unfolded, iss := env.Compile(expr)
		if iss.Err() != nil {
			t.Fatal(iss.Err())
		}
		uprg, err := env.Program(unfolded)
		if err != nil {
			t.Fatal(err)
		}
		uout, _, err := uprg.Eval(map[string]any{
			"request":  map[string]any{"path": "/v1/abc", "method": "GET"},
			"identity": map[string]any{"scopes": []string{"pets:read"}},
		})
		if err != nil || uout != out {
			t.Errorf("%q: folded %v, as written %v (%v)", expr, out, uout, err)
		}
	}
}
