package compile

import (
	"fmt"
	"os"
	"runtime/debug"
	"strings"
	"testing"
	"time"

	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"

	"github.com/gatehouse-edge/gatehouse/controlplane/internal/benchspec"
	"github.com/gatehouse-edge/gatehouse/controlplane/source"
	"github.com/gatehouse-edge/gatehouse/internal/testenv"
	"github.com/gatehouse-edge/gatehouse/spec"
)

const (
	benchSpecs  = 1000
	benchGroups = 13
)

// buildAll is what publishing a result costs besides the snapshot cache:
// every node group's resources assembled and validated.
func buildAll(b *testing.B, res *Result) {
	for g := 0; g < benchGroups; g++ {
		if _, _, err := res.Resources(fmt.Sprintf("group-%02d", g)); err != nil {
			b.Fatal(err)
		}
	}
}

// controlPlaneGOGC is the GC target the control plane compiles under:
// `gatehouse controlplane --gogc` defaults to 400 (cmd/gatehouse,
// TestGOGCDefaults). The compile benchmarks run at it, as a user of the
// shipped control plane gets; GOGC in the environment wins, as it does
// for the control plane (GOGC=100 measures at Go's default).
const controlPlaneGOGC = 400

// atControlPlaneGOGC sets the GC target to the control plane's for the
// rest of b, unless GOGC is set.
func atControlPlaneGOGC(b *testing.B) {
	if _, set := os.LookupEnv("GOGC"); set {
		return
	}
	old := debug.SetGCPercent(controlPlaneGOGC)
	b.Cleanup(func() { debug.SetGCPercent(old) })
}

func reportCPU(b *testing.B, start time.Duration) {
	b.ReportMetric(float64(testenv.CPUTime()-start)/float64(time.Millisecond)/float64(b.N), "cpu-ms/op")
}

// The bench specs are benchspec's, but each carries a CEL `when` and a
// pathRegex of its own, as specs written by different teams do: with one
// shared expression the compiler's CEL verdicts (per worker and run) and
// spec's regex memo (process-wide) would check it once for all 1,000.
// salt makes one benchmark op's expressions differ from every other op's,
// so nothing checked in one op is remembered in the next.
const (
	sharedWhen  = `when: 'identity.kind == "apiKey" && identity.labels.plan == "gold"'`
	sharedRegex = `pathRegex: "^/items/[0-9]+$"`
)

// benchSpec is benchspec.Spec(i, benchGroups, variant) with its own CEL
// expression and regex (same meaning for the requests the bench names).
// Its `when` is of the common shape spec.CELChecker decides without
// cel-go (fastWhen); benchSpecCELGo's needs cel-go.
func benchSpec(i, variant, salt int) []byte {
	return benchSpecWhen(i, variant, salt, fastWhen, "")
}

// fastWhen is the `when` of bench spec i: inside the fast subset.
func fastWhen(i, salt int) string {
	return `identity.kind == "apiKey" && identity.labels.plan in ["gold", "` + benchTag(i, salt) + `"]`
}

// callsWhen is the `when` of calls bench spec i: the common calls on
// string fields (startsWith, size, has, matches; the first is
// ROUTE_SPEC.md's own example's shape), which spec.CELChecker decides
// without cel-go since its fourth pass (docs/PERFORMANCE.md, "Issue 15,
// point 4, fourth pass"; they were the celgo bench's expressions before). TestBenchCallsWhenVerdicts holds that, and what
// each decides.
func callsWhen(i, salt int) string {
	tag := "g" + benchTag(i, salt)
	switch i % 4 {
	case 0:
		return `identity.kind == "apiKey" && (identity.labels.plan == "gold" || request.path.startsWith("/api/` + tag + `/"))`
	case 1:
		return `identity.kind == "apiKey" && size(identity.labels.plan) == 4 && identity.labels.plan != "` + tag + `"`
	case 2:
		return `has(identity.labels.plan) && identity.labels.plan in ["gold", "` + tag + `"] && identity.kind == "apiKey"`
	default:
		return `identity.kind == "apiKey" && identity.labels.plan.matches("^(gold|` + tag + `)$")`
	}
}

