package compile

import (
	"fmt"
	"syscall"
	"testing"
	"time"

	"github.com/gatehouse-edge/gatehouse/controlplane/internal/benchspec"
	"github.com/gatehouse-edge/gatehouse/controlplane/source"
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

// cpuTime is this process's user+system CPU time. Benchmarks report it
// per op besides wall time: on a machine shared with other builds, wall
// time measures the neighbours.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

func reportCPU(b *testing.B, start time.Duration) {
	b.ReportMetric(float64(cpuTime()-start)/float64(time.Millisecond)/float64(b.N), "cpu-ms/op")
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

// BenchmarkCompileFull: 1,000 specs × 3 routes from scratch (parse,
// validate, build, ValidateAll, referential checks) plus the assembly and
// validation of all 13 node groups.
func BenchmarkCompileFull(b *testing.B) {
	rev := benchspec.Revision(benchSpecs, benchGroups, -1, 0)
	b.ReportAllocs()
	b.ResetTimer()
	defer reportCPU(b, cpuTime())
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
	defer reportCPU(b, cpuTime())
	for i := 0; i < b.N; i++ {
		res := c.Compile(revs[i%2])
		if len(res.Published()) != benchSpecs {
			b.Fatal("spec failed")
		}
		buildAll(b, res)
	}
}
