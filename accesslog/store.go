package accesslog

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"time"
	"unsafe"
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

// BatchHeader is the hash-chain entry of one stored batch, or a prune
// record: the entry retention appends to say which batches it removed.
type BatchHeader struct {
	Seq      uint64    `json:"seq"`       // SeqOf(writer, 1), SeqOf(writer, 2), ... in store order
	SpoolSeq uint64    `json:"spool_seq"` // the spool frame it came from (idempotent replay); a prune record repeats the previous one
	Count    uint32    `json:"count"`
	MinTime  time.Time `json:"min_time"` // a prune record: the retention cutoff
	MaxTime  time.Time `json:"max_time"`
	PrevHash string    `json:"prev_hash"` // hex; "" for the first batch
	Hash     string    `json:"hash"`      // hex BatchHash: HMAC-SHA256 (KeyID set) or SHA-256 over PrevHash, Seq, Count, PruneTo and the records
	Pruned   bool      `json:"pruned"`    // rows removed by retention; only the header remains
	// KeyID names the chain key of Hash in the key ring; "" is the
	// unkeyed SHA-256 chain.
	KeyID string `json:"key_id,omitempty"`
	// PruneTo, when not 0, makes this a prune record: retention removed
	// the rows of this writer's batches up to and including PruneTo. A
	// batch flagged Pruned must be covered by a prune record later in
	// its chain.
	PruneTo uint64 `json:"prune_to,omitempty"`
}

// Batch is a header with its records, in index order: in Records, or,
// for a store that reads them encoded (FrameStore), in Frames.
type Batch struct {
	BatchHeader
	Records []Record
	// Frames holds the records when Records is nil: Count records in
	// Record.AppendBinary form (the spool's and the hash chain's), in
	// index order, concatenated across the slices (a record never spans
	// two). The Ingester hands Frames only to a FrameStore, and reuses
	// the bytes once WriteBatch returns. Read them with Reader.
	Frames [][]byte
}

// FrameStore is a Store whose WriteBatch reads a batch's records with
// Batch.Reader, so the Ingester can hand it the records as the spool
// encoded them (Batch.Frames) instead of decoding them into Records: no
// array of records to fill, and no pointers in it for the collector to
// scan while batches wait for the store.
type FrameStore interface {
	Store
	// ReadsFrames reports whether WriteBatch reads Batch.Frames.
	ReadsFrames() bool
}

// Len is how many records b holds.
func (b *Batch) Len() int {
	if b.Records != nil || b.Frames == nil {
		return len(b.Records)
	}
	return int(b.Count)
}

// Reader reads b's records in index order.
func (b *Batch) Reader() *BatchReader {
	return &BatchReader{recs: b.Records, frames: b.Frames, seq: b.Seq, count: uint32(b.Len()), encoded: b.Records == nil}
}

// BatchReader reads a batch's records in index order (Batch.Reader).
type BatchReader struct {
	recs    []Record
	frames  [][]byte
	rest    []byte // the unread part of the current frame
	back    string // the current frame, as a string sharing its bytes
	seq     uint64
	next    uint32 // index of the next record
	count   uint32
	encoded bool
}

// Next returns the next records, at most len(scratch) of them, and an
// empty slice at the end. From Records it returns a part of them; from
// Frames it decodes into scratch, setting Batch and Index, with strings
// that share the frames' bytes: valid only as long as those are (during
// WriteBatch), so a store that keeps a string past the call copies it.
func (r *BatchReader) Next(scratch []Record) ([]Record, error) {
	if !r.encoded {
		n := min(len(scratch), len(r.recs))
		out := r.recs[:n:n]
		r.recs = r.recs[n:]
		r.next += uint32(n)
		return out, nil
	}
	n := 0
	for n < len(scratch) && r.next < r.count {
		for len(r.rest) == 0 {
			if len(r.frames) == 0 {
				return nil, fmt.Errorf("batch %d: its frames hold %d records, its header says %d", r.seq, r.next, r.count)
			}
			f := r.frames[0]
			r.frames = r.frames[1:]
			r.rest, r.back = f, unsafe.String(unsafe.SliceData(f), len(f))
		}
		rec := &scratch[n]
		var err error
		if r.rest, err = rec.decodeBinary(r.rest, r.back); err != nil {
			return nil, fmt.Errorf("batch %d record %d: %w", r.seq, r.next, err)
		}
		rec.Batch, rec.Index = r.seq, r.next
		r.next++
		n++
	}
	if r.next == r.count && (len(r.rest) > 0 || len(r.frames) > 0) {
		for _, f := range r.frames {
			if len(f) > 0 {
				return nil, fmt.Errorf("batch %d: its frames hold more than the %d records its header says", r.seq, r.count)
			}
		}
		if len(r.rest) > 0 {
			return nil, fmt.Errorf("batch %d: its frames hold more than the %d records its header says", r.seq, r.count)
		}
	}
	return scratch[:n], nil
}