// celgoWhen is the `when` of celgo bench spec i: outside the fast subset
// (the conditional operator, string concatenation, a list macro,
// arithmetic on a size), so spec.CELChecker gives every one to cel-go's
// parser and checker. TestBenchCELGoWhenVerdicts holds that, and what
// each decides.
func celgoWhen(i, salt int) string {
	tag := "c" + benchTag(i, salt)
	switch i % 4 {
	case 0:
		return `identity.kind == "apiKey" && (identity.labels.plan == "` + tag + `" ? false : identity.labels.plan == "gold")`
	case 1:
		return `identity.kind + "/" + identity.labels.plan == "apiKey/gold" || identity.labels.plan + "/" + identity.kind == "` + tag + `"`
	case 2:
		return `identity.kind == "apiKey" && ["gold", "` + tag + `"].exists(p, p == identity.labels.plan)`
	default:
		return `identity.kind == "apiKey" && size(identity.labels.plan) * 2 == 8 && identity.labels.plan != "` + tag + `"`
	}
}

func benchTag(i, salt int) string { return fmt.Sprintf("s%d-%04d", salt, i) }

// benchSpecWhen is benchSpec with when(i, salt) as the rule's `when`,
// and tagPrefix before the regex's tag (the celgo specs' regexes differ
// from the others', so spec.CheckRegexp's process-wide memo does not
// answer one sub-benchmark's from another's).
func benchSpecWhen(i, variant, salt int, when func(i, salt int) string, tagPrefix string) []byte {
	y := string(benchspec.Spec(i, benchGroups, variant))
	if strings.Count(y, sharedWhen) != 1 || strings.Count(y, sharedRegex) != 1 {
		panic("compile bench: benchspec's template no longer has the CEL rule and regex this bench makes distinct")
	}
	y = strings.Replace(y, sharedWhen, `when: '`+when(i, salt)+`'`, 1)
	y = strings.Replace(y, sharedRegex, `pathRegex: "^/items/(?:[0-9]+|`+tagPrefix+benchTag(i, salt)+`-[a-f]+)$"`, 1)
	return []byte(y)
}

// benchRevision is benchspec.Revision with benchSpec's specs.
func benchRevision(n, changed, variant, salt int) source.Revision {
	specs := make([]source.Spec, n)
	for i := range specs {
		v := 0
		if i == changed {
			v = variant
		}
		specs[i] = source.Spec{Origin: benchspec.Name(i) + ".yaml", Data: benchSpec(i, v, salt)}
	}
	return source.Revision{ID: fmt.Sprintf("bench-%d-%d-%d", changed, variant, salt), Specs: specs}
}

// benchRevisionCELGo is benchRevision(n, -1, 0, salt) with celgoWhen's
// expressions: every `when` takes cel-go's path.
func benchRevisionCELGo(n, salt int) source.Revision {
	specs := make([]source.Spec, n)
	for i := range specs {
		specs[i] = source.Spec{Origin: benchspec.Name(i) + ".yaml", Data: benchSpecWhen(i, 0, salt, celgoWhen, "c")}
	}
	return source.Revision{ID: fmt.Sprintf("bench-celgo-%d", salt), Specs: specs}
}

// benchRevisionCalls is benchRevision(n, -1, 0, salt) with callsWhen's
// expressions: every `when` calls a function or macro the fast verdict
// decides. (The specs and revision id of the celgo bench before that
// fourth pass, so the digest taken then still holds them.)
func benchRevisionCalls(n, salt int) source.Revision {
	specs := make([]source.Spec, n)
	for i := range specs {
		specs[i] = source.Spec{Origin: benchspec.Name(i) + ".yaml", Data: benchSpecWhen(i, 0, salt, callsWhen, "g")}
	}
	return source.Revision{ID: fmt.Sprintf("bench-celgo-%d", salt), Specs: specs}
}

// benchRevisionJSON is benchRevision in canonical JSON, the form the
// broker store and the S3 source hold.
func benchRevisionJSON(n, salt int) source.Revision {
	rev := benchRevision(n, -1, 0, salt)
	for i, src := range rev.Specs {
		docs, err := spec.Parse(src.Origin, src.Data)
		if err != nil {
			panic(fmt.Sprintf("compile bench: %s does not parse: %v", src.Origin, err))
		}
		j, err := docs[0].EdgeRoute.CanonicalJSON()
		if err != nil {
			panic(fmt.Sprintf("compile bench: %v", err))
		}
		rev.Specs[i] = source.Spec{Origin: benchspec.Name(i) + ".json", Data: j}
	}
	return rev
}

