package spec

import (
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"cel.dev/cel-go/cel"
	"cel.dev/cel-go/common"
	"cel.dev/cel-go/common/ast"
	"cel.dev/cel-go/common/types"
	"cel.dev/cel-go/parser"
	exprpb "google.golang.org/genproto/googleapis/api/expr/v1alpha1"
)

// Gatehouse compiles `when` expressions with cel-go's default (ANTLR)
// parser (validation decides the common shape without any parser first,
// celfast.go; then an expression of plain tokens is parsed by cel-go's
// Pratt parser, celparse.go; everything else goes to the default parser).
// cel-go v0.33's Pratt parser (parse and check of a new expression about
// half the CPU and heap bytes, BenchmarkCELParsers) does not accept the
// same language everywhere: it takes an upper-case hex prefix ("0X1F"),
// which the default parser (and the CEL grammar's lower-case `0x`)
// refuses, and places a leading-dot name (".identity") one byte off. So
// it is used only behind celPlain's gate, which refuses both, and only to
// find an expression valid (TestCELParseSameTree, FuzzCELParseSameTree).
// TestCELPrattParserDisagrees pins the hex difference; FuzzCELParsersAgree
// and BenchmarkCELParsers are what to run again on a cel-go upgrade
// (see the comment on TestCELPrattParserDisagrees).

// newPrattParser is env's parser (its macros; NewCELEnv sets no other
// parser option) with the Pratt implementation instead of ANTLR.
func newPrattParser(env *cel.Env) (*parser.Parser, error) {
	return parser.NewParser(parser.Macros(env.Macros()...), parser.EnablePrattParser(true))
}

// parsePratt parses expr with p into an unchecked *cel.Ast of env (false
// on any problem). cel.Env has no option for the Pratt parser, so the
// tree enters the environment the documented way: as a ParsedExpr.
func parsePratt(env *cel.Env, p *parser.Parser, expr string) (*cel.Ast, bool) {
	src, err := common.NewTextSourceWithLimit(expr, 100_000)
	if err != nil {
		return nil, false
	}
	parsed, errs := p.Parse(src)
	if parsed == nil || len(errs.GetErrors()) > 0 {
		return nil, false
	}
	pb, err := ast.ToProto(parsed)
	if err != nil {
		return nil, false
	}
	return cel.ParsedExprToAstWithSource(&exprpb.ParsedExpr{Expr: pb.GetExpr(), SourceInfo: pb.GetSourceInfo()}, src), true
}

// celSeeds are `when` expressions from the unit tables, the example specs
// and the docs, plus the shapes that parse differently (macros, escapes,
// operators, errors) that a parser change could trip on.
var celSeeds = []string{
	`identity.kind == "apiKey" && identity.labels.plan == "gold"`,
	`identity.kind == "apiKey" && identity.labels.plan in ["gold", "s0-0001"]`,
	`request.ip.startsWith("203.0.113.")`,
	`request.method == "GET" || request.method == "HEAD"`,
	`request.headers["x-tenant"] == identity.labels.tenant`,
	`has(identity.claims.sub) && identity.claims.sub != ""`,
	`identity.claims.scope.split(" ").exists(s, s == "admin")`,
	`[1, 2, 3].all(x, x > 0) ? true : false`,
	`identity.claims.groups.exists_one(g, g == "ops")`,
	`size(request.path) < 64 && request.path.matches("^/items/[0-9]+$")`,
	`!(request.method in ["DELETE"]) && 1 + 2 * 3 - 4 / 2 % 3 == 5`,
	`{"a": 1}.a == 1 && [1][0] == 1 && b"\x00" != b"" && 1u < 2u && -1.5e3 < 0.0`,
	`'single' + "double" + '''triple''' + r"raw\n" == "x"`,
	`identity.claims.banned == true`,
	`request.method`,
	`request.ip.startsWith(`,
	`request.`,
	`1 +`,
	`undeclared == 1`,
	`request.method == 1`,
	`"unterminated`,
	`a.b.c(`,
	`identity.` + "`key-with-dash`" + ` == "x"`,
	`request.headers.map(k, k).size() > 0`,
	`(((((true)))))`,
	`true && false || !true`,
	`null == null`,
	`dyn(1) == 1.0`,
	`int("5") == 5 && string(5) == "5" && double(1) == 1.0`,
	`timestamp("2024-01-01T00:00:00Z") < timestamp("2025-01-01T00:00:00Z")`,
	`duration("1s") > duration("500ms")`,
	`request.headers.?x`,
	`1 ? 2 : 3`,
	`in`,
	`[`,
	`{`,
	`"\u00e9" == "é"`,
	"\x00",
	``,
}

