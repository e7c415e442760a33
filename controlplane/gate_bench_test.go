package controlplane

import (
	"fmt"
	"testing"

	"github.com/gatehouse-edge/gatehouse/accesslog"
)

// BenchmarkGateReport is the control plane's cost of one outcome report
// from one accesslog sidecar: 100 routes (the canary's and the fleet's
// counts) added to the soak window, then every route judged again.
func BenchmarkGateReport(b *testing.B) {
	g := Gate{}
	g.defaults()
	var counts []accesslog.Outcome
	for i := 0; i < 50; i++ {
		route := fmt.Sprintf("spec%d/route%d", i/4, i%4)
		counts = append(counts,
			accesslog.Outcome{OutcomeKey: accesslog.OutcomeKey{NodeGroup: "canary", Version: "v2", Route: route}, OutcomeCounts: accesslog.OutcomeCounts{Requests: 100, Status5xx: 1}},
			accesslog.Outcome{OutcomeKey: accesslog.OutcomeKey{NodeGroup: "us-east-1", Version: "v1", Route: route}, OutcomeCounts: accesslog.OutcomeCounts{Requests: 1000, Status5xx: 10}})
	}
	w := gateWindow{candidate: "v2", counts: map[accesslog.OutcomeKey]*accesslog.OutcomeCounts{}}
	all := func(accesslog.OutcomeKey) bool { return true }
	vs := gateVersions{canary: "canary", candidate: func(string) string { return "v2" }, good: func(string, string) string { return "v1" }}
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		w.add(counts, all)
		cmp := compareWindow(w.counts, nil, g, vs, []string{"spec0", "spec99"})
		if len(cmp) != 51 {
			b.Fatalf("%d routes judged", len(cmp))
		}
	}
}
