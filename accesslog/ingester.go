package accesslog

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"sync/atomic"
	"time"
)

// IngesterConfig configures an Ingester. Zero values get defaults.
type IngesterConfig struct {
	Store         Store
	Writer        uint32        // this process's chain in a shared store (0 for an embedded one)
	ChainKeys     *KeyRing      // key the hash chain (HMAC-SHA256 with the active key); nil: plain SHA-256
	SpoolDir      string        // required: the on-disk segment log
	BatchSize     int           // most entries per spool frame (default 10000)
	StoreBatch    int           // most entries per store batch, combining frames (default 200000)
	FlushInterval time.Duration // longest an entry waits in memory before it is fsynced (default 100ms): the crash-loss window
	BufferEntries int           // in-memory bound: receivers wait (Admit) beyond half of it; Add drops beyond it (default 200000)
	MaxSpoolBytes int64         // disk bound of the spool (default 1 GiB)
	SegmentBytes  int64         // spool segment size (default 64 MiB)
	RetryMax      time.Duration // longest wait between store retries (default 5s)
	StopGrace     time.Duration // at shutdown, how long the store writer may drain memory (default 5s)
	// StoreWriters is how many store batches are written at once when the
	// store is an OrderedStore (default DefaultStoreWriters; 1: one at a
	// time). Batches get their seq and hash in spool order before they are
	// written and commit in that order; a batch in flight keeps its
	// frames' encoded bytes (up to StoreBatch records) until it is stored.
	StoreWriters int
	// StoreDelay is the longest a spooled frame waits for its store batch
	// to fill up to StoreBatch before the batch is written anyway (default
	// DefaultStoreDelay), or, when no frame has come for StoreDelay/4
	// (the input paused), that long after its last frame. Entries are
	// spooled (crash-safe) meanwhile; only queries see them later.
	StoreDelay time.Duration
	Log        *slog.Logger
	Metrics    *Metrics
	Now        func() time.Time
}

// DefaultStoreBatch is IngesterConfig.StoreBatch's default. Above
// DuckDB's row group (122,880 rows) a transaction's full row groups are
// written compressed straight to the database file instead of through the
// WAL and compressed again at the next checkpoint: 600,000 unique rows
// cost 9.3–9.4 ms of CPU per 1,000 in 200,000-row batches against
// 12.9–13.2 ms in 100,000-row ones (duckstore, 2026-12-06, shared box).
const DefaultStoreBatch = 200000

// DefaultStoreWriters is IngesterConfig.StoreWriters' default: while one
// batch commits (DuckDB: merging its row groups, writing the WAL) the next
// one's rows go in on a second connection.
const DefaultStoreWriters = 2

// DefaultStoreDelay is IngesterConfig.StoreDelay's default: above 61,440
// entries/s a batch fills past DuckDB's row group (122,880 rows) within
// it (to the full 200,000 above 100,000 entries/s), so its rows are
// compressed once, straight into the file, not through the WAL and a
// checkpoint: 737,280 rows cost 7.4–7.6 ms of CPU per 1,000 (including
// the close) in 100,000-row batches, 5.1–6.1 ms in 122,880-, 200,000- or
// 245,760-row ones (duckstore, one writer, 2026-12-06, load ≈ 11).
const DefaultStoreDelay = 2 * time.Second

// Ingester takes records without ever waiting on storage: Add appends to a
// bounded in-memory buffer; one goroutine moves the buffer into the spool
// (segment log) by group commit: it writes every pending record as
// BatchSize frames, hands them to the syncer goroutine, which fsyncs once
// for every flush written meanwhile, and starts the next flush as soon as
// records are pending again (at most every FlushInterval/10) while the
// previous one's fsync runs (at most two flushes between write and
// fsync), so a record waits for the flush in progress to be written, then
// for its own write and the fsync covering it (tens of milliseconds, the
// crash-loss window; gatehouse_accesslog_spool_sync_lag_seconds shows it);
// a flush counts as spooled only once it and every flush before it are
// fsynced;
// the store loop combines spooled frames into store batches (up to
// StoreBatch entries, waiting at most StoreDelay for them), chains each
// batch's hash to the previous one in spool order and hands it to a store
// writer goroutine (up to StoreWriters at once with an OrderedStore, which
// commit in chain order), retrying while the store is down and replaying
// from disk what did not fit in memory or survived a restart. Spooled
// batches wait for the store loop in memory up to StoreBatch entries (at
// least four frames); beyond that they wait on disk only. From the spool
// on, records are kept as the spool encoded them (Record.AppendBinary,
// pointer-free buffers reused from frame to frame): a batch's hash is
// taken over those bytes, and a FrameStore reads them directly.
type Ingester struct {
	cfg   IngesterConfig
	log   *slog.Logger
	m     *Metrics
	spool *spool

	mu sync.Mutex
	// pending holds the records not yet spooled in chunks of BatchSize
	// (the last one may be partly filled): a flush spools each chunk as
	// one frame without copying it, and the chunk goes back to free,
	// cleared, for Add to fill again as soon as the frame is encoded (no
	// growing, no fresh memory to zero and fault in per flush): the store
	// loop gets the frame's encoded bytes, not the records.
	pending      [][]Record
	npending     int
	pendingSince time.Time     // when the oldest pending record was added
	flushed      chan struct{} // closed (and replaced) when a flush has written what it took and it is fsynced
	// unsynced are the flushes written and waiting for their fsync,
	// oldest first: their entries are not durable yet either.
	unsynced []unsyncedFlush
	kick     chan struct{}
	free     chan []Record // cleared chunks, len 0, cap BatchSize

	handoff chan frame
	// frameBufs are the encoded frames' buffers no batch holds any more,
	// reused by the next frames (no fresh memory to fault in per frame).
	frameBufs bufPool
	recBytes  int // encoded bytes per record in the last frame (spool goroutine)
	// readsFrames: the store reads the frames' bytes (FrameStore); else
	// a store writer decodes them into its batch array first.
	readsFrames bool
	inMem       atomic.Int64  // entries in handoff, bounded by StoreBatch (at least 4 frames)
	spilled     atomic.Uint64 // the newest spool seq whose batch is on disk only

	headMu sync.Mutex
	head   BatchHeader // the newest header stored
	tail   BatchHeader // the newest header given to a store writer (stored or in flight)
	// chain is held by whoever appends to this writer's chain: the store
	// loop while it gives a batch its seq and hash, and retention's prune
	// records (which first wait for the writes in flight).
	chain chan struct{}

	// ordered is the store when batches are written concurrently (nil:
	// one at a time, through Store.WriteBatch).
	ordered OrderedStore
	// bufs holds one token per store writer, with its batch array (for
	// a store that does not read frames; allocated when first needed):
	// the batcher fills a batch while the others are written.
	bufs chan []Record
	// last is the newest batch given to a store writer (nil before the
	// first); held under chain.
	last   *inflight
	writes sync.WaitGroup
}