// exampleWhens are the `when:` expressions of the spec testdata, the
// deploy examples and the route spec doc.
func exampleWhens(tb testing.TB) []string {
	tb.Helper()
	var files []string
	for _, pattern := range []string{"testdata/valid/*", "testdata/invalid/*", "../deploy/examples/*", "../docs/ROUTE_SPEC.md"} {
		m, _ := filepath.Glob(pattern)
		files = append(files, m...)
	}
	if len(files) < 3 {
		tb.Fatalf("found %d example files; the test runs from spec/", len(files))
	}
	when := regexp.MustCompile(`when: '([^']*)'`)
	var out []string
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			tb.Fatal(err)
		}
		for _, m := range when.FindAllStringSubmatch(string(b), -1) {
			out = append(out, m[1])
		}
	}
	if len(out) == 0 {
		tb.Fatal("no `when:` expression in the examples")
	}
	return out
}

// celVerdict is what one parser makes of an expression.
type celVerdict struct {
	parsed  bool
	checked *cel.Ast // nil when parsing or checking failed
}

func defaultVerdict(env *cel.Env, expr string) celVerdict {
	a, iss := env.Parse(expr)
	if iss.Err() != nil {
		return celVerdict{}
	}
	c, iss := env.Check(a)
	if iss.Err() != nil {
		return celVerdict{parsed: true}
	}
	return celVerdict{parsed: true, checked: c}
}

func prattVerdict(env *cel.Env, p *parser.Parser, expr string) celVerdict {
	a, ok := parsePratt(env, p, expr)
	if !ok {
		return celVerdict{}
	}
	c, iss := env.Check(a)
	if iss.Err() != nil {
		return celVerdict{parsed: true}
	}
	return celVerdict{parsed: true, checked: c}
}

// celActivations are the requests the evaluations in FuzzCELParsersAgree
// run on.
var celActivations = []map[string]any{
	{"request": map[string]any{}, "identity": map[string]any{}},
	{
		"request": map[string]any{"method": "GET", "path": "/items/7", "ip": "203.0.113.9",
			"headers": map[string]any{"x-tenant": "t1", "x": "y"}},
		"identity": map[string]any{"kind": "apiKey", "labels": map[string]any{"plan": "gold", "tenant": "t1"},
			"claims": map[string]any{"sub": "u1", "scope": "read admin", "groups": []any{"ops", "dev"}, "banned": false}},
	},
}

// FuzzCELParsersAgree compares cel-go's Pratt parser with the default
// one on arbitrary input: both accept and reject the same inputs, the
// trees they build check to the same type and evaluate to the same result
// (or both fail) on a few requests. Inputs of the one known difference
// (an upper-case hex prefix, TestCELPrattParserDisagrees) are skipped so
// the fuzzer looks for others. It also holds CELChecker.Check to exactly
// CompileWhen's verdict and error text on every input.
//
//	go test -run '^$' -fuzz '^FuzzCELParsersAgree$' -fuzztime 5m ./spec
func FuzzCELParsersAgree(f *testing.F) {
	for _, s := range celSeeds {
		f.Add(s)
	}
	for _, s := range exampleWhens(f) {
		f.Add(s)
	}
	env := testCELEnv(f)
	pratt, err := newPrattParser(env)
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, expr string) {
		if len(expr) > 2000 {
			return // long inputs add parse time, not shapes
		}
		chk := testCELChecker(t)
		_, want := CompileWhen(env, expr)
		for range 2 { // the second answer is the remembered one
			if got := chk.Check(expr); celErr(got) != celErr(want) {
				t.Fatalf("%q: CELChecker.Check says %q, CompileWhen says %q", expr, celErr(got), celErr(want))
			}
		}
		if strings.Contains(expr, "0X") {
			return // the known difference
		}
		def, alt := defaultVerdict(env, expr), prattVerdict(env, pratt, expr)
		if def.parsed != alt.parsed {
			t.Fatalf("%q: default parser accepts: %v, Pratt parser accepts: %v", expr, def.parsed, alt.parsed)
		}
		if (def.checked == nil) != (alt.checked == nil) {
			t.Fatalf("%q: checks with the default parser: %v, with the Pratt parser: %v", expr, def.checked != nil, alt.checked != nil)
		}
		if def.checked == nil {
			return
		}
		if dt, at := def.checked.OutputType(), alt.checked.OutputType(); !dt.IsExactType(at) {
			t.Fatalf("%q: type %s with the default parser, %s with the Pratt parser", expr, dt, at)
		}
		dp, err1 := env.Program(def.checked, cel.CostLimit(10_000))
		ap, err2 := env.Program(alt.checked, cel.CostLimit(10_000))
		if (err1 == nil) != (err2 == nil) {
			t.Fatalf("%q: program with the default parser: %v, with the Pratt parser: %v", expr, err1, err2)
		}
		if err1 != nil {
			return
		}
		for i, act := range celActivations {
			dv, _, derr := dp.Eval(act)
			av, _, aerr := ap.Eval(act)
			if (derr == nil) != (aerr == nil) {
				t.Fatalf("%q on request %d: default parser's program: %v, %v; Pratt parser's: %v, %v", expr, i, dv, derr, av, aerr)
			}
			if derr == nil && dv.Equal(av) != types.True && fmt.Sprint(dv) != fmt.Sprint(av) { // Sprint: NaN
				t.Fatalf("%q on request %d: default parser's program gives %v, Pratt parser's %v", expr, i, dv, av)
			}
		}
	})
}

