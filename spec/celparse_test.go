package spec

import (
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"

	"cel.dev/cel-go/cel"
	"github.com/google/go-cmp/cmp"
	exprpb "google.golang.org/genproto/googleapis/api/expr/v1alpha1"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/testing/protocmp"
)

// celParseDiff compares the fast path's tree of expr (parse) with the
// default parser's: "" when they agree, else what differs. They agree
// when both build the same tree (expression ids, node kinds, source
// positions, line offsets, macro calls: the whole ParsedExpr), when both
// refuse expr, or when the fast path declines (the default parser then
// decides). The fast path parsing what the default parser refuses is a
// difference.
func celParseDiff(env *cel.Env, parse func(string) (*cel.Ast, bool), expr string) (diff string, fast bool) {
	got, ok := parse(expr)
	if !ok {
		return "", false
	}
	want, iss := env.Parse(expr)
	if iss.Err() != nil {
		return fmt.Sprintf("%q: the fast path parses it, the default parser refuses it: %v", expr, iss.Err()), true
	}
	wp, err1 := cel.AstToParsedExpr(want)
	gp, err2 := cel.AstToParsedExpr(got)
	if err1 != nil || err2 != nil {
		return fmt.Sprintf("%q: no ParsedExpr: %v, %v", expr, err1, err2), true
	}
	if proto.Equal(wp, gp) {
		return "", true
	}
	if d := cmp.Diff(wp, gp, protocmp.Transform()); d != "" {
		return fmt.Sprintf("%q: trees differ (-default +fast):\n%s", expr, d), true
	}
	return "", true
}

// celBenchWhens are the `when` shapes of the four generators of
// controlplane/compile's BenchmarkCompileFull (fastWhen, callsWhen,
// celgoWhen; the shared one is fastWhen's), for spec i with the given
// tag, copied here because spec may not import that package.
func celBenchWhens(i int) []string {
	tag := fmt.Sprintf("s0-%04d", i)
	g, c := "g"+tag, "c"+tag
	return []string{
		`identity.kind == "apiKey" && identity.labels.plan in ["gold", "` + tag + `"]`,
		`identity.kind == "apiKey" && (identity.labels.plan == "gold" || request.path.startsWith("/api/` + g + `/"))`,
		`identity.kind == "apiKey" && size(identity.labels.plan) == 4 && identity.labels.plan != "` + g + `"`,
		`has(identity.labels.plan) && identity.labels.plan in ["gold", "` + g + `"] && identity.kind == "apiKey"`,
		`identity.kind == "apiKey" && identity.labels.plan.matches("^(gold|` + g + `)$")`,
		`identity.kind == "apiKey" && (identity.labels.plan == "` + c + `" ? false : identity.labels.plan == "gold")`,
		`identity.kind + "/" + identity.labels.plan == "apiKey/gold" || identity.labels.plan + "/" + identity.kind == "` + c + `"`,
		`identity.kind == "apiKey" && ["gold", "` + c + `"].exists(p, p == identity.labels.plan)`,
		`identity.kind == "apiKey" && size(identity.labels.plan) * 2 == 8 && identity.labels.plan != "` + c + `"`,
	}
}

