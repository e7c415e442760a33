// Package replay reads and runs scripted rate-limit request sequences: one
// request per line with the overall code it must get. The same script is
// replayed against Gatehouse in tests and against envoyproxy/ratelimit by
// the benchmark tool, to show both give the same allow/deny sequence for
// the same config directory. It owns only the script format and the
// replay loop; it must not import the service or any backend.
package replay

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"strconv"
	"strings"

	ratelimitv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/common/ratelimit/v3"
	rlsv3 "github.com/envoyproxy/go-control-plane/envoy/service/ratelimit/v3"
	"google.golang.org/protobuf/types/known/wrapperspb"
)

// Step is one scripted request and its expected overall code.
type Step struct {
	Line    int
	Request *rlsv3.RateLimitRequest
	Want    rlsv3.RateLimitResponse_Code
}

// Parse reads a script. Each non-blank, non-# line is
//
//	<domain> <descriptor> [<descriptor>...] [hits=N] => OK|OVER_LIMIT
//
// where a descriptor is key=value[,key=value...] with an optional
// "@hits=N" suffix for a per-descriptor hits_addend. {run} in values is
// replaced by run, so each replay can use fresh keys.
func Parse(r io.Reader, run string) ([]Step, error) {
	var steps []Step
	sc := bufio.NewScanner(r)
	line := 0
	for sc.Scan() {
		line++
		text := strings.TrimSpace(sc.Text())
		if text == "" || strings.HasPrefix(text, "#") {
			continue
		}
		lhs, rhs, ok := strings.Cut(text, "=>")
		if !ok {
			return nil, fmt.Errorf("script line %d: missing \"=> OK|OVER_LIMIT\"", line)
		}
		st := Step{Line: line}
		switch strings.TrimSpace(rhs) {
		case "OK":
			st.Want = rlsv3.RateLimitResponse_OK
		case "OVER_LIMIT":
			st.Want = rlsv3.RateLimitResponse_OVER_LIMIT
		default:
			return nil, fmt.Errorf("script line %d: want OK or OVER_LIMIT after =>, got %q", line, strings.TrimSpace(rhs))
		}
		fields := strings.Fields(strings.ReplaceAll(lhs, "{run}", run))
		if len(fields) < 2 {
			return nil, fmt.Errorf("script line %d: want a domain and at least one descriptor", line)
		}
		req := &rlsv3.RateLimitRequest{Domain: fields[0]}
		for _, f := range fields[1:] {
			if v, ok := strings.CutPrefix(f, "hits="); ok {
				n, err := strconv.ParseUint(v, 10, 32)
				if err != nil {
					return nil, fmt.Errorf("script line %d: hits=%q is not a whole number", line, v)
				}
				req.HitsAddend = uint32(n)
				continue
			}
			d := &ratelimitv3.RateLimitDescriptor{}
			body, hits, hasHits := strings.Cut(f, "@hits=")
			if hasHits {
				n, err := strconv.ParseUint(hits, 10, 64)
				if err != nil {
					return nil, fmt.Errorf("script line %d: @hits=%q is not a whole number", line, hits)
				}
				d.HitsAddend = wrapperspb.UInt64(n)
			}
			for _, kv := range strings.Split(body, ",") {
				k, v, ok := strings.Cut(kv, "=")
				if !ok || k == "" {
					return nil, fmt.Errorf("script line %d: descriptor entry %q is not key=value", line, kv)
				}
				d.Entries = append(d.Entries, &ratelimitv3.RateLimitDescriptor_Entry{Key: k, Value: v})
			}
			req.Descriptors = append(req.Descriptors, d)
		}
		if len(req.Descriptors) == 0 {
			return nil, fmt.Errorf("script line %d: want at least one descriptor", line)
		}
		st.Request = req
		steps = append(steps, st)
	}
	return steps, sc.Err()
}

// Decider is anything that answers ShouldRateLimit: the in-process service
// or a gRPC client.
type Decider func(ctx context.Context, req *rlsv3.RateLimitRequest) (*rlsv3.RateLimitResponse, error)

// Run replays steps in order and returns every mismatch, one line each.
func Run(ctx context.Context, steps []Step, decide Decider) ([]string, error) {
	var mismatches []string
	for _, st := range steps {
		resp, err := decide(ctx, st.Request)
		if err != nil {
			return mismatches, fmt.Errorf("script line %d: %w", st.Line, err)
		}
		if resp.GetOverallCode() != st.Want {
			mismatches = append(mismatches, fmt.Sprintf("script line %d: got %s, want %s", st.Line, resp.GetOverallCode(), st.Want))
		}
	}
	return mismatches, nil
}
