package accesslogtest

import (
	"context"
	"path/filepath"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/gatehouse-edge/gatehouse/accesslog"
)

// ChainKeys is a key ring for tests: k1, then the active k2.
func ChainKeys(t testing.TB) *accesslog.KeyRing {
	t.Helper()
	k, err := accesslog.ParseKeyRing([]byte("# test ring\nk1 0123456789abcdef0123456789abcdef-one\nk2 0123456789abcdef0123456789abcdef-two\n"))
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// CopyChain writes every batch of src into dst (an empty store of the
// same kind) as someone with write access to the store would leave it:
// edit may change a batch's header and records (and returns the records
// to store; none for a batch flagged pruned).
func CopyChain(t testing.TB, src, dst accesslog.Store, edit func(h *accesslog.BatchHeader, recs []accesslog.Record) []accesslog.Record) {
	t.Helper()
	ctx := context.Background()
	hs, err := src.Headers(ctx, 0)
	if err != nil {
		t.Fatal(err)
	}
	for _, h := range hs {
		var recs []accesslog.Record
		if !h.Pruned && h.PruneTo == 0 {
			if recs, err = src.BatchRecords(ctx, h.Seq); err != nil {
				t.Fatal(err)
			}
		}
		if edit != nil {
			recs = edit(&h, recs)
		}
		if err := dst.WriteBatch(ctx, &accesslog.Batch{BatchHeader: h, Records: recs}); err != nil {
			t.Fatal(err)
		}
	}
}

// RechainPlain returns an edit for CopyChain that recomputes every hash as
// the plain SHA-256 chain (what someone without the chain key can do)
// after change has altered the records.
func RechainPlain(change func(h *accesslog.BatchHeader, recs []accesslog.Record)) func(*accesslog.BatchHeader, []accesslog.Record) []accesslog.Record {
	prev := ""
	return func(h *accesslog.BatchHeader, recs []accesslog.Record) []accesslog.Record {
		change(h, recs)
		h.KeyID, h.PrevHash = "", prev
		var err error
		if h.Hash, err = accesslog.BatchHash(nil, h, recs); err != nil {
			panic(err)
		}
		prev = h.Hash
		return recs
	}
}

// ChainTamperEvidence is the tamper-evidence suite every store runs:
// open returns a new, empty store each call. Three batches (days -3, -2
// and -1) are written by a real Ingester with a chain key ring; then
// - deleting the rows of batch 2 and flagging it pruned fails at batch 2,
// - altering a record and recomputing the chain with plain SHA-256 (or
// HMAC under a key that is not the ring's) fails,
// - retention (Ingester.DropBefore) prunes batch 1 with a prune record in
// the chain, and the chain verifies; flagging batch 3 pruned after that
// still fails.
func ChainTamperEvidence(t *testing.T, open func(t *testing.T) accesslog.Store) {
	ctx := context.Background()
	keys := ChainKeys(t)
	opts := accesslog.VerifyOptions{Keys: keys}
	src := open(t)
	today := time.Now().UTC().Truncate(24 * time.Hour)
	const per = 50
	m := accesslog.NewMetrics(prometheus.NewRegistry())
	rctx, cancel := context.WithCancel(ctx)
	in, err := accesslog.NewIngester(rctx, accesslog.IngesterConfig{Store: src, ChainKeys: keys, SpoolDir: filepath.Join(t.TempDir(), "spool"),
		BatchSize: per, StoreBatch: per, FlushInterval: 10 * time.Millisecond, Metrics: m, RetryMax: 100 * time.Millisecond, StopGrace: 300 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- in.Run(rctx) }()
	for d := 3; d >= 1; d-- {
		in.Add(RandomRecords(uint64(d), per, today.Add(-time.Duration(d)*24*time.Hour+time.Hour), time.Hour)...)
		want := float64((4 - d) * per)
		deadline := time.Now().Add(30 * time.Second)
		for testutil.ToFloat64(m.Stored) != want {
			if time.Now().After(deadline) {
				t.Fatalf("batch of day -%d not stored", d)
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	seq := func(n uint64) uint64 { return accesslog.SeqOf(0, n) }
	verify := func(what string, s accesslog.Store, opts accesslog.VerifyOptions) accesslog.VerifyResult {
		t.Helper()
		res, err := accesslog.Verify(ctx, s, opts)
		if err != nil {
			t.Fatalf("%s: %v", what, err)
		}
		return res
	}
	if res := verify("clean", src, opts); !res.OK || res.Records != 3*per || res.Batches != 3 || !res.Keyed || res.Unkeyed != 0 {
		t.Fatalf("clean keyed chain: %+v", res)
	}
	if res := verify("clean without keys", src, accesslog.VerifyOptions{}); res.OK {
		t.Fatalf("a keyed chain verified without its key ring: %+v", res)
	}

	t.Run("rows of batch 2 deleted and flagged pruned", func(t *testing.T) {
		dst := open(t)
		CopyChain(t, src, dst, func(h *accesslog.BatchHeader, recs []accesslog.Record) []accesslog.Record {
			if h.Seq == seq(2) {
				h.Pruned = true
				return nil
			}
			return recs
		})
		if res := verify("flagged", dst, opts); res.OK || res.BrokenBatch != seq(2) {
			t.Fatalf("verify after flagging batch 2 pruned: %+v", res)
		}
		// Keyed batches never count as the legacy prefix.
		if res := verify("flagged, prefix allowed", dst, accesslog.VerifyOptions{Keys: keys, AllowUnkeyedPrefix: true}); res.OK || res.BrokenBatch != seq(2) {
			t.Fatalf("verify after flagging batch 2 pruned, unkeyed prefix allowed: %+v", res)
		}
	})
	t.Run("chain recomputed with plain SHA-256", func(t *testing.T) {
		dst := open(t)
		CopyChain(t, src, dst, RechainPlain(func(h *accesslog.BatchHeader, recs []accesslog.Record) {
			if h.Seq == seq(2) {
				recs[7].Subject = "mallory"
			}
		}))
		if res := verify("rechained", dst, opts); res.OK || res.BrokenBatch != seq(1) {
			t.Fatalf("verify a plain SHA-256 chain against the key ring: %+v", res)
		}
		// Without the ring the forgery passes: why the chain is keyed.
		if res := verify("rechained, no keys", dst, accesslog.VerifyOptions{}); !res.OK || res.Keyed {
			t.Fatalf("unkeyed verify of a consistent plain chain: %+v", res)
		}
		// Nor does the unkeyed-prefix allowance let it through once the
		// chain has keyed batches... but a fully unkeyed chain is what it
		// accepts: the allowance is for stores from before the key.
		if res := verify("rechained, prefix allowed", dst, accesslog.VerifyOptions{Keys: keys, AllowUnkeyedPrefix: true}); !res.OK || res.Unkeyed != 3 {
			t.Fatalf("unkeyed prefix: %+v", res)
		}
		// An unkeyed chain flagged pruned by the old retention (no prune
		// record) verifies only with the legacy allowance.
		old := open(t)
		CopyChain(t, src, old, RechainPlain(func(h *accesslog.BatchHeader, recs []accesslog.Record) {
			if h.Seq == seq(1) {
				h.Pruned = true
			}
		}))
		if res := verify("legacy pruned", old, accesslog.VerifyOptions{}); res.OK || res.BrokenBatch != seq(1) {
			t.Fatalf("pruned flag without a prune record, unkeyed: %+v", res)
		}
		if res := verify("legacy pruned, allowed", old, accesslog.VerifyOptions{Keys: keys, AllowUnkeyedPrefix: true}); !res.OK || res.Pruned != 1 {
			t.Fatalf("legacy pruned prefix: %+v", res)
		}
	})
	t.Run("chain recomputed with another key", func(t *testing.T) {
		forged, err := accesslog.ParseKeyRing([]byte("k2 attacker-guess-0123456789abcdef0123456789"))
		if err != nil {
			t.Fatal(err)
		}
		dst := open(t)
		prev := ""
		CopyChain(t, src, dst, func(h *accesslog.BatchHeader, recs []accesslog.Record) []accesslog.Record {
			if h.Seq == seq(2) {
				recs[3].Path = "/innocent"
			}
			h.KeyID, h.PrevHash = "k2", prev
			h.Hash, _ = accesslog.BatchHash(forged, h, recs)
			prev = h.Hash
			return recs
		})
		if res := verify("forged key", dst, opts); res.OK || res.BrokenBatch != seq(1) {
			t.Fatalf("verify a chain keyed with a guessed key: %+v", res)
		}
	})
	t.Run("retention prunes a prefix with a prune record", func(t *testing.T) {
		n, err := in.DropBefore(ctx, today.Add(-2*24*time.Hour))
		if err != nil || n != per {
			t.Fatalf("retention removed %d rows (%v), want %d", n, err, per)
		}
		res := verify("pruned", src, opts)
		if !res.OK || res.Pruned != 1 || res.PruneRecords != 1 || res.Records != 2*per || res.Batches != 4 {
			t.Fatalf("verify after retention: %+v", res)
		}
		// Nothing more is due: no second record.
		if n, err := in.DropBefore(ctx, today.Add(-2*24*time.Hour)); err != nil || n != 0 {
			t.Fatalf("second retention run: %d %v", n, err)
		}
		if res := verify("pruned twice", src, opts); !res.OK || res.PruneRecords != 1 {
			t.Fatalf("verify after a no-op retention: %+v", res)
		}
		// The prune record covers batch 1 only.
		dst := open(t)
		CopyChain(t, src, dst, func(h *accesslog.BatchHeader, recs []accesslog.Record) []accesslog.Record {
			if h.Seq == seq(3) {
				h.Pruned = true
				return nil
			}
			return recs
		})
		if res := verify("flagged after retention", dst, opts); res.OK || res.BrokenBatch != seq(3) {
			t.Fatalf("verify after flagging batch 3 pruned past the prune record: %+v", res)
		}
		// A retention run that stored its record but not all its work (a
		// crash, a store without transactions) is finished by the next.
		half := open(t)
		CopyChain(t, src, half, func(h *accesslog.BatchHeader, recs []accesslog.Record) []accesslog.Record {
			if h.Seq == seq(1) {
				h.Pruned = false
				recs = RandomRecords(1, per, today.Add(-3*24*time.Hour+time.Hour), time.Hour)
				for i := range recs {
					recs[i].Batch, recs[i].Index = h.Seq, uint32(i)
				}
			}
			return recs
		})
		if res := verify("half pruned", half, opts); res.OK || res.BrokenBatch != seq(1) {
			t.Fatalf("verify of a half-done retention: %+v", res)
		}
		in2, err := accesslog.NewIngester(ctx, accesslog.IngesterConfig{Store: half, ChainKeys: keys, SpoolDir: filepath.Join(t.TempDir(), "spool")})
		if err != nil {
			t.Fatal(err)
		}
		if n, err := in2.DropBefore(ctx, today.Add(-2*24*time.Hour)); err != nil || n != per {
			t.Fatalf("finishing retention removed %d rows (%v), want %d", n, err, per)
		}
		if res := verify("retention finished", half, opts); !res.OK || res.Pruned != 1 || res.PruneRecords != 1 {
			t.Fatalf("verify after retention finished: %+v", res)
		}
	})
}