// TestCELPrattParserDisagrees pins why the Pratt parser is not used: it
// accepts "0X1F" (upper-case hex prefix) where the default parser and the
// CEL spec refuse it, so a spec validated with it could be refused by the
// authz engine. Found by FuzzCELParsersAgree in about a minute. When a
// cel-go upgrade makes this test fail, the difference is gone: run the
// fuzz test for a few minutes without its "0X" skip before switching.
func TestCELPrattParserDisagrees(t *testing.T) {
	env := testCELEnv(t)
	pratt, err := newPrattParser(env)
	if err != nil {
		t.Fatal(err)
	}
	for _, expr := range []string{"0X0", "0X1F == 31", "0XFu == 15u"} {
		if defaultVerdict(env, expr).parsed {
			t.Errorf("%q: the default parser accepts it", expr)
		}
		if !prattVerdict(env, pratt, expr).parsed {
			t.Errorf("%q: the Pratt parser refuses it too now; see this test's comment", expr)
		}
	}
	for _, expr := range []string{"0x0", "0x1F == 31"} {
		if d, p := defaultVerdict(env, expr), prattVerdict(env, pratt, expr); !d.parsed || !p.parsed {
			t.Errorf("%q: default parser accepts: %v, Pratt parser accepts: %v; want both", expr, d.parsed, p.parsed)
		}
	}
}

// TestCELCheckerSameErrors: for every seed and example expression,
// CELChecker.Check reports exactly what CompileWhen reports (nil or the
// same error text), the first time and from its memo.
func TestCELCheckerSameErrors(t *testing.T) {
	env := testCELEnv(t)
	chk := testCELChecker(t)
	var accepted, refused int
	for _, expr := range append(append([]string{}, celSeeds...), exampleWhens(t)...) {
		_, want := CompileWhen(env, expr)
		for range 2 {
			if got := chk.Check(expr); celErr(got) != celErr(want) {
				t.Errorf("%q: Check says %q, CompileWhen says %q", expr, celErr(got), celErr(want))
			}
		}
		if want == nil {
			accepted++
		} else {
			refused++
		}
	}
	if accepted < 10 || refused < 10 {
		t.Fatalf("the table has %d accepted and %d refused expressions; it should exercise both", accepted, refused)
	}
}

// BenchmarkCELParsers is the cost of a `when` expression never seen
// before, parsed and checked, with the default parser (what CompileWhen
// does) and with the Pratt parser (what switching would save).
func BenchmarkCELParsers(b *testing.B) {
	const expr = `identity.kind == "apiKey" && identity.labels.plan in ["gold", "silver"] && request.ip.startsWith("10.")`
	env := testCELEnv(b)
	pratt, err := newPrattParser(env)
	if err != nil {
		b.Fatal(err)
	}
	b.Run("default", func(b *testing.B) {
		b.ReportAllocs()
		for i := 0; b.Loop(); i++ {
			if defaultVerdict(env, fmt.Sprintf("%s && request.path != \"/%d\"", expr, i)).checked == nil {
				b.Fatal("does not compile")
			}
		}
	})
	b.Run("pratt", func(b *testing.B) {
		b.ReportAllocs()
		for i := 0; b.Loop(); i++ {
			if prattVerdict(env, pratt, fmt.Sprintf("%s && request.path != \"/%d\"", expr, i)).checked == nil {
				b.Fatal("does not compile")
			}
		}
	})
}

// celErr is err's text, "<nil>" for nil (an empty error text must not
// pass for no error).
func celErr(err error) string {
	if err == nil {
		return "<nil>"
	}
	return err.Error()
}

// testCELEnv is NewCELEnv for a test; it fails the test on an error.
func testCELEnv(t testing.TB) *cel.Env {
	t.Helper()
	env, err := NewCELEnv()
	if err != nil {
		t.Fatal(err)
	}
	return env
}

// testCELChecker is NewCELChecker for a test; it fails the test on an error.
func testCELChecker(t testing.TB) *CELChecker {
	t.Helper()
	chk, err := NewCELChecker()
	if err != nil {
		t.Fatal(err)
	}
	return chk
}