// celParseExpr generates an expression of CEL's whole expression grammar
// (conditional, logic, relations, arithmetic, unary operators, member
// selection, index, calls, the macros, list and map literals, literals of
// every kind the gate takes and some it refuses) with at most depth
// levels; with bad > 0 one piece in bad is broken (a missing operand, a
// stray bracket, a literal form the gate refuses).
func celParseExpr(r *rand.Rand, depth, bad int) string {
	broken := func() bool { return bad > 0 && r.IntN(bad) == 0 }
	if broken() {
		return []string{"", "(", ")", "]", ",", "?", ":", ".", "0X1F", `"a\n"`, `r"x"`, `b"x"`, `'''t'''`, "1e3", "0x1f", "`a`", "é", "in", "&&", "1..2", "a.1", "-", "{:}", "[,]", "1 2", `"a" "b"`}[r.IntN(26)]
	}
	leaf := func() string {
		return []string{"request", "identity", "identity.kind", "request.path", "identity.labels.plan", "request.headers[\"x\"]",
			"1", "0", "42", "7u", "0u", "1.5", "0.25", "10.0", "true", "false", "null", `"a"`, `'b'`, `""`, `''`, `"x y"`, `'say "hi"'`, `"it's"`,
			"x", "p", "_v", "A9", "int", "dyn", "size"}[r.IntN(31)]
	}
	if depth <= 0 {
		return leaf()
	}
	sub := func() string { return celParseExpr(r, depth-1-r.IntN(2), bad) }
	sp := func() string { return []string{"", " ", " ", " ", "\n", "\t", "  "}[r.IntN(7)] }
	switch r.IntN(16) {
	case 0:
		return sub() + sp() + "?" + sp() + sub() + sp() + ":" + sp() + sub()
	case 1:
		return sub() + sp() + []string{"||", "&&"}[r.IntN(2)] + sp() + sub()
	case 2, 3:
		return sub() + sp() + []string{"==", "!=", "<", "<=", ">", ">=", "in"}[r.IntN(7)] + sp() + sub()
	case 4:
		return sub() + sp() + []string{"+", "-", "*", "/", "%"}[r.IntN(5)] + sp() + sub()
	case 5:
		return []string{"!", "-", "!!", "--", "!-"}[r.IntN(5)] + sub()
	case 6:
		return "(" + sp() + sub() + sp() + ")"
	case 7:
		return sub() + "." + []string{"a", "kind", "plan", "size()", "startsWith(" + sub() + ")", "contains(" + sub() + ")"}[r.IntN(6)]
	case 8:
		return sub() + "[" + sub() + "]"
	case 9:
		v := []string{"x", "p", "_v"}[r.IntN(3)]
		m := []string{"exists", "all", "exists_one", "map", "filter"}[r.IntN(5)]
		if m == "map" && r.IntN(2) == 0 {
			return sub() + "." + m + "(" + v + ", " + sub() + ", " + sub() + ")"
		}
		return sub() + "." + m + "(" + v + "," + sp() + sub() + ")"
	case 10:
		return "has(" + sub() + "." + []string{"a", "kind", "plan"}[r.IntN(3)] + ")"
	case 11:
		return []string{"size", "int", "string", "dyn", "type", "double", "uint", "f"}[r.IntN(8)] + "(" + sub() + ")"
	case 12:
		n := r.IntN(4)
		var el []string
		for range n {
			el = append(el, sub())
		}
		tail := ""
		if n > 0 && r.IntN(6) == 0 {
			tail = ","
		}
		return "[" + strings.Join(el, ", ") + tail + "]"
	case 13:
		n := r.IntN(3)
		var el []string
		for range n {
			el = append(el, sub()+": "+sub())
		}
		return "{" + strings.Join(el, ", ") + "}"
	case 14:
		return sub() + "." + []string{"a", "b"}[r.IntN(2)] + "(" + sub() + ", " + sub() + ")"
	default:
		return leaf()
	}
}

// celParseCorpus is every expression the differential tests run: the
// pinned verdicts' expressions, the compile bench's shapes (100 specs'
// worth), the Pratt parser's known difference, the depth shapes and
// 3,000 generated expressions (fixed seeds), valid and broken.
func celParseCorpus(t *testing.T) []string {
	all := celVerdictExprs(t)
	for i := range 100 {
		all = append(all, celBenchWhens(i)...)
	}
	all = append(all, "0X0", "0X1F == 31", "0XFu == 15u", "0x1F == 31")
	all = append(all, celDepthExprs()...)
	r := rand.New(rand.NewPCG(8, 1385))
	for i := range 3000 {
		all = append(all, celParseExpr(r, 1+i%6, []int{0, 0, 10, 40}[i%4]))
	}
	return all
}

