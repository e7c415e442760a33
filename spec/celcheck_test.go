package spec

import (
	"fmt"
	"math/rand/v2"
	"testing"

	"cel.dev/cel-go/cel"
	"cel.dev/cel-go/checker"
	celast "cel.dev/cel-go/common/ast"
	"cel.dev/cel-go/common/decls"
	"cel.dev/cel-go/common/types"
	"github.com/google/go-cmp/cmp"
	exprpb "google.golang.org/genproto/googleapis/api/expr/v1alpha1"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/testing/protocmp"
)

// parse is the fast path's tree of expr (parseNative) as an unchecked
// *cel.Ast, made the documented way (a ParsedExpr proto): what the fast
// path handed to cel.Env.Check before it checked the native tree itself.
// The differential tests compare both paths through it.
func (c *celParsed) parse(expr string) (*cel.Ast, bool) {
	parsed, src, ok := c.parseNative(expr)
	if !ok {
		return nil, false
	}
	pb, err := celast.ToProto(parsed)
	if err != nil {
		return nil, false
	}
	return cel.ParsedExprToAstWithSource(&exprpb.ParsedExpr{Expr: pb.GetExpr(), SourceInfo: pb.GetSourceInfo()}, src), true
}

// celOldCheck is the fast path's check before it checked the native
// tree: the proto round trip (parse) and cel.Env.Check.
func celOldCheck(env *cel.Env, c *celParsed, expr string) (*cel.Ast, bool) {
	a, ok := c.parse(expr)
	if !ok {
		return nil, false
	}
	checked, iss := env.Check(a)
	if iss.Err() != nil {
		return nil, false
	}
	return checked, true
}

// celCheckDiff compares the fast path's check of expr (c.check: the
// Pratt tree through checker.Check with c's checker environment) with
// the old path's (celOldCheck: the same tree through the proto round
// trip and env.Check): "" when both fail, or both succeed with the same
// checked expression (every node's type and reference, the tree, the
// source info: the whole CheckedExpr); and the same for valid, which
// also declines what the old path would have planned (a conversion of a
// constant). checked says whether the check succeeded.
func celCheckDiff(env *cel.Env, c *celParsed, expr string) (diff string, checked bool) {
	got, ok := c.check(expr)
	want, wantOK := celOldCheck(env, c, expr)
	if ok != wantOK {
		return fmt.Sprintf("%q: the native check says ok=%v, env.Check of the round trip says ok=%v", expr, ok, wantOK), ok
	}
	if ok {
		gp, err1 := celast.ToProto(got)
		wp, err2 := cel.AstToCheckedExpr(want)
		if err1 != nil || err2 != nil {
			return fmt.Sprintf("%q: no CheckedExpr: %v, %v", expr, err1, err2), ok
		}
		if !proto.Equal(gp, wp) {
			return fmt.Sprintf("%q: checked expressions differ (-env.Check +native):\n%s", expr, cmp.Diff(wp, gp, protocmp.Transform())), ok
		}
	}
	wantValid := false
	if wantOK {
		plan, _ := whenConstants(want.NativeRep())
		wantValid = checkedWhen(env, want) == nil && !plan
	}
	if v := c.valid(expr); v != wantValid {
		return fmt.Sprintf("%q: valid says %v, the old path (without what it would plan) %v", expr, v, wantValid), ok
	}
	return "", ok
}

// celCheckCorpus is celParseCorpus plus 3,000 more generated expressions
// without broken pieces (more of them type-check) and the shapes valid
// declines (conversions of constants, refused literal patterns).
func celCheckCorpus(t *testing.T) []string {
	all := celParseCorpus(t)
	r := rand.New(rand.NewPCG(9, 2026))
	for i := range 3000 {
		all = append(all, celParseExpr(r, 1+i%5, 0))
	}
	return append(all,
		`int("5") == 5`, `int("x") == 5`, `string(1) == "1" && identity.kind == "a"`, `timestamp("bad") < timestamp("2026-01-01T00:00:00Z")`,
		`identity.kind.matches("(")`, `identity.kind.matches("^a+$")`, `matches(identity.kind, "[")`, `identity.kind.matches("(" + "a")`, `identity.kind.matches("^a" + "+$")`,
		`1 < 1.5`, `1u == 1`, `identity.kind < 1`, `request.size == 1u`,
	)
}

// TestCELCheckSameAsEnvCheck: on every expression of celCheckCorpus the
// fast path's native check gives what the old path (the proto round trip
// and cel.Env.Check) gave: the same verdict and the same checked
// expression, every node's type and reference included; and enough of
// the corpus type-checks, and enough fails to, that the comparison is
// not vacuous.
func TestCELCheckSameAsEnvCheck(t *testing.T) {
	env := testCELEnv(t)
	c, err := newCELParsed(env)
	if err != nil {
		t.Fatal(err)
	}
	var parsed, checked, total int
	for _, expr := range celCheckCorpus(t) {
		total++
		d, ok := celCheckDiff(env, c, expr)
		if d != "" {
			t.Error(d)
		}
		if _, _, p := c.parseNative(expr); p {
			parsed++
		}
		if ok {
			checked++
		}
	}
	t.Logf("%d expressions: %d parsed on the fast path, %d of them type-check, every checked tree env.Check's", total, parsed, checked)
	if checked < total/5 || parsed-checked < total/10 {
		t.Errorf("%d of %d parsed expressions type-check: the corpus should have plenty of both", checked, parsed)
	}
}

