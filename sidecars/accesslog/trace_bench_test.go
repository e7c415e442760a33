package accesslogsidecar_test

import (
	"fmt"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/gatehouse-edge/gatehouse/internal/testenv"
)

// ingestTrace is BenchmarkIngestGRPC's time series, written when
// GATEHOUSE_BENCH_TRACE names a file: every 100 ms the entries received,
// spooled and stored, the CPU the sidecar and the load generator used in
// that interval (so the idle share of the cores shows), and each store
// batch as it commits (its entries and how long its write took), so where
// the cores idle during a run can be read off. Off (nil) it costs
// nothing.
type ingestTrace struct {
	path      string
	pid       int
	t0, last  time.Time
	cpu0      time.Duration
	lastCPU   time.Duration
	lastGen   time.Duration
	lastCount float64
	lastSum   float64
	lastBatch float64
	lines     []string
}

func newIngestTrace(path string, pid int, t0 time.Time, cpu0 time.Duration) *ingestTrace {
	if path == "" {
		return nil
	}
	tr := &ingestTrace{path: path, pid: pid, t0: t0, last: t0, cpu0: cpu0, lastCPU: cpu0, lastGen: procCPU(pid)}
	tr.lines = append(tr.lines, "# t_s received spooled stored buffered sidecar_cores loadgen_cores idle_cores | batch events: t_s BATCH entries write_s")
	return tr
}

// procCPU is the user+system CPU of process pid (0 when unreadable).
func procCPU(pid int) time.Duration {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	s := string(b)
	if i := strings.LastIndexByte(s, ')'); i >= 0 {
		s = s[i+1:]
	}
	f := strings.Fields(s)
	if len(f) < 13 {
		return 0
	}
	u, _ := strconv.ParseInt(f[11], 10, 64)
	sy, _ := strconv.ParseInt(f[12], 10, 64)
	return time.Duration(u+sy) * 10 * time.Millisecond // USER_HZ 100
}

// histSumCount is the sum and count of an unlabelled histogram.
func histSumCount(reg *prometheus.Registry, name string) (sum, count float64) {
	mfs, _ := reg.Gather()
	for _, mf := range mfs {
		if mf.GetName() == name && len(mf.GetMetric()) == 1 {
			h := mf.GetMetric()[0].GetHistogram()
			return h.GetSampleSum(), float64(h.GetSampleCount())
		}
	}
	return 0, 0
}

func (tr *ingestTrace) sample(reg *prometheus.Registry) {
	if tr == nil {
		return
	}
	now := time.Now()
	sum, count := histSumCount(reg, "gatehouse_accesslog_store_write_seconds")
	bsum, _ := histSumCount(reg, "gatehouse_accesslog_batch_entries")
	if count > tr.lastCount {
		tr.lines = append(tr.lines, fmt.Sprintf("%.2f BATCH %.0f %.3f (%.0f batches)", now.Sub(tr.t0).Seconds(), bsum-tr.lastBatch, sum-tr.lastSum, count-tr.lastCount))
		tr.lastCount, tr.lastSum, tr.lastBatch = count, sum, bsum
	}
	d := now.Sub(tr.last)
	if d < 100*time.Millisecond {
		return
	}
	m := gatherMetrics(reg, "gatehouse_accesslog_received_total", "gatehouse_accesslog_spooled_total", "gatehouse_accesslog_stored_total", "gatehouse_accesslog_buffered_entries", "gatehouse_accesslog_spilled_total")
	cpu, gen := testenv.CPUTime(), procCPU(tr.pid)
	if gen == 0 {
		gen = tr.lastGen // the generator has exited
	}
	sc := float64(cpu-tr.lastCPU) / float64(d)
	gc := float64(gen-tr.lastGen) / float64(d)
	tr.lines = append(tr.lines, fmt.Sprintf("%.2f %.0f %.0f %.0f %.0f %.2f %.2f %.2f spilled=%.0f", now.Sub(tr.t0).Seconds(), m[0], m[1], m[2], m[3], sc, gc, 2-sc-gc, m[4]))
	tr.last, tr.lastCPU, tr.lastGen = now, cpu, gen
}

func (tr *ingestTrace) write(b *testing.B) {
	if tr == nil {
		return
	}
	if err := os.WriteFile(tr.path, []byte(strings.Join(tr.lines, "\n")+"\n"), 0o644); err != nil {
		b.Logf("trace: %v", err)
	}
}