// TestCELParseSameTree: on every expression of celParseCorpus the fast
// path's tree is the default parser's, ids and positions included, or
// the fast path declines; and it parses most of the bench shapes and
// generated valid expressions, so the comparison is not vacuous.
func TestCELParseSameTree(t *testing.T) {
	env := testCELEnv(t)
	c, err := newCELParsed(env)
	if err != nil {
		t.Fatal(err)
	}
	var fast, total int
	for _, expr := range celParseCorpus(t) {
		total++
		d, ok := celParseDiff(env, c.parse, expr)
		if d != "" {
			t.Error(d)
		}
		if ok {
			fast++
		}
	}
	t.Logf("%d of %d expressions parsed on the fast path, every tree the default parser's", fast, total)
	if fast < total/2 {
		t.Errorf("only %d of %d expressions took the fast path", fast, total)
	}
	for i := range 100 {
		for _, expr := range celBenchWhens(i) {
			if _, ok := c.parse(expr); !ok {
				t.Errorf("%q: a bench shape the fast path declines", expr)
			}
		}
	}
}

// TestCELParseDiffCatchesBrokenTrees: celParseDiff (and so
// TestCELParseSameTree) tells a tree that differs in one position, one
// id, or the order of two operands, and a parser that accepts what the
// default parser refuses.
func TestCELParseDiffCatchesBrokenTrees(t *testing.T) {
	env := testCELEnv(t)
	c, err := newCELParsed(env)
	if err != nil {
		t.Fatal(err)
	}
	broken := map[string]func(*exprpb.ParsedExpr){
		"a position one off": func(pe *exprpb.ParsedExpr) {
			for id := range pe.SourceInfo.Positions {
				pe.SourceInfo.Positions[id]++
				return
			}
		},
		"another id": func(pe *exprpb.ParsedExpr) { pe.Expr.Id += 100 },
		"operands swapped (precedence or associativity)": func(pe *exprpb.ParsedExpr) {
			args := pe.Expr.GetCallExpr().GetArgs()
			args[0], args[1] = args[1], args[0]
		},
	}
	const expr = `identity.kind + "/" + identity.labels.plan == "apiKey/gold" || 1 - 2 - 3 < 0`
	if d, ok := celParseDiff(env, c.parse, expr); d != "" || !ok {
		t.Fatalf("the real fast path: ok %v, diff %s", ok, d)
	}
	for name, breakIt := range broken {
		parse := func(e string) (*cel.Ast, bool) {
			a, ok := c.parse(e)
			if !ok {
				return nil, false
			}
			pe, err := cel.AstToParsedExpr(a)
			if err != nil {
				t.Fatal(err)
			}
			breakIt(pe)
			return cel.ParsedExprToAst(pe), true
		}
		if d, _ := celParseDiff(env, parse, expr); d == "" {
			t.Errorf("%s: no difference found", name)
		}
	}
	acceptsAll := func(string) (*cel.Ast, bool) { return c.parse("true") }
	if d, _ := celParseDiff(env, acceptsAll, "1 +"); d == "" {
		t.Error("a parser that accepts what the default parser refuses: no difference found")
	}
}