// inflight is a batch given to a store writer; done is closed once it is
// stored (err nil) or given up (err set: ctx ended, or the one before it
// was given up).
type inflight struct {
	done chan struct{}
	err  error
}

// wait waits until f is stored and returns its error; a nil f is done.
func (f *inflight) wait(ctx context.Context) error {
	if f == nil {
		return nil
	}
	select {
	case <-f.done:
		return f.err
	case <-ctx.Done():
		return ctx.Err()
	}
}

// frame is a spooled frame's records as the store loop keeps them:
// encoded (Record.AppendBinary, concatenated), pointer-free, in buf.
type frame struct {
	seq      uint64
	n        int       // records
	recs     []byte    // the records, in buf
	buf      []byte    // the buffer to give back (frameBufs.put) once no batch holds it
	min, max time.Time // the records' earliest and latest Time
}

// bufPool keeps byte buffers for reuse, up to max of them (dropping the
// smallest beyond it) and maxBytes of capacity in all (dropping the
// buffer given back beyond it).
type bufPool struct {
	mu       sync.Mutex
	bufs     [][]byte
	bytes    int // their capacity
	max      int
	maxBytes int
	poison   bool // tests: overwrite a buffer when it is given back
}

// get returns an empty buffer of capacity need or more: the smallest kept
// one that fits, else a new one.
func (p *bufPool) get(need int) []byte {
	p.mu.Lock()
	best := -1
	for i, b := range p.bufs {
		if cap(b) >= need && (best < 0 || cap(b) < cap(p.bufs[best])) {
			best = i
		}
	}
	if best >= 0 {
		b := p.bufs[best]
		p.bytes -= cap(b)
		last := len(p.bufs) - 1
		p.bufs[best], p.bufs[last] = p.bufs[last], nil
		p.bufs = p.bufs[:last]
		p.mu.Unlock()
		return b
	}
	p.mu.Unlock()
	return make([]byte, 0, need)
}

