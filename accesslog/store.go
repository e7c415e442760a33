package accesslog

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"time"
)

// WriterBits is how many low bits of a batch seq count batches within one
// writer's chain; the bits above are the writer id. Every process writing
// to a shared store (ClickHouse) keeps its own chain, so writers never
// contend for the next seq; an embedded store has writer 0.
const WriterBits = 40

// SeqOf is the batch seq of the n-th batch (from 1) of writer w.
func SeqOf(w uint32, n uint64) uint64 { return uint64(w)<<WriterBits | n }

// WriterOf is the writer of a batch seq.
func WriterOf(seq uint64) uint32 { return uint32(seq >> WriterBits) }

// MaxWriter is the largest writer id.
const MaxWriter = 1<<(64-WriterBits) - 1

// BatchHeader is the hash-chain entry of one stored batch.
type BatchHeader struct {
	Seq      uint64    `json:"seq"`       // SeqOf(writer, 1), SeqOf(writer, 2), ... in store order
	SpoolSeq uint64    `json:"spool_seq"` // the spool frame it came from (idempotent replay)
	Count    uint32    `json:"count"`
	MinTime  time.Time `json:"min_time"`
	MaxTime  time.Time `json:"max_time"`
	PrevHash string    `json:"prev_hash"` // hex; "" for the first batch
	Hash     string    `json:"hash"`      // hex SHA-256 over PrevHash, Seq, Count and the records
	Pruned   bool      `json:"pruned"`    // rows removed by retention; only the header remains
}

// Batch is a header with its records, in index order.
type Batch struct {
	BatchHeader
	Records []Record
}

// ChainHash computes a batch hash: SHA-256 of the previous hash (raw
// bytes), the seq and count (big endian) and every record in canonical
// binary form.
func ChainHash(prevHex string, seq uint64, recs []Record) (string, error) {
	prev, err := hex.DecodeString(prevHex)
	if err != nil {
		return "", fmt.Errorf("chain: previous hash %q is not hex: %w", prevHex, err)
	}
	h := sha256.New()
	h.Write(prev)
	var n [16]byte
	binary.BigEndian.PutUint64(n[:8], seq)
	binary.BigEndian.PutUint64(n[8:], uint64(len(recs)))
	h.Write(n[:])
	buf := make([]byte, 0, 512)
	for i := range recs {
		buf = recs[i].AppendBinary(buf[:0])
		h.Write(buf)
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

// Store is what the Ingester, the query API and verification need from a
// log store. DuckDB (accesslog/duckstore) and ClickHouse
// (accesslog/chstore) implement it.
type Store interface {
	// WriteBatch stores the records and header of one batch as one unit:
	// after an error nothing of it is visible, or a retry with the same
	// batch replaces what was left. It keeps no reference to b.Records
	// after it returns (the Ingester reuses the slice).
	WriteBatch(ctx context.Context, b *Batch) error
	// Head returns the last stored header of a writer's chain, or a zero
	// header when it has none.
	Head(ctx context.Context, writer uint32) (BatchHeader, error)
	// Headers returns every header with Seq >= from, in Seq order.
	Headers(ctx context.Context, from uint64) ([]BatchHeader, error)
	// BatchRecords returns the records of one batch in index order.
	BatchRecords(ctx context.Context, seq uint64) ([]Record, error)
	// Query returns records matching f, newest first.
	Query(ctx context.Context, f Filter) ([]Record, error)
	// Stats groups records matching f.
	Stats(ctx context.Context, q StatsQuery) ([]Group, error)
	// Histogram counts records and denials per time bucket.
	Histogram(ctx context.Context, f Filter, bucket time.Duration) ([]Bucket, error)
	// Export calls fn for every record matching f, newest first,
	// streaming; f.Limit 0 means no limit.
	Export(ctx context.Context, f Filter, fn func(*Record) error) error
	// DropBefore removes all rows of the days before cutoff (UTC midnight)
	// and marks the batches that lost rows as pruned.
	DropBefore(ctx context.Context, cutoff time.Time) (int64, error)
	// Close releases the store.
	Close() error
}

// VerifyResult is the outcome of Verify.
type VerifyResult struct {
	Batches     int    `json:"batches"`      // headers checked
	Records     int64  `json:"records"`      // records re-hashed
	Pruned      int    `json:"pruned"`       // batches removed by retention (header chain still checked)
	OK          bool   `json:"ok"`           //
	BrokenBatch uint64 `json:"broken_batch"` // first batch that does not verify
	Reason      string `json:"reason,omitempty"`
}

// Verify walks every writer's chain: each header must link to the
// previous one of its writer, and each unpruned batch's records must hash
// to its header.
func Verify(ctx context.Context, s Store) (VerifyResult, error) {
	hs, err := s.Headers(ctx, 0)
	if err != nil {
		return VerifyResult{}, fmt.Errorf("verify: reading batch headers: %w", err)
	}
	res := VerifyResult{OK: true}
	fail := func(seq uint64, format string, args ...any) (VerifyResult, error) {
		res.OK = false
		res.BrokenBatch = seq
		res.Reason = fmt.Sprintf(format, args...)
		return res, nil
	}
	prevHash := ""
	var prevSeq uint64
	for i, h := range hs {
		if err := ctx.Err(); err != nil {
			return res, err
		}
		res.Batches++
		first := i == 0 || WriterOf(h.Seq) != WriterOf(prevSeq)
		if !first && h.Seq != prevSeq+1 {
			return fail(prevSeq+1, "batch %d is missing (next header is %d)", prevSeq+1, h.Seq)
		}
		if first && h.Seq != SeqOf(WriterOf(h.Seq), 1) && !h.Pruned {
			return fail(h.Seq, "chain of writer %d starts at batch %d, batches before it are missing", WriterOf(h.Seq), h.Seq)
		}
		if first && h.Seq == SeqOf(WriterOf(h.Seq), 1) && h.PrevHash != "" {
			return fail(h.Seq, "batch %d is the first of its chain but links to %.12s…", h.Seq, h.PrevHash)
		}
		if !first && h.PrevHash != prevHash {
			return fail(h.Seq, "batch %d links to %.12s…, but batch %d hashes to %.12s…", h.Seq, h.PrevHash, prevSeq, prevHash)
		}
		prevSeq, prevHash = h.Seq, h.Hash
		if h.Pruned {
			res.Pruned++
			continue
		}
		recs, err := s.BatchRecords(ctx, h.Seq)
		if err != nil {
			return res, fmt.Errorf("verify: reading batch %d: %w", h.Seq, err)
		}
		if len(recs) != int(h.Count) {
			return fail(h.Seq, "batch %d has %d records, its header says %d", h.Seq, len(recs), h.Count)
		}
		for j := range recs {
			if recs[j].Index != uint32(j) {
				return fail(h.Seq, "batch %d: record index %d missing or duplicated", h.Seq, j)
			}
		}
		got, err := ChainHash(h.PrevHash, h.Seq, recs)
		if err != nil {
			return fail(h.Seq, "batch %d: %v", h.Seq, err)
		}
		if got != h.Hash {
			return fail(h.Seq, "batch %d: records hash to %.12s…, header says %.12s… (rows altered)", h.Seq, got, h.Hash)
		}
		res.Records += int64(len(recs))
	}
	return res, nil
}