// TestCELPlain: what the gate lets through and what it sends to the
// default parser.
func TestCELPlain(t *testing.T) {
	pass := []string{
		`identity.kind == "apiKey" && ["gold", "x"].exists(p, p == identity.labels.plan)`,
		`size(identity.labels.plan) * 2 == 8`,
		`1 + 2u - 3.25 < 0.5 ? 'a' : "b"`,
		`{"a": [1, 2]}["a"][0] == 1`,
		"request.path\n\t== \"/x\"\r",
		`"it's" == 'say "hi"'`,
		`""`,
		`"a" + ''`,
		`1.5`,
		`a.b.c`,
		`(a).b`, `[1][0].x`, `{}.x`, `"a".size()`, `1.size()`, `x . y`,
		`!(-1 < 0)`,
		strings.Repeat("(", 50) + "true" + strings.Repeat(")", 50),
	}
	refuse := []string{
		``,
		`0X1F == 31`, `0x1f == 31`, `1e3 == 1000.0`, `1.5e3`, `12abc`, `1"a"`, `1.0u`, `07u8`,
		`"a\n" == "b"`, `"é" == "e"`, `r"x" == "x"`, `b"x" == b"x"`, `R'x'`, `x"y"`,
		`.identity.kind == "a"`, `!.a`, `1 + .a`, `[.a]`, `f(.a)`, `a..b`, `a.(b)`, `a.[b]`, `a.1`, `x.y.`,
		`"""a""" == "a"`, `'''a'''`, `"unterminated`, `'x`,
		"`a` == 1", `a\b`, "true // comment", "a\x00", "a\f", "é", "~1", "a\x7f",
		strings.Repeat("(", 51) + "true" + strings.Repeat(")", 51),
		strings.Repeat("!", 101) + "true",
		"identity" + strings.Repeat(".a", 101),
		strings.Repeat("x", celParseMaxLen+1),
	}
	for _, e := range pass {
		if !celPlain(e) {
			t.Errorf("%q: refused, want let through", e)
		}
	}
	for _, e := range refuse {
		if celPlain(e) {
			t.Errorf("%q: let through, want refused", e)
		}
	}
}

// celDepthExprs nest each shape that counts against the parsers'
// recursion limit (250) to depths on both sides of celParseMaxPunct and
// of that limit.
func celDepthExprs() []string {
	var out []string
	for _, n := range []int{40, 50, 51, 100, 101, 125, 126, 249, 250, 251} {
		out = append(out,
			strings.Repeat("(", n)+"true"+strings.Repeat(")", n),
			strings.Repeat("!", n)+"true",
			strings.Repeat("-", n)+"1 == 1",
			"identity"+strings.Repeat(".a", n)+` == "x"`,
			"1"+strings.Repeat(" + 1", n)+" == 2",
			"true"+strings.Repeat(" && true", n),
			strings.Repeat("true ? ", n)+"true"+strings.Repeat(" : false", n),
			strings.Repeat("size(", n)+`"x"`+strings.Repeat(")", n)+" == 1",
			"request"+strings.Repeat(`["a"]`, n)+` == "x"`,
		)
		if n <= 126 { // nested list literals near 250 take the default parser ~1 s
			out = append(out, strings.Repeat("[", n)+"true"+strings.Repeat("]", n)+` == []`)
		}
	}
	return out
}

// TestCELParseDepthSameErrors: expressions nested around the gate's bound
// and the parsers' recursion limit get from CELChecker.Check exactly
// CompileWhen's verdict and error text.
func TestCELParseDepthSameErrors(t *testing.T) {
	env := testCELEnv(t)
	chk := testCELChecker(t)
	var refused int
	for _, expr := range celDepthExprs() {
		_, want := CompileWhen(env, expr)
		if got := chk.Check(expr); celErr(got) != celErr(want) {
			t.Errorf("%.60q...: Check says %q, CompileWhen says %q", expr, celErr(got), celErr(want))
		}
		if want != nil && strings.Contains(want.Error(), "recursion") {
			refused++
		}
	}
	if refused == 0 {
		t.Fatal("no expression reached the recursion limit; the depths are too small")
	}
}

