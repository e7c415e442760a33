package main

import (
	"fmt"
	"io"
	"slices"
	"strings"
	"time"
)

// maxUndecidedPerMille is the guard: a run in which more than 0.1 % of a
// service's calls were not decided by the backend (failure-mode answers
// plus errors) measures something else than rate limiting and fails.
const maxUndecidedPerMille = 1

// measurement is one measured drive of one service.
type measurement struct {
	res          result // the load generator's view
	view         backendView
	svcCPU, rCPU float64 // CPU seconds of the service and of its redis-server
	loadBefore   string  // /proc/loadavg when the drive started
}

// decided is the answers the backend decided: every answer the load
// generator got minus those the service's failure mode gave.
func (m measurement) decided() int64 { return max(0, m.res.requests-m.view.undecided) }

// notDecided is the calls the backend did not decide: failure-mode
// answers and errors.
func (m measurement) notDecided() int64 { return m.res.requests - m.decided() + m.res.errors }

// calls is every call the generator completed, answered or failed.
func (m measurement) calls() int64 { return m.res.requests + m.res.errors }

func (m measurement) cpu() float64 { return m.svcCPU + m.rCPU }

// perCPUSecond is backend-decided answers per CPU-second of the service
// and its Redis.
func (m measurement) perCPUSecond() float64 {
	if m.cpu() <= 0 {
		return 0
	}
	return float64(m.decided()) / m.cpu()
}

// decidedRate is backend-decided answers per wall-clock second.
func (m measurement) decidedRate() float64 {
	if m.res.elapsed <= 0 {
		return 0
	}
	return float64(m.decided()) / m.res.elapsed.Seconds()
}

// guard fails a measurement with a clear message when more than 0.1 % of
// its calls were not decided by the backend, or when nothing was
// answered or no CPU was measured (a dead process reads as zero).
func guard(service string, round int, m measurement) error {
	where := fmt.Sprintf("%s, round %d", service, round)
	if m.calls() == 0 {
		return fmt.Errorf("%s: no call completed", where)
	}
	if nd := m.notDecided(); nd*1000 > m.calls()*maxUndecidedPerMille {
		return fmt.Errorf("%s: %d of %d calls (%.3f %%) were not decided by the backend (%d failure-mode answers, %d errors); more than 0.1 %%, so its requests per CPU-second would count work Redis never did: lower the load or the concurrency, or look at the service's log",
			where, nd, m.calls(), 100*float64(nd)/float64(m.calls()), m.view.undecided, m.res.errors)
	}
	if m.svcCPU <= 0 {
		return fmt.Errorf("%s: service CPU %.3f s over %d answers; a live process always uses some", where, m.svcCPU, m.res.requests)
	}
	return nil
}

// median of xs (the mean of the middle two for an even count); 0 for none.
func median(xs []float64) float64 {
	if len(xs) == 0 {
		return 0
	}
	s := slices.Clone(xs)
	slices.Sort(s)
	n := len(s)
	if n%2 == 1 {
		return s[n/2]
	}
	return (s[n/2-1] + s[n/2]) / 2
}

func medianDur(ds []time.Duration) time.Duration {
	xs := make([]float64, len(ds))
	for i, d := range ds {
		xs[i] = float64(d)
	}
	return time.Duration(median(xs))
}

// round is every service's measurement in one round, by service name.
type round map[string]measurement

// roundRatio compares the candidate with the better reference of one
// round (higher requests per CPU-second): the ratio of requests per
// CPU-second, the ratio of p99 (candidate / that reference; ≤ 1 is no
// worse) and the reference's name.
func roundRatio(r round, candidate string, references []string) (ratio, p99 float64, best string, ok bool) {
	c, found := r[candidate]
	if !found {
		return 0, 0, "", false
	}
	var bm measurement
	for _, name := range references {
		m, found := r[name]
		if !found {
			continue
		}
		if best == "" || m.perCPUSecond() > bm.perCPUSecond() {
			best, bm = name, m
		}
	}
	if best == "" || bm.perCPUSecond() <= 0 || bm.res.p99 <= 0 {
		return 0, 0, "", false
	}
	return c.perCPUSecond() / bm.perCPUSecond(), float64(c.res.p99) / float64(bm.res.p99), best, true
}

// verdict is the comparison over all rounds.
type verdict struct {
	ratios, p99s []float64
	against      []string
	ratio, p99   float64 // medians
}

func compareRounds(rounds []round, candidate string, references []string) verdict {
	var v verdict
	for _, r := range rounds {
		ratio, p99, best, ok := roundRatio(r, candidate, references)
		if !ok {
			continue
		}
		v.ratios, v.p99s, v.against = append(v.ratios, ratio), append(v.p99s, p99), append(v.against, best)
	}
	v.ratio, v.p99 = median(v.ratios), median(v.p99s)
	return v
}

// met: at least 2x requests per CPU-second and p99 no worse, both as
// medians over the rounds.
func (v verdict) met() bool { return len(v.ratios) > 0 && v.ratio >= 2 && v.p99 <= 1 }

// tableHeader is docs/PERFORMANCE.md's ## ratelimit table.
const tableHeader = "| service | backend-decided requests/s | p50 | p99 | service CPU s / 1k req | Redis CPU s / 1k req | total CPU µs / req | requests per CPU-second | not decided by the backend |\n" +
	"| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |\n"

// writeTable prints one row per service: every cell is the median of that
// column over the rounds (so cells of one row may come from different
// rounds); the last column is the sum over the rounds ("no backend" for
// the services in noBackend, such as the do-nothing floor).
func writeTable(w io.Writer, rounds []round, services []string, noBackend map[string]bool) {
	io.WriteString(w, tableHeader)
	for _, name := range services {
		var rps, svc, red, tot, per []float64
		var p50, p99 []time.Duration
		var nd, calls int64
		for _, r := range rounds {
			m, ok := r[name]
			if !ok {
				continue
			}
			n := float64(max(m.decided(), 1))
			rps = append(rps, m.decidedRate())
			p50, p99 = append(p50, m.res.p50), append(p99, m.res.p99)
			svc, red = append(svc, m.svcCPU/n*1000), append(red, m.rCPU/n*1000)
			tot, per = append(tot, m.cpu()/n*1e6), append(per, m.perCPUSecond())
			nd, calls = nd+m.notDecided(), calls+m.calls()
		}
		if len(rps) == 0 {
			continue
		}
		undecided := "no backend"
		if !noBackend[name] {
			undecided = fmt.Sprintf("%d of %d (%.3f %%)", nd, calls, 100*float64(nd)/float64(max(calls, 1)))
		}
		fmt.Fprintf(w, "| %s | %.0f | %s | %s | %.4f | %.4f | %.1f | %.0f | %s |\n", name, median(rps),
			medianDur(p50).Round(time.Microsecond), medianDur(p99).Round(time.Microsecond),
			median(svc), median(red), median(tot), median(per), undecided)
	}
}

func formatRatios(xs []float64, against []string) string {
	parts := make([]string, len(xs))
	for i, x := range xs {
		parts[i] = fmt.Sprintf("%.2f (vs %s)", x, against[i])
	}
	return strings.Join(parts, ", ")
}