// TestCELCheckDiffCatchesBrokenEnvs: celCheckDiff (and so
// TestCELCheckSameAsEnvCheck) tells a checker environment that differs
// from env's in one option, one function or one variable's type.
func TestCELCheckDiffCatchesBrokenEnvs(t *testing.T) {
	env := testCELEnv(t)
	good, err := newCELParsed(env)
	if err != nil {
		t.Fatal(err)
	}
	build := func(opts []checker.Option, skip string, vars ...*decls.VariableDecl) *checker.Env {
		chk, err := checker.NewEnv(env.Container, env.CELTypeProvider(), opts...)
		if err != nil {
			t.Fatal(err)
		}
		if len(vars) == 0 {
			vars = env.Variables()
		}
		if err := chk.AddIdents(vars...); err != nil {
			t.Fatal(err)
		}
		for name, fn := range env.Functions() {
			if name != skip && !fn.IsDeclarationDisabled() {
				if err := chk.AddFunctions(fn); err != nil {
					t.Fatal(err)
				}
			}
		}
		return chk
	}
	dynMap := cel.MapType(cel.StringType, cel.DynType)
	broken := map[string]*checker.Env{
		"cross-type numeric comparisons": build([]checker.Option{checker.CrossTypeNumericComparisons(true)}, ""),
		"no size function":               build(nil, "size"),
		"request typed map(string, string)": build(nil, "",
			decls.NewVariable("request", cel.MapType(cel.StringType, cel.StringType)), decls.NewVariable("identity", dynMap)),
		"identity typed dyn": build(nil, "", decls.NewVariable("request", dynMap), decls.NewVariable("identity", types.DynType)),
	}
	corpus := celCheckCorpus(t)
	for _, expr := range corpus {
		if d, _ := celCheckDiff(env, good, expr); d != "" {
			t.Fatalf("the real checker environment: %s", d)
		}
	}
	for name, chk := range broken {
		c := &celParsed{pratt: good.pratt, chk: chk}
		found := false
		for _, expr := range corpus {
			if d, _ := celCheckDiff(env, c, expr); d != "" {
				found = true
				break
			}
		}
		if !found {
			t.Errorf("%s: no difference found", name)
		}
	}
}

// FuzzCELCheckSameAsEnvCheck: TestCELCheckSameAsEnvCheck's comparison on
// arbitrary input and on celParseExpr's generated expressions (the
// fuzzer picks the seed, the depth and how often a piece is broken).
//
//	go test -run '^$' -fuzz '^FuzzCELCheckSameAsEnvCheck$' -fuzztime 60s ./spec
func FuzzCELCheckSameAsEnvCheck(f *testing.F) {
	env, c := celFuzzSetup(f)
	f.Fuzz(func(t *testing.T, expr string, seed uint64, mode uint8) {
		expr, ok := celFuzzExpr(expr, seed, mode)
		if !ok {
			return
		}
		if d, _ := celCheckDiff(env, c, expr); d != "" {
			t.Fatal(d)
		}
	})
}

// TestCELFastPathSkipsRoundTrip: the fast path's verdict of a compile
// bench shape that needs cel-go's checker (celgoWhen's four) allocates
// at most 85 % of what the same verdict through the old path (the
// ParsedExpr round trip and cel.Env.Check) allocates: the round trip is
// gone, and stays gone. (Allocation counts, not time: they do not
// depend on the machine's load.)
func TestCELFastPathSkipsRoundTrip(t *testing.T) {
	env := testCELEnv(t)
	c, err := newCELParsed(env)
	if err != nil {
		t.Fatal(err)
	}
	for k := 5; k < 9; k++ {
		i := 0
		next := func() string { i++; return celBenchWhens(i)[k] }
		fast := testing.AllocsPerRun(50, func() {
			if !c.valid(next()) {
				t.Fatalf("%q: the fast path declines it", celBenchWhens(i)[k])
			}
		})
		old := testing.AllocsPerRun(50, func() {
			a, ok := celOldCheck(env, c, next())
			if !ok || checkedWhen(env, a) != nil {
				t.Fatalf("%q: the old path refuses it", celBenchWhens(i)[k])
			}
		})
		t.Logf("%.60q...: %.0f allocations on the fast path, %.0f through the round trip", celBenchWhens(0)[k], fast, old)
		if fast > 0.85*old {
			t.Errorf("%.60q...: the fast path allocates %.0f times, the round trip %.0f: want at most 85 %%", celBenchWhens(0)[k], fast, old)
		}
	}
}