// TestBenchSpecsDistinct: every bench spec has a CEL expression and a
// regex no other spec (of its op or another op) has.
// The same holds for the celgo and calls bench specs, among themselves
// and against the others.
func TestBenchSpecsDistinct(t *testing.T) {
	seen := map[string]string{}
	for _, kind := range []struct {
		name string
		rev  func(n, salt int) source.Revision
	}{
		{"fast", func(n, salt int) source.Revision { return benchRevision(n, -1, 0, salt) }},
		{"celgo", benchRevisionCELGo},
		{"calls", benchRevisionCalls},
	} {
		t.Run(kind.name, func(t *testing.T) { testBenchSpecsDistinct(t, kind.rev, seen) })
	}
}

func testBenchSpecsDistinct(t *testing.T, rev func(n, salt int) source.Revision, seen map[string]string) {
	for salt := range 2 {
		for _, src := range rev(50, salt).Specs {
			docs, err := spec.Parse(src.Origin, src.Data)
			if err != nil {
				t.Fatal(err)
			}
			var exprs []string
			for _, r := range docs[0].EdgeRoute.Spec.Routes {
				if r.Match.PathRegex != "" {
					exprs = append(exprs, "regex "+r.Match.PathRegex)
				}
				if r.Auth != nil {
					for _, rule := range r.Auth.Rules {
						if rule.When != "" {
							exprs = append(exprs, "cel "+rule.When)
						}
					}
				}
			}
			if len(exprs) != 2 {
				t.Fatalf("%s (salt %d): %d CEL expressions and regexes, want 2: %q", src.Origin, salt, len(exprs), exprs)
			}
			for _, e := range exprs {
				if other, dup := seen[e]; dup {
					t.Fatalf("%s (salt %d) shares %q with %s", src.Origin, salt, e, other)
				}
				seen[e] = fmt.Sprintf("%s (salt %d)", src.Origin, salt)
			}
		}
	}
}

func TestBenchSpecsCompile(t *testing.T) {
	res := newCompiler(t).Compile(benchRevision(40, -1, 0, 0))
	for _, s := range res.Specs {
		if s.Err != nil {
			t.Fatalf("%s: %v", s.Origin, s.Err)
		}
	}
	if len(res.Published()) != 40 {
		t.Fatalf("published %d", len(res.Published()))
	}
}

// TestBenchSpecsJSONCompileAlike: the canonical JSON form of the bench
// specs compiles to the same published content as their YAML form.
func TestBenchSpecsJSONCompileAlike(t *testing.T) {
	y := newCompiler(t).Compile(benchRevision(40, -1, 0, 0))
	j := newCompiler(t).Compile(benchRevisionJSON(40, 0))
	if len(j.Published()) != 40 || y.Version != j.Version {
		t.Fatalf("JSON form: %d published, version %s; YAML form: version %s", len(j.Published()), j.Version, y.Version)
	}
}

// BenchmarkCompileFull: 1,000 specs × 3 routes compiled from scratch by a
// new Compiler (validate, build, ValidateAll recursing into every Any,
// referential checks) plus the assembly and validation of all 13 node
// groups, from three inputs:
//
//   - json: canonical JSON bytes, as the broker store and the S3 source
//     feed them (parsing included);
//   - yaml: YAML bytes, as the file source reads them (parsing included);
//   - parsed: documents parsed before the clock starts — the compile and
//     validate alone, which is what the target is about;
//   - parsed-celgo: the same, but every `when` is outside the common
//     shape spec.CELChecker decides itself (celgoWhen: the conditional
//     operator, string concatenation, exists(), arithmetic), so each of
//     the 1,000 is parsed and checked by cel-go;
//   - parsed-calls: the same with `when` expressions that call the common
//     functions on string fields (callsWhen: startsWith, size, has,
//     matches), which the fast verdict decides.
//
// Every spec has its own CEL expression and regex, and every op gets specs
// whose expressions no earlier op saw (prepared before the clock starts).
func BenchmarkCompileFull(b *testing.B) {
	b.Run("json", func(b *testing.B) {
		benchCompileRevisions(b, func(salt int) source.Revision { return benchRevisionJSON(benchSpecs, salt) })
	})
	b.Run("yaml", func(b *testing.B) {
		benchCompileRevisions(b, func(salt int) source.Revision { return benchRevision(benchSpecs, -1, 0, salt) })
	})
	b.Run("parsed", func(b *testing.B) {
		benchCompileParsed(b, func(salt int) source.Revision { return benchRevision(benchSpecs, -1, 0, salt) })
	})
	b.Run("parsed-celgo", func(b *testing.B) {
		benchCompileParsed(b, func(salt int) source.Revision { return benchRevisionCELGo(benchSpecs, salt) })
	})
	b.Run("parsed-calls", func(b *testing.B) {
		benchCompileParsed(b, func(salt int) source.Revision { return benchRevisionCalls(benchSpecs, salt) })
	})
}

