package accesslog_test

import (
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/gatehouse-edge/gatehouse/accesslog"
	"github.com/gatehouse-edge/gatehouse/accesslog/accesslogtest"
)

// TestWireDecoderAllocatesPerBlock: decoding the ingest benchmark's
// entries (every value unique, masks on every entry) allocates only the
// shared string blocks, not per entry: with and without an HMAC key
// (the mask's sum used to escape through hash.Hash, the upstream host
// and response flags were strings of their own).
func TestWireDecoderAllocatesPerBlock(t *testing.T) {
	const n = 256
	t0 := time.Date(2026, 12, 6, 12, 0, 0, 0, time.UTC)
	wire := make([][]byte, n)
	for i := range wire {
		b, err := proto.Marshal(accesslogtest.UniqueEntry(i, n, t0))
		if err != nil {
			t.Fatal(err)
		}
		wire[i] = b
	}
	plain := accesslogtest.IngestRedactor(t)
	keyed := accesslog.NewRedactor(nil, []byte("alloc-test-hmac-key-0123456789"))
	for _, c := range []struct {
		name string
		p    *accesslog.Redactor
	}{{"16 specs, no key", plain}, {"no settings, HMAC key", keyed}} {
		if raceEnabled && c.p == keyed {
			// The masks' HMAC states come from a sync.Pool, which the race
			// detector empties at random; `make test` runs this test again
			// without -race. The case without a key uses no pool and runs
			// under the race detector too.
			t.Logf("%s: not counted under the race detector", c.name)
			continue
		}
		var d accesslog.WireDecoder
		masked := 0
		allocs := testing.AllocsPerRun(5, func() {
			masked = 0
			for _, b := range wire {
				r, err := d.FromHTTP(c.p, "n", "g", b)
				if err != nil {
					t.Fatal(err)
				}
				if r.Headers != "" && r.Query != "" {
					masked++
				}
			}
		})
		if masked != n {
			t.Fatalf("%s: %d of %d entries had headers and a query", c.name, masked, n)
		}
		// n entries of ≈ 440 bytes of strings fill about four 32 KiB
		// blocks; one allocation per entry would be n.
		if allocs > n/16 {
			t.Errorf("%s: %.0f allocations for %d entries, want only the string blocks' (≤ %d)", c.name, allocs, n, n/16)
		}
	}
}
