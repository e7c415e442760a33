package compile

import (
	"fmt"
	"testing"
	"time"

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

func reportCPU(b *testing.B, start time.Duration) {
	b.ReportMetric(float64(testenv.CPUTime()-start)/float64(time.Millisecond)/float64(b.N), "cpu-ms/op")
}

func TestBenchSpecsCompile(t *testing.T) {
	res := newCompiler(t).Compile(benchspec.Revision(40, benchGroups, -1, 0))
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
	y := newCompiler(t).Compile(benchspec.Revision(40, benchGroups, -1, 0))
	j := newCompiler(t).Compile(benchspec.RevisionJSON(40, benchGroups, -1, 0))
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
//     validate alone, which is what the target is about.
func BenchmarkCompileFull(b *testing.B) {
	b.Run("json", func(b *testing.B) {
		benchCompileRevision(b, benchspec.RevisionJSON(benchSpecs, benchGroups, -1, 0))
	})
	b.Run("yaml", func(b *testing.B) {
		benchCompileRevision(b, benchspec.Revision(benchSpecs, benchGroups, -1, 0))
	})
	b.Run("parsed", func(b *testing.B) {
		rev := benchspec.Revision(benchSpecs, benchGroups, -1, 0)
		docs := make([]*spec.Document, len(rev.Specs))
		for i, src := range rev.Specs {
			ds, err := spec.Parse(src.Origin, src.Data)
			if err != nil {
				b.Fatal(err)
			}
			docs[i] = ds[0]
		}
		b.ReportAllocs()
		b.ResetTimer()
		defer reportCPU(b, testenv.CPUTime())
		for i := 0; i < b.N; i++ {
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
			res := c.assemble(rev.ID, specs)
			if len(res.Published()) != benchSpecs {
				b.Fatalf("published %d of %d: %v", len(res.Published()), benchSpecs, res.Failed()[0].Err)
			}
			buildAll(b, res)
		}
	})
}

func benchCompileRevision(b *testing.B, rev source.Revision) {
	b.ReportAllocs()
	b.ResetTimer()
	defer reportCPU(b, testenv.CPUTime())
	for i := 0; i < b.N; i++ {
		c, err := New(Options{})
		if err != nil {
			b.Fatal(err)
		}
		res := c.Compile(rev)
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
		{"json", benchspec.RevisionJSON(benchSpecs, benchGroups, -1, 0)},
		{"yaml", benchspec.Revision(benchSpecs, benchGroups, -1, 0)},
	} {
		b.Run(form.name, func(b *testing.B) {
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
	c, err := New(Options{})
	if err != nil {
		b.Fatal(err)
	}
	revs := [2]source.Revision{benchspec.Revision(benchSpecs, benchGroups, 500, 0), benchspec.Revision(benchSpecs, benchGroups, 500, 1)}
	buildAll(b, c.Compile(revs[1]))
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