// benchCompileParsed compiles rev(i)'s documents, parsed before the clock
// starts, in op i.
func benchCompileParsed(b *testing.B, rev func(salt int) source.Revision) {
	revs := make([]source.Revision, b.N)
	docss := make([][]*spec.Document, b.N)
	for i := range revs {
		revs[i] = rev(i)
		docss[i] = make([]*spec.Document, len(revs[i].Specs))
		for j, src := range revs[i].Specs {
			ds, err := spec.Parse(src.Origin, src.Data)
			if err != nil {
				b.Fatal(err)
			}
			docss[i][j] = ds[0]
		}
	}
	atControlPlaneGOGC(b)
	b.ReportAllocs()
	b.ResetTimer()
	defer reportCPU(b, testenv.CPUTime())
	for i := 0; i < b.N; i++ {
		docs := docss[i]
		c, err := New(Options{})
		if err != nil {
			b.Fatal(err)
		}
		specs := make([]*Spec, len(docs))
		parallel(len(docs), func(j int, w *worker) {
			s := &Spec{Name: docs[j].Name(), Origin: docs[j].File, doc: docs[j]}
			c.compileSpec(s, w)
			specs[j] = s
		})
		res := c.assemble(revs[i].ID, specs)
		if len(res.Published()) != benchSpecs {
			b.Fatalf("published %d of %d: %v", len(res.Published()), benchSpecs, res.Failed()[0].Err)
		}
		buildAll(b, res)
	}
}

// benchCompileRevisions compiles rev(i) in op i, each prepared before the
// clock starts.
func benchCompileRevisions(b *testing.B, rev func(salt int) source.Revision) {
	revs := make([]source.Revision, b.N)
	for i := range revs {
		revs[i] = rev(i)
	}
	atControlPlaneGOGC(b)
	b.ReportAllocs()
	b.ResetTimer()
	defer reportCPU(b, testenv.CPUTime())
	for i := 0; i < b.N; i++ {
		c, err := New(Options{})
		if err != nil {
			b.Fatal(err)
		}
		res := c.Compile(revs[i])
		if len(res.Published()) != benchSpecs {
			b.Fatalf("published %d of %d: %v", len(res.Published()), benchSpecs, res.Failed()[0].Err)
		}
		buildAll(b, res)
	}
}

// BenchmarkParse is the parsing alone of the 1,000 specs, per input form.
func BenchmarkParse(b *testing.B) {
	for _, form := range []struct {
		name string
		rev  source.Revision
	}{
		{"json", benchRevisionJSON(benchSpecs, 0)},
		{"yaml", benchRevision(benchSpecs, -1, 0, 0)},
	} {
		b.Run(form.name, func(b *testing.B) {
			atControlPlaneGOGC(b)
			b.ReportAllocs()
			b.ResetTimer()
			defer reportCPU(b, testenv.CPUTime())
			for i := 0; i < b.N; i++ {
				for _, src := range form.rev.Specs {
					if _, err := spec.Parse(src.Origin, src.Data); err != nil {
						b.Fatal(err)
					}
				}
			}
		})
	}
}

// BenchmarkCompileOneChanged: one spec of 1,000 changes (a spec served by
// every group, the worst case); the rest is reused.
func BenchmarkCompileOneChanged(b *testing.B) {
	// global: the changed spec is served by every node group (every
	// group's version changes); one-group: by one group (the others keep
	// their version and reuse their assembled routes).
	for _, c := range []struct {
		name    string
		changed int
	}{{"global", 500}, {"one-group", 501}} {
		b.Run(c.name, func(b *testing.B) { benchOneChanged(b, c.changed) })
	}
}

