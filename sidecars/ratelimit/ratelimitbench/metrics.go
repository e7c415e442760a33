package main

import (
	"bufio"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// The counters compare reads to tell answers the backend decided from
// answers a service gave without it.
const (
	// Gatehouse: descriptors answered by the failure mode because Redis
	// failed or a queued call passed its deadline (one descriptor per
	// request in this bench), and descriptors answered by the failure
	// mode because the memory backend had no room.
	ghFailureMode = "gatehouse_ratelimit_failure_mode_total"
	ghMemoryFull  = "gatehouse_ratelimit_memory_full_total"
	// Gatehouse: failed backend calls by reason (reported, not counted:
	// each shows up as failure-mode answers above).
	ghBackendErrors = "gatehouse_ratelimit_backend_errors_total"
	// Gatehouse: batch-size histogram.
	ghBatchSum   = "gatehouse_ratelimit_backend_batch_keys_sum"
	ghBatchCount = "gatehouse_ratelimit_backend_batch_keys_count"

	// envoyproxy/ratelimit (USE_PROMETHEUS=true, its default mapper):
	// ShouldRateLimit calls that failed with a Redis or service error
	// (err_type redis_error|service_error; such a call is a gRPC error),
	// and hits counted by Redis per domain and key.
	epCallErrors = "ratelimit_service_should_rate_limit_error"
	epTotalHits  = "ratelimit_service_rate_limit_total_hits"
)

// sample is one line of the Prometheus text exposition format.
type sample struct {
	name   string
	labels map[string]string
	value  float64
}

// metrics is one scrape.
type metrics []sample

// sum adds every sample called name whose labels include all of match.
// A name that is absent sums to 0: Prometheus client libraries omit
// counter vectors until a label set is first used.
func (m metrics) sum(name string, match map[string]string) float64 {
	var total float64
	for _, s := range m {
		if s.name != name {
			continue
		}
		ok := true
		for k, v := range match {
			if s.labels[k] != v {
				ok = false
				break
			}
		}
		if ok {
			total += s.value
		}
	}
	return total
}

// parseMetrics reads the Prometheus text exposition format (version
// 0.0.4): comment lines are skipped, every other line is
// name[{labels}] value [timestamp]. A malformed line is an error naming
// its line number.
func parseMetrics(r io.Reader) (metrics, error) {
	var out metrics
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64*1024), 1024*1024)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || line[0] == '#' {
			continue
		}
		s, err := parseSample(line)
		if err != nil {
			return nil, fmt.Errorf("metrics line %d %q: %w", n, line, err)
		}
		out = append(out, s)
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	return out, nil
}

func parseSample(line string) (sample, error) {
	s := sample{}
	i := strings.IndexAny(line, "{ \t")
	if i <= 0 {
		return s, fmt.Errorf("no value")
	}
	s.name = line[:i]
	rest := line[i:]
	if rest[0] == '{' {
		labels, after, err := parseLabels(rest[1:])
		if err != nil {
			return s, err
		}
		s.labels, rest = labels, after
	}
	f := strings.Fields(rest)
	if len(f) < 1 || len(f) > 2 {
		return s, fmt.Errorf("want a value and an optional timestamp after the name")
	}
	v, err := strconv.ParseFloat(f[0], 64)
	if err != nil {
		return s, fmt.Errorf("value: %w", err)
	}
	s.value = v
	return s, nil
}

// parseLabels reads name="value",... up to the closing brace and
// returns the rest of the line.
func parseLabels(s string) (map[string]string, string, error) {
	labels := map[string]string{}
	for {
		s = strings.TrimLeft(s, " ,")
		if s == "" {
			return nil, "", fmt.Errorf("labels: no closing brace")
		}
		if s[0] == '}' {
			return labels, s[1:], nil
		}
		eq := strings.IndexByte(s, '=')
		if eq <= 0 || len(s) < eq+2 || s[eq+1] != '"' {
			return nil, "", fmt.Errorf("labels: want name=\"value\" at %q", s)
		}
		name := strings.TrimSpace(s[:eq])
		s = s[eq+2:]
		var b strings.Builder
		closed := false
		for i := 0; i < len(s); i++ {
			c := s[i]
			if c == '\\' && i+1 < len(s) {
				i++
				switch s[i] {
				case 'n':
					b.WriteByte('\n')
				default:
					b.WriteByte(s[i])
				}
				continue
			}
			if c == '"' {
				s, closed = s[i+1:], true
				break
			}
			b.WriteByte(c)
		}
		if !closed {
			return nil, "", fmt.Errorf("labels: unterminated value of %s", name)
		}
		labels[name] = b.String()
	}
}

// scrape fetches and parses url.
func scrape(url string) (metrics, error) {
	c := http.Client{Timeout: 5 * time.Second}
	resp, err := c.Get(url)
	if err != nil {
		return nil, fmt.Errorf("scraping %s: %w", url, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("scraping %s: HTTP %d", url, resp.StatusCode)
	}
	m, err := parseMetrics(resp.Body)
	if err != nil {
		return nil, fmt.Errorf("scraping %s: %w", url, err)
	}
	return m, nil
}

// backendView is what a service's own metrics say about one measured
// drive: answers it gave without the backend deciding them, its backend
// errors, and (envoyproxy/ratelimit) hits Redis counted.
type backendView struct {
	undecided     int64 // answered OK/OVER by a failure mode, not by the backend
	callErrors    int64 // calls the service failed (already gRPC errors to the caller)
	backendErrors int64 // backend errors the service reports (information)
	counted       int64 // hits the backend counted, when the service reports it; -1 if not
	batchCalls    float64
	batchKeys     float64
}

// gatehouseView is the difference between two scrapes of Gatehouse's
// admin /metrics.
func gatehouseView(before, after metrics) backendView {
	d := func(name string) float64 { return after.sum(name, nil) - before.sum(name, nil) }
	return backendView{
		undecided:     int64(d(ghFailureMode) + d(ghMemoryFull)),
		backendErrors: int64(d(ghBackendErrors)),
		counted:       -1,
		batchCalls:    d(ghBatchCount),
		batchKeys:     d(ghBatchSum),
	}
}

// envoyproxyView is the difference between two scrapes of
// envoyproxy/ratelimit's Prometheus endpoint. It has no failure mode of
// its own (a Redis error fails the call), so undecided is 0 and its
// errors are gRPC errors the load generator counts too.
func envoyproxyView(before, after metrics, domain, key string) backendView {
	// The statsd exporter behind it may or may not add _total to a
	// counter's name; either is read.
	d := func(name string, match map[string]string) int64 {
		return int64(after.sum(name, match) + after.sum(name+"_total", match) - before.sum(name, match) - before.sum(name+"_total", match))
	}
	return backendView{
		callErrors:    d(epCallErrors, nil),
		backendErrors: d(epCallErrors, map[string]string{"err_type": "redis_error"}),
		counted:       d(epTotalHits, map[string]string{"domain": domain, "key1": key}),
	}
}