// decodeFrames decodes b.Frames into dst's array (grown if it is too
// small), with strings of their own (one copy of each frame), Batch and
// Index set: for a store that does not read frames.
func (b *Batch) decodeFrames(dst []Record) ([]Record, error) {
	n := int(b.Count)
	if cap(dst) < n {
		dst = make([]Record, n)
	}
	dst = dst[:n]
	k := 0
	for _, f := range b.Frames {
		back := string(f)
		rest := unsafe.Slice(unsafe.StringData(back), len(back)) // read only
		for len(rest) > 0 {
			if k == n {
				return dst[:0], fmt.Errorf("batch %d: its frames hold more than the %d records its header says", b.Seq, n)
			}
			var err error
			if rest, err = dst[k].decodeBinary(rest, back); err != nil {
				return dst[:0], fmt.Errorf("batch %d record %d: %w", b.Seq, k, err)
			}
			dst[k].Batch, dst[k].Index = b.Seq, uint32(k)
			k++
		}
	}
	if k != n {
		return dst[:0], fmt.Errorf("batch %d: its frames hold %d records, its header says %d", b.Seq, k, n)
	}
	return dst, nil
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
	// batch replaces what was left. It keeps no reference to b.Records or
	// b.Frames after it returns, nor to a string read from b.Frames (the
	// Ingester reuses them).
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
	// Prune applies a prune record: it removes the rows of the batches of
	// rec's writer up to rec.PruneTo that are not pruned yet, flags them
	// Pruned, and stores rec (the next entry of the chain) unless it is
	// stored already, as one unit where the store allows (a retry
	// finishes what a failed call left). It returns the rows removed.
	Prune(ctx context.Context, rec *BatchHeader) (int64, error)
	// Close releases the store.
	Close() error
}

// OrderedStore is a Store that can write several batches at once, each
// on a connection of its own, and commits them in the order its caller
// says (the Ingester's store writers, IngesterConfig.StoreWriters): the
// slow part of a write (rows into the table) of one batch overlaps the
// commit of the batch before it, and the chain never has a gap.
type OrderedStore interface {
	Store
	// Writers is how many WriteBatchAfter calls can run at once.
	Writers() int
	// WriteBatchAfter is WriteBatch, except that once the batch is written
	// and before it commits it calls prev: the batch commits only if prev
	// returns nil (the batch before it has committed); otherwise it is
	// rolled back and prev's error returned. prev nil: commit at once.
	WriteBatchAfter(ctx context.Context, b *Batch, prev func(context.Context) error) error
}

// VerifyResult is the outcome of Verify.
type VerifyResult struct {
	Batches      int    `json:"batches"`       // headers checked
	Records      int64  `json:"records"`       // records re-hashed
	Pruned       int    `json:"pruned"`        // batches removed by retention (header chain still checked)
	PruneRecords int    `json:"prune_records"` // retention's own entries in the chain
	Keyed        bool   `json:"keyed"`         // checked against a chain key ring
	Unkeyed      int    `json:"unkeyed"`       // entries with a plain SHA-256 hash
	OK           bool   `json:"ok"`            //
	BrokenBatch  uint64 `json:"broken_batch"`  // first batch that does not verify
	Reason       string `json:"reason,omitempty"`
}

// VerifyOptions say which chain Verify expects.
type VerifyOptions struct {
	// Keys is the chain key ring. With it every entry must be keyed with
	// one of its keys: a chain recomputed with plain SHA-256 (or any key
	// not in the ring) fails. Without it, only unkeyed chains verify, and
	// they only show careless edits: anyone who can write the store can
	// recompute them.
	Keys *KeyRing
	// AllowUnkeyedPrefix accepts plain SHA-256 entries at the start of a
	// writer's chain, before its first keyed entry (a store written before
	// the chain was keyed), and among them batches flagged pruned before
	// the first prune record (retention before prune records existed).
	// That prefix proves nothing against someone who can write the store.
	AllowUnkeyedPrefix bool
}

// Verify walks every writer's chain: it must start at the writer's first
// batch, each header must link to the previous one of its writer, each
// entry must carry a key the options accept, each unpruned batch's
// records must hash to its header, and every batch flagged pruned must be
// covered by a prune record later in its chain (retention's own entry,
// keyed like the rest), so flagging a batch pruned to hide deleted rows
// is caught.
func Verify(ctx context.Context, s Store, opts VerifyOptions) (VerifyResult, error) {
	hs, err := s.Headers(ctx, 0)
	if err != nil {
		return VerifyResult{}, fmt.Errorf("verify: reading batch headers: %w", err)
	}
	res := VerifyResult{OK: true, Keyed: opts.Keys != nil}
	for len(hs) > 0 {
		n := 1
		for n < len(hs) && WriterOf(hs[n].Seq) == WriterOf(hs[0].Seq) {
			n++
		}
		if err := verifyChain(ctx, s, opts, hs[:n], &res); err != nil || !res.OK {
			return res, err
		}
		hs = hs[n:]
	}
	return res, nil
}