func benchOneChanged(b *testing.B, changed int) {
	c, err := New(Options{})
	if err != nil {
		b.Fatal(err)
	}
	revs := [2]source.Revision{benchRevision(benchSpecs, changed, 0, 0), benchRevision(benchSpecs, changed, 1, 0)}
	buildAll(b, c.Compile(revs[1]))
	atControlPlaneGOGC(b)
	b.ReportAllocs()
	b.ResetTimer()
	defer reportCPU(b, testenv.CPUTime())
	for i := 0; i < b.N; i++ {
		res := c.Compile(revs[i%2])
		if len(res.Published()) != benchSpecs {
			b.Fatal("spec failed")
		}
		buildAll(b, res)
	}
}

// TestUnchangedGroupReusesStampedRoutes: a group whose version a rebuild
// does not change reuses its version-stamped virtual hosts (no copy of
// every route per rebuild); a group whose spec changed gets new ones,
// each route carrying the new version.
func TestUnchangedGroupReusesStampedRoutes(t *testing.T) {
	c := newCompiler(t)
	const changed = 1 // served by one group only (not a multiple of benchspec.GlobalEvery)
	r1 := c.Compile(benchRevision(40, changed, 0, 0))
	r2 := c.Compile(benchRevision(40, changed, 1, 0))
	table := func(r *Result, group string) *routev3.RouteConfiguration {
		res, _, err := r.Resources(group)
		if err != nil {
			t.Fatal(err)
		}
		return res[resourcev3.RouteType][0].(*routev3.RouteConfiguration)
	}
	changedGroup := benchspec.Group(changed, benchGroups)
	for g := 0; g < benchGroups; g++ {
		group := fmt.Sprintf("group-%02d", g)
		a, b := table(r1, group), table(r2, group)
		same := len(a.GetVirtualHosts()) == len(b.GetVirtualHosts())
		for i := range a.GetVirtualHosts() {
			same = same && a.GetVirtualHosts()[i] == b.GetVirtualHosts()[i]
		}
		if group == changedGroup {
			if same {
				t.Fatalf("%s: its spec changed but it kept the old stamped virtual hosts", group)
			}
			for _, vh := range b.GetVirtualHosts() {
				for _, rt := range vh.GetRoutes() {
					if got := rt.GetMetadata().GetFilterMetadata()["gatehouse"].GetFields()["revision"].GetStringValue(); got != r2.GroupVersion(group) {
						t.Fatalf("%s: route %s carries %q, want %q", group, rt.GetName(), got, r2.GroupVersion(group))
					}
				}
			}
		} else if !same {
			t.Fatalf("%s: unchanged (version %s → %s) but its virtual hosts were stamped again", group, r1.GroupVersion(group), r2.GroupVersion(group))
		}
	}
}

// TestBenchWhenVerdicts: every bench spec's CEL `when` gets the same
// verdict from the checker the compiler validates with (spec.CELChecker,
// which decides this common shape without cel-go's parser) as from
// cel-go's own compile (spec.CompileWhen, what the authz engine runs),
// and that program decides as the bench intends: the gold plan and the
// spec's own tag pass, another plan or kind does not.
func TestBenchWhenVerdicts(t *testing.T) {
	env, err := spec.NewCELEnv()
	if err != nil {
		t.Fatal(err)
	}
	chk, err := spec.NewCELChecker()
	if err != nil {
		t.Fatal(err)
	}
	ask := func(kind, plan string) map[string]any {
		return map[string]any{"request": map[string]any{}, "identity": map[string]any{"kind": kind, "labels": map[string]any{"plan": plan}}}
	}
	n := 0
	for salt := range 2 {
		for i, src := range benchRevision(benchSpecs, -1, 0, salt).Specs {
			if i%7 != 0 && salt > 0 {
				continue // every spec of one op, a sample of the next
			}
			docs, err := spec.Parse(src.Origin, src.Data)
			if err != nil {
				t.Fatal(err)
			}
			for _, r := range docs[0].EdgeRoute.Spec.Routes {
				if r.Auth == nil {
					continue
				}
				for _, rule := range r.Auth.Rules {
					if rule.When == "" {
						continue
					}
					n++
					ast, want := spec.CompileWhen(env, rule.When)
					if got := chk.Check(rule.When); want != nil || got != nil {
						t.Fatalf("%s: %q: checker says %v, cel-go says %v", src.Origin, rule.When, got, want)
					}
					prg, err := env.Program(ast)
					if err != nil {
						t.Fatal(err)
					}
					tag := fmt.Sprintf("s%d-%04d", salt, i)
					for _, c := range []struct {
						kind, plan string
						want       bool
					}{{kind: "apiKey", plan: "gold", want: true}, {kind: "apiKey", plan: tag, want: true}, {kind: "apiKey", plan: "silver"}, {kind: "jwt", plan: "gold"}} {
						out, _, err := prg.Eval(ask(c.kind, c.plan))
						if err != nil || out.Value() != c.want {
							t.Fatalf("%s: %q on kind %s plan %s: %v, %v; want %v", src.Origin, rule.When, c.kind, c.plan, out, err, c.want)
						}
					}
				}
			}
		}
	}
	if n < benchSpecs {
		t.Fatalf("checked %d `when` expressions, want at least %d", n, benchSpecs)
	}
}

