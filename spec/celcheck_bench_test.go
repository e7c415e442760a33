package spec

import (
	"fmt"
	"testing"
)

// BenchmarkCELCheckerCELGo is CELChecker.Check of 1,000 distinct `when`
// expressions of the compile bench's cel-go shapes (celgoWhen: the
// conditional, string concatenation, exists(), arithmetic on a size) by a
// new checker per op, as BenchmarkCompileFull/parsed-celgo's CEL share.
func BenchmarkCELCheckerCELGo(b *testing.B) {
	ops := 0
	b.ReportAllocs()
	for b.Loop() {
		chk := testCELChecker(b)
		for i := range 1000 {
			expr := celBenchWhens(i)[5+i%4] + fmt.Sprintf(" && request.path != \"/%d\"", ops)
			if err := chk.Check(expr); err != nil {
				b.Fatal(err)
			}
		}
		if chk.slow != 0 {
			b.Fatalf("%d expressions went to CompileWhen", chk.slow)
		}
		ops++
	}
}