// put keeps b, which no one reads any more, for get.
func (p *bufPool) put(b []byte) {
	if cap(b) == 0 {
		return
	}
	if p.poison {
		b = b[:cap(b)]
		for i := range b {
			b[i] = 0xA5
		}
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.bytes+cap(b) > p.maxBytes {
		return
	}
	if len(p.bufs) < p.max {
		p.bufs = append(p.bufs, b[:0])
		p.bytes += cap(b)
		return
	}
	small := 0
	for i := range p.bufs {
		if cap(p.bufs[i]) < cap(p.bufs[small]) {
			small = i
		}
	}
	if cap(p.bufs[small]) < cap(b) {
		p.bytes += cap(b) - cap(p.bufs[small])
		p.bufs[small] = b[:0]
	}
}

// putFrames gives back the buffers of frames no one reads any more.
func (in *Ingester) putFrames(fs []frame) {
	for i := range fs {
		in.frameBufs.put(fs[i].buf)
		fs[i] = frame{}
	}
}

// chunk returns an empty chunk for pending (in.mu held).
func (in *Ingester) chunk() []Record {
	select {
	case c := <-in.free:
		return c
	default:
		return make([]Record, 0, in.cfg.BatchSize)
	}
}

// recycle clears a chunk no one reads any more (so it keeps no record
// strings alive) and keeps it for Add, up to the free list's bound.
func (in *Ingester) recycle(c []Record) {
	if cap(c) != in.cfg.BatchSize {
		return
	}
	clear(c)
	select {
	case in.free <- c[:0]:
	default:
	}
}

// NewIngester opens the spool (recovering it after a crash) and reads the
// chain head from the store.
func NewIngester(ctx context.Context, cfg IngesterConfig) (*Ingester, error) {
	if cfg.Store == nil {
		return nil, errors.New("accesslog: ingester needs a store")
	}
	if cfg.SpoolDir == "" {
		return nil, errors.New("accesslog: ingester needs a spool directory")
	}
	if cfg.BatchSize <= 0 {
		cfg.BatchSize = 10000
	}
	if cfg.StoreBatch < cfg.BatchSize {
		cfg.StoreBatch = max(DefaultStoreBatch, cfg.BatchSize)
	}
	if cfg.FlushInterval <= 0 {
		cfg.FlushInterval = 100 * time.Millisecond
	}
	if cfg.BufferEntries <= 0 {
		cfg.BufferEntries = 200000
	}
	if cfg.MaxSpoolBytes <= 0 {
		cfg.MaxSpoolBytes = 1 << 30
	}
	if cfg.SegmentBytes <= 0 {
		cfg.SegmentBytes = 64 << 20
	}
	if cfg.RetryMax <= 0 {
		cfg.RetryMax = 5 * time.Second
	}
	if cfg.StopGrace <= 0 {
		cfg.StopGrace = 5 * time.Second
	}
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	if cfg.Metrics == nil {
		cfg.Metrics = NewMetrics(nil)
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.StoreWriters <= 0 {
		cfg.StoreWriters = DefaultStoreWriters
	}
	if cfg.StoreDelay <= 0 {
		cfg.StoreDelay = DefaultStoreDelay
	}
	if cfg.Writer > MaxWriter {
		return nil, fmt.Errorf("accesslog: writer id %d is above %d", cfg.Writer, MaxWriter)
	}
	sp, err := openSpool(cfg.SpoolDir, cfg.MaxSpoolBytes, cfg.SegmentBytes)
	if err != nil {
		return nil, fmt.Errorf("accesslog: %w", err)
	}
	head, err := cfg.Store.Head(ctx, cfg.Writer)
	if err != nil {
		sp.close()
		return nil, fmt.Errorf("accesslog: reading the chain head from the store: %w", err)
	}
	if err := sp.missing(head.SpoolSeq + 1); err != nil {
		sp.close()
		return nil, fmt.Errorf("accesslog: %w", err)
	}
	// A spool behind the store (moved away, or lost) numbers its frames
	// on from the store's head: a frame numbered at or below it would be
	// taken for stored and skipped.
	sp.skipTo(head.SpoolSeq + 1)
	writers := 1
	fs, _ := cfg.Store.(FrameStore)
	readsFrames := fs != nil && fs.ReadsFrames()
	ordered, _ := cfg.Store.(OrderedStore)
	if ordered != nil {
		writers = max(1, min(cfg.StoreWriters, ordered.Writers()))
	}
	if writers == 1 {
		ordered = nil
	}
	in := &Ingester{
		cfg: cfg, log: cfg.Log, m: cfg.Metrics, spool: sp, head: head, tail: head,
		ordered: ordered,
		bufs:    make(chan []Record, writers),
		kick:    make(chan struct{}, 1),
		flushed: make(chan struct{}),
		handoff: make(chan frame, 1024),
		// About the frames a full handoff, a batch being filled and
		// one in flight per store writer hold under load (a frame every
		// few milliseconds), and at most 1 KiB per entry of those.
		frameBufs:   bufPool{max: 1024 + (writers+1)*256, maxBytes: (writers + 2) * cfg.StoreBatch << 10},
		readsFrames: readsFrames,
		chain:       make(chan struct{}, 1),
		// Enough chunks for a full buffer (a chunk is free again as soon
		// as its frame is encoded).
		free: make(chan []Record, cfg.BufferEntries/cfg.BatchSize+2),
	}
	for range writers {
		in.bufs <- nil // allocated when first needed
	}
	in.spilled.Store(sp.nextSeq() - 1) // what a previous run left is on disk only
	in.m.SpoolBytes.Set(float64(sp.size()))
	return in, nil
}

// Add takes records (already redacted). It never blocks on storage: when
// the in-memory buffer is full the records are dropped and counted.
func (in *Ingester) Add(recs ...Record) {
	in.mu.Lock()
	if in.npending+len(recs) > in.cfg.BufferEntries {
		in.mu.Unlock()
		in.m.Dropped.WithLabelValues("buffer_full").Add(float64(len(recs)))
		return
	}
	first := in.npending == 0
	if first {
		in.pendingSince = time.Now()
	}
	in.npending += len(recs)
	added := len(recs)
	for len(recs) > 0 {
		last := len(in.pending) - 1
		if last < 0 || len(in.pending[last]) == cap(in.pending[last]) {
			in.pending = append(in.pending, in.chunk())
			last++
		}
		c := in.pending[last]
		k := min(len(recs), cap(c)-len(c))
		in.pending[last] = append(c, recs[:k]...)
		recs = recs[k:]
	}
	n := in.npending
	in.mu.Unlock()
	in.m.Buffered.Add(float64(added))
	if first || n >= in.cfg.BatchSize {
		select {
		case in.kick <- struct{}{}:
		default:
		}
	}
}

// Admit is called by a receiver before it reads more entries, so that
// senders slow down (gRPC flow control) instead of entries being lost or
// the crash-loss window growing. It never waits on the store, only on the
// spool goroutine:
//   - while the in-memory buffer is more than half full it waits until a
//     flush has made room (the other half takes what receivers already
//     past Admit add), so Add does not drop what was read;
//   - while an entry not yet durable (pending, or in a flush waiting for
//     its fsync) has waited longer than FlushInterval/2 (the spool
//     goroutine is late: starved of CPU, or a slow fsync; entries added
//     now would only make its next flush longer) it waits for flushes
//     until none has, as many as it takes, for up to ten FlushIntervals
//     (a spool that stalls longer gets entries again, up to half the
//     buffer).
//
// It returns early when ctx ends. The time waited is counted in
// gatehouse_accesslog_receive_throttled_seconds_total.
func (in *Ingester) Admit(ctx context.Context) {
	var start time.Time
	defer func() {
		if !start.IsZero() {
			in.m.Throttled.Add(time.Since(start).Seconds())
		}
	}()
	var stall <-chan time.Time // the late wait's limit
	for stalled := false; ; {
		in.mu.Lock()
		full := in.npending > in.cfg.BufferEntries/2
		// The oldest entry not yet durable: in the oldest flush waiting
		// for its fsync, else pending.
		late := in.npending > 0 && time.Since(in.pendingSince) > in.cfg.FlushInterval/2
		flushed, next := in.flushed, in.flushed
		if len(in.unsynced) > 0 {
			f := in.unsynced[0]
			late, next = time.Since(f.since) > in.cfg.FlushInterval/2, f.flushed
		}
		in.mu.Unlock()
		if !full && (!late || stalled) {
			return
		}
		if !full {
			flushed = next // late: until the oldest entry is durable
		}
		if start.IsZero() {
			start = time.Now()
			t := time.NewTimer(10 * in.cfg.FlushInterval)
			defer t.Stop()
			stall = t.C
		}
		select {
		case <-flushed:
		case <-stall:
			stalled, stall = true, nil
		case <-ctx.Done():
			return
		}
	}
}

// Head is the last batch header written by this ingester (or found at
// start).
func (in *Ingester) Head() BatchHeader {
	in.headMu.Lock()
	defer in.headMu.Unlock()
	return in.head
}

// Run moves records to the spool and the store until ctx ends, then
// spools what is still in memory and returns. Batches not yet stored stay
// in the spool for the next start.
func (in *Ingester) Run(ctx context.Context) error {
	storeCtx, stopStore := context.WithCancel(context.WithoutCancel(ctx))
	done := make(chan error, 1)
	go func() { done <- in.storeLoop(storeCtx) }()
	err := in.spoolLoop(ctx)
	close(in.handoff)
	// Give the store writer a moment to finish what is in memory; what is
	// left is on disk already.
	select {
	case serr := <-done:
		err = errors.Join(err, serr)
	case <-time.After(in.cfg.StopGrace):
		stopStore()
		err = errors.Join(err, <-done)
	}
	stopStore()
	return errors.Join(err, in.spool.close())
}

// flushesInFlight bounds the flushes written and not yet through their
// fsync: one fsyncing while the next one's frames are written. A third
// waits (its entries stay pending, where Admit sees them).
const flushesInFlight = 2

// unsyncedFlush is what Admit knows of a flush waiting for its fsync.
type unsyncedFlush struct {
	since   time.Time     // its oldest entry added
	flushed chan struct{} // closed once it is fsynced
}

// flushJob is a flush whose frames are written, on its way to the syncer.
type flushJob struct {
	since, start, wrote time.Time // oldest entry added, flush started, frames written
	entries             int
	flushed             chan struct{} // closed once it is through its fsync
}

func (in *Ingester) spoolLoop(ctx context.Context) error {
	// Group commit: a flush starts as soon as records are pending and
	// fewer than flushesInFlight flushes wait for their fsync, but no
	// sooner than gap after the previous one started, so there are at
	// most 1/gap flushes a second and every record received meanwhile
	// shares the next one. The ticker is a safety net only. The fsyncs
	// run in the syncer goroutine, so a flush's encoding and write(2)
	// overlap the previous flush's fsync instead of waiting for it.
	gap := max(in.cfg.FlushInterval/10, time.Millisecond)
	t := time.NewTicker(in.cfg.FlushInterval)
	defer t.Stop()
	wait := time.NewTimer(0)
	defer wait.Stop()
	jobs := make(chan *flushJob, flushesInFlight)
	slots := make(chan struct{}, flushesInFlight)
	synced := make(chan struct{})
	go func() {
		defer close(synced)
		in.syncer(jobs, slots)
	}()
	var last time.Time
	flush := func() {
		slots <- struct{}{} // freed by the syncer
		if job := in.flush(); job != nil {
			jobs <- job
		} else {
			<-slots
		}
	}
	defer func() {
		close(jobs)
		<-synced // every written frame through its fsync and handed on
	}()
	for {
		select {
		case <-ctx.Done():
			flush()
			return nil
		case <-t.C:
		case <-in.kick:
		}
		if d := gap - time.Since(last); d > 0 {
			wait.Reset(d)
			select {
			case <-ctx.Done():
				flush()
				return nil
			case <-wait.C:
			}
		}
		last = time.Now()
		flush()
	}
}

// flush moves the buffer into the spool, in BatchSize frames, written
// but not yet fsynced, and hands the frames to the store writer (which
// does not need them fsynced: a batch stored before its frame is durable
// is skipped at replay by the store's head); it returns the flush for the
// syncer (nil: nothing written, and its waiters are let go).
func (in *Ingester) flush() *flushJob {
	in.mu.Lock()
	pending, since, flushed := in.pending, in.pendingSince, in.flushed
	if in.npending > 0 {
		// Taken, not yet durable: Admit keeps seeing its age.
		in.unsynced = append(in.unsynced, unsyncedFlush{since: since, flushed: flushed})
	}
	in.pending, in.npending = nil, 0
	in.flushed = make(chan struct{})
	in.mu.Unlock()
	start := time.Now()
	if len(pending) > 0 {
		in.m.FlushWait.Observe(start.Sub(since).Seconds())
	}
	var written []frame
	if oneDay(pending) {
		// The common case: every chunk is one frame, spooled as it is.
		for _, c := range pending {
			written = in.spoolDay(c, true, written)
		}
	} else {
		var all []Record
		for _, c := range pending {
			all = append(all, c...)
			in.recycle(c)
		}
		for _, recs := range splitByDay(all) {
			written = in.spoolDay(recs, false, written)
		}
	}
	if len(written) == 0 {
		in.synced(flushed)
		return nil
	}
	wrote := time.Now()
	in.m.FlushWrite.Observe(wrote.Sub(start).Seconds())
	// Now, not after the fsync: the store loop reads from disk the
	// frames written and not handed over (its catch-up), which would
	// then be every frame waiting for its fsync.
	n := in.handOff(written)
	return &flushJob{since: since, start: start, wrote: wrote, entries: n, flushed: flushed}
}

// syncer makes written flushes durable, in order: it takes every flush
// waiting (the one in progress may have written more meanwhile), fsyncs
// once for all of them and only then counts them spooled and lets their
// waiters go. A flush is thus never reported durable before an earlier
// one. It frees one of slots per flush and returns when jobs is closed
// and drained.
func (in *Ingester) syncer(jobs <-chan *flushJob, slots <-chan struct{}) {
	var batch []*flushJob
	for job := range jobs {
		batch = append(batch[:0], job)
	more:
		for {
			select {
			case j, ok := <-jobs:
				if !ok {
					break more
				}
				batch = append(batch, j)
			default:
				break more
			}
		}
		grew, err := in.spool.sync()
		done := time.Now()
		if err != nil {
			// The frames are written (the store writer has them) but not
			// known to be on disk.
			in.log.Error("access-log spool fsync failed: entries are not crash-safe until stored", "error", err)
		}
		for _, j := range batch {
			if err == nil {
				in.m.Spooled.Add(float64(j.entries))
				// Its fsync part: from its frames' write to the return of
				// the fsync that covers them (the one in progress at the
				// time, if any, then this one).
				in.m.FlushSync.Observe(done.Sub(j.wrote).Seconds())
				if grew {
					in.m.FlushesGrowing.Inc()
				}
				lag := done.Sub(j.since).Seconds()
				in.m.SyncLag.Set(lag)
				in.m.SyncLags.Observe(lag)
			}
			in.synced(j.flushed)
			<-slots
		}
		in.m.SpoolBytes.Set(float64(in.spool.size()))
		if err := in.spool.preparerErr(); err != nil {
			in.log.Warn("access-log spool could not prepare or recycle a segment: flushes fsync a growing file meanwhile", "error", err)
		}
	}
}

// synced lets the waiters of a flush go: it is fsynced (or nothing of it
// was written).
func (in *Ingester) synced(flushed chan struct{}) {
	in.mu.Lock()
	// The oldest one but for a flush that wrote nothing.
	if i := slices.IndexFunc(in.unsynced, func(u unsyncedFlush) bool { return u.flushed == flushed }); i >= 0 {
		in.unsynced = slices.Delete(in.unsynced, i, i+1)
	}
	in.mu.Unlock()
	close(flushed)
}

// handOff gives a flush's frames to the store writer, in memory while it
// keeps up, else they wait on disk, and returns their entries.
func (in *Ingester) handOff(written []frame) (entries int) {
	for _, f := range written {
		n := f.n
		entries += n
		in.m.Buffered.Sub(float64(n))
		if in.inMem.Add(int64(n)) <= int64(max(in.cfg.StoreBatch, 4*in.cfg.BatchSize)) {
			select {
			case in.handoff <- f:
				continue
			default:
			}
		}
		// The store writer is behind: the batch waits on disk.
		in.inMem.Add(-int64(n))
		in.spilled.Store(f.seq)
		in.m.Spilled.Add(float64(n))
		in.frameBufs.put(f.buf)
	}
	return entries
}

// spoolDay writes records of one UTC day as BatchSize frames (not yet
// fsynced) and appends them, encoded, to written. chunk: recs is a
// pending chunk (one frame), recycled as soon as it is encoded.
func (in *Ingester) spoolDay(recs []Record, chunk bool, written []frame) []frame {
	if chunk && len(recs) == 0 {
		in.recycle(recs)
		return written
	}
	for len(recs) > 0 {
		n := min(len(recs), in.cfg.BatchSize)
		batch := recs[:n:n]
		if chunk {
			batch = recs[:n] // keeps the chunk's capacity, to recycle it
		}
		recs = recs[n:]
		f := frame{n: n, min: batch[0].Time, max: batch[0].Time}
		for i := range batch {
			if t := batch[i].Time; t.Before(f.min) {
				f.min = t
			} else if t.After(f.max) {
				f.max = t
			}
		}
		// Room for the frame's header and seq and count varints too.
		buf := in.frameBufs.get(n*max(in.recBytes, 64)*9/8 + 64)
		seq, buf, err := in.spool.write(buf, batch)
		if chunk {
			in.recycle(batch)
		}
		if err != nil {
			in.frameBufs.put(buf)
			in.m.Buffered.Sub(float64(n))
			reason := "spool_error"
			if errors.Is(err, errSpoolFull) {
				reason = "spool_full"
			}
			in.m.Dropped.WithLabelValues(reason).Add(float64(n))
			in.log.Error("access-log entries dropped: cannot spool", "entries", n, "reason", reason, "error", err)
			continue
		}
		_, f.recs, err = payloadRecords(buf[frameHeader:])
		if err != nil { // cannot happen: spool.write has just encoded it
			in.log.Error("access-log spool frame unreadable as written; the store reads it from disk", "spool_seq", seq, "error", err)
			in.frameBufs.put(buf)
			in.m.Buffered.Sub(float64(n))
			in.spilled.Store(seq)
			continue
		}
		f.seq, f.buf = seq, buf
		in.recBytes = len(f.recs)/n + 1
		written = append(written, f)
	}
	return written
}

// oneDay says whether every pending record is of the same UTC day.
func oneDay(chunks [][]Record) bool {
	var d0 int64
	seen := false
	for _, c := range chunks {
		for i := range c {
			d := dayOf(&c[i])
			if !seen {
				d0, seen = d, true
			} else if d != d0 {
				return false
			}
		}
	}
	return true
}

// dayOf is the UTC day of a record. Frames and store batches never mix
// days, so retention drops whole batches and every kept row stays
// verifiable.
func dayOf(r *Record) int64 { return dayOfTime(r.Time) }

// dayOfTime is the UTC day of t.
func dayOfTime(t time.Time) int64 { return t.Unix() / 86400 }

// splitByDay groups records by UTC day, oldest day first, keeping order
// within a day. The common case (one day) does not copy.
func splitByDay(recs []Record) [][]Record {
	if len(recs) == 0 {
		return nil
	}
	d0 := dayOf(&recs[0])
	mixed := false
	for i := range recs {
		if dayOf(&recs[i]) != d0 {
			mixed = true
			break
		}
	}
	if !mixed {
		return [][]Record{recs}
	}
	byDay := map[int64][]Record{}
	var days []int64
	for _, r := range recs {
		d := dayOf(&r)
		if _, ok := byDay[d]; !ok {
			days = append(days, d)
		}
		byDay[d] = append(byDay[d], r)
	}
	slices.Sort(days)
	out := make([][]Record, len(days))
	for i, d := range days {
		out[i] = byDay[d]
	}
	return out
}

// batcher combines consecutive spool frames into store batches of up to
// StoreBatch records (fewer, larger transactions when the store is behind
// or the rate is high) and hands them to the store writers in spool order.
// It belongs to the store loop goroutine.
type batcher struct {
	in *Ingester
	// expected is the next spool seq the store needs: every frame before
	// it is stored or in a batch given to a store writer.
	expected uint64
	acc      []frame   // frames taken and not written yet
	accN     int       // their records
	accLast  uint64    // the spool seq of acc's last frame
	accSince time.Time // when acc got its first frame
	accAt    time.Time // when acc got its last frame
	// tok: the batcher holds a store writer's token (from in.bufs, with
	// its batch array arr), which goes to the batch acc becomes and back
	// to bufs once that is stored: at most one batch per store writer
	// is filled or in flight. acc's frames' buffers go back to the pool
	// then too: the store keeps no reference to a batch's bytes
	// (Store.WriteBatch).
	tok bool
	arr []Record
}

// taken says whether frame seq is stored already or in acc.
func (b *batcher) taken(seq uint64) bool {
	return seq < b.expected || (len(b.acc) > 0 && seq <= b.accLast)
}

// flush gives acc to a store writer as one store batch (write owns its
// frames and token from here on).
func (b *batcher) flush(ctx context.Context) error {
	if len(b.acc) == 0 {
		return nil // an empty acc keeps its token
	}
	acc, n, arr := b.acc, b.accN, b.arr
	b.acc, b.accN, b.arr, b.tok = nil, 0, nil, false
	err := b.in.write(ctx, b.accLast, acc, n, arr)
	if err == nil {
		b.expected = b.accLast + 1
	}
	return err
}

// drop forgets acc after a failure; its frames are read from the spool
// again.
func (b *batcher) drop() {
	b.in.putFrames(b.acc)
	b.acc, b.accN = nil, 0
	if b.tok {
		b.in.putBuf(b.arr)
	}
	b.arr, b.tok = nil, false
}

// getBuf waits for a store writer's token and its batch array (nil until
// a store that does not read frames needs it): while every writer is
// busy the store loop waits here and the frames wait in the handoff, or
// on disk.
func (in *Ingester) getBuf(ctx context.Context) ([]Record, error) {
	select {
	case buf := <-in.bufs:
		return buf, nil
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// putBuf gives back a token with its batch array, cleared so that it
// keeps no record strings alive.
func (in *Ingester) putBuf(buf []Record) {
	clear(buf)
	select {
	case in.bufs <- buf[:0]:
	default: // cannot happen: every token came from bufs
	}
}

// take gets a store writer's token for acc unless it holds one.
func (b *batcher) take(ctx context.Context) error {
	if b.tok {
		return nil
	}
	arr, err := b.in.getBuf(ctx)
	if err != nil {
		return err
	}
	b.arr, b.tok = arr, true
	return nil
}

// add appends frame f to acc, writing acc first when f would make it
// larger than StoreBatch or belongs to another day. acc owns f from the
// call on (its buffer is given back on an error).
func (b *batcher) add(ctx context.Context, f frame) error {
	if f.n == 0 {
		b.accLast = max(b.accLast, f.seq)
		b.in.frameBufs.put(f.buf)
		return nil
	}
	if len(b.acc) > 0 && (b.accN+f.n > b.in.cfg.StoreBatch || dayOfTime(b.acc[0].min) != dayOfTime(f.min)) {
		if err := b.flush(ctx); err != nil {
			b.in.frameBufs.put(f.buf)
			return err
		}
	}
	if err := b.take(ctx); err != nil {
		b.in.frameBufs.put(f.buf)
		return err
	}
	if len(b.acc) == 0 {
		b.accSince = time.Now()
	}
	b.acc = append(b.acc, f)
	b.accN += f.n
	b.accLast = f.seq
	b.accAt = time.Now()
	return nil
}

// catchUp reads from the spool the frames before to that are neither
// stored nor in acc, and adds them (encoded, as read).
func (b *batcher) catchUp(ctx context.Context, to uint64) error {
	from := b.expected
	if len(b.acc) > 0 {
		from = b.accLast + 1
	}
	if to <= from {
		return nil
	}
	return b.in.spool.readEncoded(from, to, func(seq uint64, n int, recs, payload []byte) error {
		if seq != from {
			return fmt.Errorf("spool frame %d missing (found %d)", from, seq)
		}
		from = seq + 1
		f := frame{seq: seq, n: n, recs: recs, buf: payload}
		if n > 0 {
			var err error
			if f.min, f.max, err = recordTimes(recs, n); err != nil {
				return fmt.Errorf("spool frame %d: %w", seq, err)
			}
		}
		return b.add(ctx, f)
	})
}

func (in *Ingester) storeLoop(ctx context.Context) error {
	// Batches in flight are stored (or given up when ctx ends) before the
	// loop returns.
	defer in.writes.Wait()
	head := in.Head()
	bt := &batcher{in: in, expected: max(head.SpoolSeq+1, in.spool.released)}
	defer func() { bt.drop() }()
	tick := time.NewTicker(250 * time.Millisecond)
	defer tick.Stop()
	delay := time.NewTimer(time.Hour)
	defer delay.Stop()
	for {
		in.m.Backlog.Set(float64(in.spool.nextSeq() - bt.expected))
		// A store writer's token first: while every store writer is busy,
		// frames wait in the handoff (and it fills up into large batches).
		if err := bt.take(ctx); err != nil {
			return nil
		}
		// acc grows towards StoreBatch (add hands it to a writer when the
		// next frame would not fit) for at most StoreDelay: fewer, larger
		// transactions. When no frame has come for StoreDelay/4 the input
		// has paused (under load the spool hands over a frame at least
		// every FlushInterval), and acc is written without waiting out the
		// rest: the last entries of a burst are not held back for them.
		var due <-chan time.Time
		if len(bt.acc) > 0 {
			wait := in.cfg.StoreDelay - time.Since(bt.accSince)
			if idle := in.cfg.StoreDelay/4 - time.Since(bt.accAt); idle < wait {
				wait = idle
			}
			delay.Reset(max(0, wait))
			due = delay.C
		}
		var b frame
		var ok bool
		select {
		case <-due:
			if err := bt.flush(ctx); err != nil {
				if ctx.Err() != nil {
					return nil
				}
				in.log.Error("access-log spool replay failed", "error", err)
				bt.drop()
			}
			continue
		case b, ok = <-in.handoff:
			in.inMem.Add(-int64(b.n))
			if !ok {
				if err := bt.flush(ctx); err != nil && ctx.Err() == nil {
					in.log.Error("access-log store write failed at shutdown; entries stay in the spool", "error", err)
				}
				return nil
			}
		case <-tick.C:
			// Read from disk what is not waiting in memory: while batches
			// wait in the handoff, only up to the last spilled one.
			to := in.spool.nextSeq()
			if len(in.handoff) > 0 {
				to = min(to, in.spilled.Load()+1)
			}
			err := bt.catchUp(ctx, to)
			if err != nil {
				if ctx.Err() != nil {
					return nil
				}
				in.log.Error("access-log spool replay failed", "error", err)
				bt.drop()
			}
			continue
		}
		frames := []frame{b}
		n := b.n
	drain:
		for n < in.cfg.StoreBatch {
			select {
			case b2, ok := <-in.handoff:
				if !ok {
					break drain
				}
				in.inMem.Add(-int64(b2.n))
				frames = append(frames, b2)
				n += b2.n
			default:
				break drain
			}
		}
		var err error
		for i, f := range frames {
			if err != nil {
				// Left to be read from the spool again.
				in.putFrames(frames[i:])
				break
			}
			if bt.taken(f.seq) {
				in.frameBufs.put(f.buf) // already stored or taken from disk
				continue
			}
			if err = bt.catchUp(ctx, f.seq); err != nil {
				in.frameBufs.put(f.buf)
				continue
			}
			err = bt.add(ctx, f) // acc owns f's buffer now
		}
		if err != nil {
			if ctx.Err() != nil {
				return nil // the batches are in the spool
			}
			in.log.Error("access-log spool replay failed", "error", err)
			bt.drop()
		}
	}
}

// write gives one spooled batch (n records in frames) its place in the
// chain (seq, previous hash, hash: in spool order, under chain) and hands
// it to a store writer goroutine, which stores it, retrying with backoff
// until it succeeds or ctx ends, and commits it only after the batch
// before it. write owns the frames' buffers and the store writer's token
// (with its array arr, from bufs) from the call on.
func (in *Ingester) write(ctx context.Context, seq uint64, frames []frame, n int, arr []Record) error {
	release := func() {
		in.putFrames(frames)
		in.putBuf(arr)
	}
	select {
	case in.chain <- struct{}{}:
		defer func() { <-in.chain }()
	case <-ctx.Done():
		release()
		return ctx.Err()
	}
	in.headMu.Lock()
	tail := in.tail
	in.headMu.Unlock()
	if seq <= tail.SpoolSeq {
		release()
		return nil
	}
	b := &Batch{Frames: make([][]byte, len(frames))}
	b.Seq = tail.Seq + 1
	if tail.Seq == 0 {
		b.Seq = SeqOf(in.cfg.Writer, 1)
	}
	b.SpoolSeq = seq
	b.Count = uint32(n)
	b.PrevHash = tail.Hash
	b.KeyID = in.cfg.ChainKeys.Active()
	for i := range frames {
		f := &frames[i]
		b.Frames[i] = f.recs
		if i == 0 || f.min.Before(b.MinTime) {
			b.MinTime = f.min
		}
		if i == 0 || f.max.After(b.MaxTime) {
			b.MaxTime = f.max
		}
	}
	var err error
	// The bytes the spool encoded are the records' canonical form: the
	// hash of a batch of Records, without encoding them again.
	if b.Hash, err = batchHashFrames(in.cfg.ChainKeys, &b.BatchHeader, b.Frames); err != nil {
		release()
		return err
	}
	prev, cur := in.last, &inflight{done: make(chan struct{})}
	in.last = cur
	in.headMu.Lock()
	in.tail = b.BatchHeader
	in.headMu.Unlock()
	in.writes.Add(1)
	go func() {
		defer in.writes.Done()
		if in.readsFrames {
			cur.err = in.store(ctx, b, prev)
		} else if b.Records, cur.err = b.decodeFrames(slices.Grow(arr[:0], max(int(b.Count), in.cfg.StoreBatch))); cur.err == nil {
			// A store that reads Records: a copy of them, with strings
			// of their own (it may keep those), in the token's array.
			arr, b.Frames = b.Records, nil
			cur.err = in.store(ctx, b, prev)
		} else {
			in.log.Error("access-log batch cannot be decoded from its frames; it stays in the spool", "batch", b.Seq, "error", cur.err)
		}
		if cur.err != nil {
			// Not stored (ctx ended): it and every batch after it stay in
			// the spool for the next start.
			in.headMu.Lock()
			in.tail = in.head
			in.headMu.Unlock()
		}
		close(cur.done)
		release()
	}()
	return nil
}

// store writes b, retrying with backoff until it succeeds or ctx ends,
// committing it only once prev (the batch before it) is stored; then it
// moves the head and releases the spool up to b, in chain order.
func (in *Ingester) store(ctx context.Context, b *Batch, prev *inflight) error {
	var prevErr error
	after := func(ctx context.Context) error {
		prevErr = prev.wait(ctx)
		return prevErr
	}
	count := int(b.Count)
	wait := 50 * time.Millisecond
	for attempt := 1; ; attempt++ {
		start := time.Now()
		var err error
		if in.ordered != nil {
			err = in.ordered.WriteBatchAfter(ctx, b, after)
		} else if err = after(ctx); err == nil {
			err = in.cfg.Store.WriteBatch(ctx, b)
		}
		if err == nil {
			in.m.WriteTime.Observe(time.Since(start).Seconds())
			in.m.BatchSize.Observe(float64(count))
			in.m.Stored.Add(float64(count))
			in.headMu.Lock()
			in.head = b.BatchHeader
			in.headMu.Unlock()
			if rerr := in.spool.release(b.SpoolSeq + 1); rerr != nil {
				in.log.Warn("access-log spool cleanup failed", "error", rerr)
			}
			in.m.SpoolBytes.Set(float64(in.spool.size()))
			if attempt > 1 {
				in.log.Info("access-log store is writable again", "batch", b.Seq, "attempts", attempt)
			}
			return nil
		}
		if prevErr != nil {
			return prevErr
		}
		in.m.StoreErrors.Inc()
		if attempt == 1 || attempt%20 == 0 {
			in.log.Warn("access-log store write failed; entries stay in the spool and are retried", "batch", b.Seq, "spool_seq", b.SpoolSeq, "entries", count, "attempt", attempt, "error", err)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(wait):
		}
		wait = min(wait*2, in.cfg.RetryMax)
	}
}

// DropBefore is retention: it removes the rows of the oldest batches of
// this writer's chain whose records all lie before cutoff's UTC day (the
// longest such prefix of the chain: pruned batches always form a prefix)
// and appends a prune record saying so to the chain, keyed like every
// batch, so Verify can tell retention from someone deleting rows. It
// returns the rows removed.
func (in *Ingester) DropBefore(ctx context.Context, cutoff time.Time) (int64, error) {
	day := cutoff.UTC().Truncate(24 * time.Hour)
	select {
	case in.chain <- struct{}{}:
		defer func() { <-in.chain }()
	case <-ctx.Done():
		return 0, ctx.Err()
	}
	// The prune record follows the last batch stored: wait for the ones
	// in flight (the store loop gives out no new one while chain is held).
	if err := in.last.wait(ctx); err != nil {
		return 0, fmt.Errorf("retention: waiting for the store writers: %w", err)
	}
	head := in.Head()
	if head.Seq == 0 {
		return 0, nil
	}
	hs, err := in.cfg.Store.Headers(ctx, SeqOf(in.cfg.Writer, 1))
	if err != nil {
		return 0, fmt.Errorf("retention: %w", err)
	}
	var last, covered uint64
	var lastRec *BatchHeader
	for i := range hs {
		if h := &hs[i]; WriterOf(h.Seq) == in.cfg.Writer && h.PruneTo >= covered && h.PruneTo != 0 {
			covered, lastRec = h.PruneTo, h
		}
	}
	unfinished := false // batches a prune record covers still have rows
	for i := range hs {
		h := &hs[i]
		if WriterOf(h.Seq) != in.cfg.Writer {
			break
		}
		if h.PruneTo != 0 {
			continue
		}
		if !h.Pruned && !h.MaxTime.Before(day) {
			break
		}
		if !h.Pruned && h.Seq <= covered {
			unfinished = true
		}
		last = h.Seq
	}
	if last <= covered {
		if !unfinished || lastRec == nil {
			return 0, nil
		}
		// A previous run stored its record but not all of its deletions.
		return in.cfg.Store.Prune(ctx, lastRec)
	}
	rec := BatchHeader{Seq: head.Seq + 1, SpoolSeq: head.SpoolSeq, MinTime: day, MaxTime: day,
		PrevHash: head.Hash, KeyID: in.cfg.ChainKeys.Active(), PruneTo: last}
	if rec.Hash, err = BatchHash(in.cfg.ChainKeys, &rec, nil); err != nil {
		return 0, err
	}
	n, err := in.cfg.Store.Prune(ctx, &rec)
	if err != nil {
		// The record may be stored even so: take the head from the store,
		// or the next batch would reuse its seq.
		if h, herr := in.cfg.Store.Head(ctx, in.cfg.Writer); herr == nil && h.Seq >= head.Seq {
			in.headMu.Lock()
			in.head, in.tail = h, h
			in.headMu.Unlock()
		}
		return n, fmt.Errorf("retention before %s: %w", day.Format(time.DateOnly), err)
	}
	in.headMu.Lock()
	in.head, in.tail = rec, rec
	in.headMu.Unlock()
	in.log.Info("retention pruned the chain", "before", day.Format(time.DateOnly), "prune_to", last, "record", rec.Seq, "rows", n)
	return n, nil
}