// keyProblem says why an entry's key is not acceptable, or "".
func keyProblem(opts VerifyOptions, h *BatchHeader, keyedSeen bool) string {
	switch {
	case h.KeyID == "" && opts.Keys != nil && (keyedSeen || !opts.AllowUnkeyedPrefix):
		return fmt.Sprintf("batch %d has a plain SHA-256 hash, not one keyed with the chain key ring: the chain was recomputed without the key, or written before the key was set (then verify with the unkeyed prefix allowed)", h.Seq)
	case h.KeyID != "" && opts.Keys == nil:
		return fmt.Sprintf("batch %d is keyed with chain key %q: verify with the chain key ring", h.Seq, h.KeyID)
	case h.KeyID != "" && !opts.Keys.Has(h.KeyID):
		return fmt.Sprintf("batch %d is keyed with chain key %q, which is not in the key ring", h.Seq, h.KeyID)
	}
	return ""
}

// verifyChain checks the headers of one writer.
func verifyChain(ctx context.Context, s Store, opts VerifyOptions, hs []BatchHeader, res *VerifyResult) error {
	fail := func(seq uint64, format string, args ...any) error {
		res.OK = false
		res.BrokenBatch = seq
		res.Reason = fmt.Sprintf(format, args...)
		return nil
	}
	// The prune records whose own hash verifies say how far retention
	// went; only they excuse batches without rows.
	var covered uint64
	keyed := false
	for i := range hs {
		h := &hs[i]
		if keyProblem(opts, h, keyed) != "" {
			break
		}
		keyed = keyed || h.KeyID != ""
		if h.PruneTo == 0 || h.PruneTo >= h.Seq || WriterOf(h.PruneTo) != WriterOf(h.Seq) {
			continue
		}
		if got, err := BatchHash(opts.Keys, h, nil); err == nil && hmacEqual(got, h.Hash) {
			covered = max(covered, h.PruneTo)
		}
	}
	w := WriterOf(hs[0].Seq)
	if hs[0].Seq != SeqOf(w, 1) {
		return fail(hs[0].Seq, "chain of writer %d starts at batch %d, batches before it are missing", w, hs[0].Seq)
	}
	prevHash := ""
	var prevSeq uint64
	keyed = false
	pruneSeen := false
	for i := range hs {
		if err := ctx.Err(); err != nil {
			return err
		}
		h := &hs[i]
		res.Batches++
		if i > 0 && h.Seq != prevSeq+1 {
			return fail(prevSeq+1, "batch %d is missing (next header is %d)", prevSeq+1, h.Seq)
		}
		if i == 0 && h.PrevHash != "" {
			return fail(h.Seq, "batch %d is the first of its chain but links to %.12s…", h.Seq, h.PrevHash)
		}
		if i > 0 && h.PrevHash != prevHash {
			return fail(h.Seq, "batch %d links to %.12s…, but batch %d hashes to %.12s…", h.Seq, h.PrevHash, prevSeq, prevHash)
		}
		prevSeq, prevHash = h.Seq, h.Hash
		if p := keyProblem(opts, h, keyed); p != "" {
			return fail(h.Seq, "%s", p)
		}
		keyed = keyed || h.KeyID != ""
		if h.KeyID == "" {
			res.Unkeyed++
		}
		if h.PruneTo != 0 {
			if h.Count != 0 || h.Pruned || h.PruneTo >= h.Seq || WriterOf(h.PruneTo) != WriterOf(h.Seq) {
				return fail(h.Seq, "batch %d is a malformed prune record (prunes up to %d, count %d)", h.Seq, h.PruneTo, h.Count)
			}
			got, err := BatchHash(opts.Keys, h, nil)
			if err != nil {
				return fail(h.Seq, "batch %d: %v", h.Seq, err)
			}
			if !hmacEqual(got, h.Hash) {
				return fail(h.Seq, "prune record %d does not hash to its header (forged or altered)", h.Seq)
			}
			res.PruneRecords++
			pruneSeen = true
			continue
		}
		if h.Pruned {
			legacy := opts.AllowUnkeyedPrefix && h.KeyID == "" && !keyed && !pruneSeen
			if h.Seq > covered && !legacy {
				return fail(h.Seq, "batch %d is flagged pruned but no prune record in its chain covers it: its rows were removed outside retention", h.Seq)
			}
			res.Pruned++
			continue
		}
		recs, err := s.BatchRecords(ctx, h.Seq)
		if err != nil {
			return fmt.Errorf("verify: reading batch %d: %w", h.Seq, err)
		}
		if len(recs) != int(h.Count) {
			return fail(h.Seq, "batch %d has %d records, its header says %d", h.Seq, len(recs), h.Count)
		}
		for j := range recs {
			if recs[j].Index != uint32(j) {
				return fail(h.Seq, "batch %d: record index %d missing or duplicated", h.Seq, j)
			}
		}
		got, err := BatchHash(opts.Keys, h, recs)
		if err != nil {
			return fail(h.Seq, "batch %d: %v", h.Seq, err)
		}
		if !hmacEqual(got, h.Hash) {
			return fail(h.Seq, "batch %d: records hash to %.12s…, header says %.12s… (rows altered)", h.Seq, got, h.Hash)
		}
		res.Records += int64(len(recs))
	}
	return nil
}

func hmacEqual(a, b string) bool { return hmac.Equal([]byte(a), []byte(b)) }