// TestCELCheckerParsesWithoutANTLR: the compile bench's shapes that need
// cel-go (celgoWhen) are decided without cel-go's default parser, with
// CompileWhen's verdict (valid), and broken ones still get its text.
func TestCELCheckerParsesWithoutANTLR(t *testing.T) {
	env := testCELEnv(t)
	chk := testCELChecker(t)
	for i := range 100 {
		for _, expr := range celBenchWhens(i) {
			if err := chk.Check(expr); err != nil {
				t.Fatalf("%q: %v", expr, err)
			}
		}
	}
	if chk.slow != 0 {
		t.Errorf("%d bench expressions went to cel-go's default parser, want 0", chk.slow)
	}
	for _, expr := range []string{`identity.kind + 1 == "a"`, `identity.kind ? 1 : 2`, `[1].exists(x, x)`, `1 +`, `size(1) == 1`, `identity.kind.matches("(")`} {
		_, want := CompileWhen(env, expr)
		if want == nil {
			t.Fatalf("%q: CompileWhen accepts it; the table wants refusals", expr)
		}
		if got := chk.Check(expr); celErr(got) != celErr(want) {
			t.Errorf("%q: Check says %q, CompileWhen says %q", expr, celErr(got), celErr(want))
		}
	}
}

// celFuzzSetup seeds a differential fuzzer of the fast path (expression,
// generator seed, mode) with the pinned seeds and the compile bench's
// shapes, and returns the environment and fast path it compares.
func celFuzzSetup(f *testing.F) (*cel.Env, *celParsed) {
	for _, s := range celSeeds {
		f.Add(s, uint64(0), uint8(0))
	}
	for i := range 4 {
		for _, s := range celBenchWhens(i) {
			f.Add(s, uint64(i), uint8(i*7))
		}
	}
	env := testCELEnv(f)
	c, err := newCELParsed(env)
	if err != nil {
		f.Fatal(err)
	}
	return env, c
}

// celFuzzExpr is the expression a differential fuzzer's input stands for:
// the bytes, or for an odd mode one celParseExpr generates from seed
// (mode picks the depth and how often a piece is broken); ok is false for
// one too long to be worth comparing.
func celFuzzExpr(expr string, seed uint64, mode uint8) (string, bool) {
	if mode%2 == 1 {
		expr = celParseExpr(rand.New(rand.NewPCG(seed, uint64(mode))), 1+int(mode/2%7), int(mode/16))
	}
	return expr, len(expr) <= 3000
}

// FuzzCELParseSameTree: TestCELParseSameTree's comparison and
// CELChecker.Check against CompileWhen on arbitrary input and on
// celParseExpr's generated expressions (the fuzzer picks the seed, the
// depth and how often a piece is broken).
//
//	go test -run '^$' -fuzz '^FuzzCELParseSameTree$' -fuzztime 60s ./spec
func FuzzCELParseSameTree(f *testing.F) {
	env, c := celFuzzSetup(f)
	f.Fuzz(func(t *testing.T, expr string, seed uint64, mode uint8) {
		expr, ok := celFuzzExpr(expr, seed, mode)
		if !ok {
			return
		}
		if d, _ := celParseDiff(env, c.parse, expr); d != "" {
			t.Fatal(d)
		}
		chk := testCELChecker(t)
		_, want := CompileWhen(env, expr)
		if got := chk.Check(expr); celErr(got) != celErr(want) && !celErrOfCompileWhen(env, expr, celErr(got)) {
			t.Fatalf("%q: Check says %q, CompileWhen says %q", expr, celErr(got), celErr(want))
		}
	})
}

// celErrOfCompileWhen reports whether text is one of the texts
// CompileWhen itself gives expr in 50 calls. cel-go numbers the fresh
// type variables of some errors differently from one call to the next
// on the same environment (`expected type 'bool' but found 'map(_var5,
// null)'`, then `_var6`: f([A9, 10.0.size(), "it's",]["a" ||"x
// y".map(p, {request.headers["x"]: null})[(request.headers["x"])]].a),
// found by this fuzzer on main too), so one call's text is not the only
// right one; a text CompileWhen never gives still fails.
func celErrOfCompileWhen(env *cel.Env, expr, text string) bool {
	for range 50 {
		if _, err := CompileWhen(env, expr); celErr(err) == text {
			return true
		}
	}
	return false
}