// TestBenchCELGoWhenVerdicts: every `when` of the celgo bench specs (one
// op's, and a sample of the next op's) is declined by the checker's fast
// verdict (spec.CELFastVerdict), so validating it takes cel-go's parser
// and checker; the checker accepts it as cel-go's own compile does; and
// the program decides as intended: an apiKey caller on the gold plan
// passes, a JWT caller or another plan does not.
func TestBenchCELGoWhenVerdicts(t *testing.T) { testBenchWhenVerdicts(t, benchRevisionCELGo, false) }

// TestBenchCallsWhenVerdicts: the same for the calls bench specs, each of
// which the fast verdict decides (and cel-go accepts).
func TestBenchCallsWhenVerdicts(t *testing.T) { testBenchWhenVerdicts(t, benchRevisionCalls, true) }

func testBenchWhenVerdicts(t *testing.T, rev func(n, salt int) source.Revision, fast bool) {
	env, err := spec.NewCELEnv()
	if err != nil {
		t.Fatal(err)
	}
	chk, err := spec.NewCELChecker()
	if err != nil {
		t.Fatal(err)
	}
	ask := func(kind, plan string) map[string]any {
		return map[string]any{
			"request":  map[string]any{"path": "/api/x", "ip": "192.0.2.1"},
			"identity": map[string]any{"kind": kind, "labels": map[string]any{"plan": plan}},
		}
	}
	n := 0
	for salt := range 2 {
		for i, src := range rev(benchSpecs, salt).Specs {
			if i%7 != 0 && salt > 0 {
				continue
			}
			docs, err := spec.Parse(src.Origin, src.Data)
			if err != nil {
				t.Fatal(err)
			}
			whens := 0
			for _, r := range docs[0].EdgeRoute.Spec.Routes {
				if r.Auth == nil {
					continue
				}
				for _, rule := range r.Auth.Rules {
					if rule.When == "" {
						continue
					}
					whens++
					n++
					if got := spec.CELFastVerdict(rule.When); got != fast {
						t.Fatalf("%s: %q: fast verdict %v, this bench needs %v", src.Origin, rule.When, got, fast)
					}
					ast, want := spec.CompileWhen(env, rule.When)
					if got := chk.Check(rule.When); want != nil || got != nil {
						t.Fatalf("%s: %q: checker says %v, cel-go says %v", src.Origin, rule.When, got, want)
					}
					prg, err := env.Program(ast)
					if err != nil {
						t.Fatal(err)
					}
					for _, c := range []struct {
						kind, plan string
						want       bool
					}{{kind: "apiKey", plan: "gold", want: true}, {kind: "apiKey", plan: "silver"}, {kind: "jwt", plan: "gold"}} {
						out, _, err := prg.Eval(ask(c.kind, c.plan))
						if err != nil || out.Value() != c.want {
							t.Fatalf("%s: %q on kind %s plan %s: %v, %v; want %v", src.Origin, rule.When, c.kind, c.plan, out, err, c.want)
						}
					}
				}
			}
			if whens != 1 {
				t.Fatalf("%s: %d `when` expressions, want 1", src.Origin, whens)
			}
		}
	}
	if n < benchSpecs {
		t.Fatalf("checked %d `when` expressions, want at least %d", n, benchSpecs)
	}
}
