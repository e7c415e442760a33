// Package duckstore is the embedded access-log store: one DuckDB file owned
// by the accesslog process (DuckDB allows one writing process per file, so
// the query API lives in the same process). It implements
// accesslog.Store with a table function for batch inserts (rows.go), a
// batches table for the hash chain, and day-granular retention. It must
// not import the sidecars, the control plane or cmd/.
package duckstore

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/duckdb/duckdb-go/v2"

	"github.com/gatehouse-edge/gatehouse/accesslog"
	"github.com/gatehouse-edge/gatehouse/accesslog/internal/sqlq"
)

// Config opens a store.
type Config struct {
	Path        string // the DuckDB file
	MemoryLimit string // DuckDB memory_limit, default "512MB"
	Threads     int    // DuckDB threads, default 2
	// WriteThreads is DuckDB's thread count while WriteBatch runs (default
	// 1; the setting is global, so queries running meanwhile get it too).
	// With a second thread the writing connection busy-waits for the
	// other thread's compression tasks in DuckDB's executor: ≈ 15 % more
	// CPU per row on two cores, taken from decoding the next entries.
	WriteThreads int
	// CheckpointThreshold is DuckDB's checkpoint_threshold: the WAL size
	// at which a commit checkpoints (default "256MB"; DuckDB's own default
	// is 16MB). A checkpoint compresses the table's last, partly filled
	// row group (122,880 rows) again with every new row in it, so small
	// thresholds compress rows several times over: 1.2M rows in 10,000-row
	// batches cost 17.0 s of CPU at 16MB, 10.2 s at 256MB. The price is a
	// longer WAL replay when the store is opened after a crash.
	CheckpointThreshold string
	// Writers is how many writing connections the store keeps: how many
	// batches WriteBatchAfter writes at once (default 2). DuckDB appends
	// to one table from several transactions at once; the batches commit
	// in the order their caller says.
	Writers  int
	ReadOnly bool // open for reading only (verify while no writer runs)
	Log      *slog.Logger
}

// Store is a DuckDB-backed accesslog.Store.
type Store struct {
	db *sql.DB
	// writers are the writing connections; free holds those not in use
	// (a write or a prune takes one).
	writers []*writer
	free    chan *writer
	log     *slog.Logger
	ro      bool
	// threads and writeThreads: DuckDB's threads for queries and while a
	// batch is written. The setting is global: writing counts the writes
	// running, the first sets writeThreads, the last sets threads back.
	threads, writeThreads int
	threadsMu             sync.Mutex
	writing               int
	// hashed: every row has the *_h lookup hashes (false for files written
	// before they existed), so point filters can use them.
	hashed bool
	// headerCols reads a BatchHeader from the batches table.
	headerCols string
}

// writer is one writing connection with its own rows table function.
type writer struct {
	conn *sql.Conn
	fn   string // the name of its table function (rows.go)
	// rows is the batch being inserted on conn, read by fn.
	rows atomic.Pointer[rowBatch]
	// inlined counts the strings fn wrote straight into DuckDB's
	// vectors (strfill.go).
	inlined atomic.Int64
}

// Lookup hashes: a point filter on a high-cardinality string column
// (client_ip, subject, request_id) first compares a 32-bit FNV-1a hash of
// the value stored next to it. Scanning integers is about ten times
// faster than comparing strings in DuckDB; the string comparison still
// runs on the few rows that match.
func lookupHash(s string) uint32 {
	// FNV-1a, 32 bit (hash/fnv's New32a), without its allocations.
	h := uint32(2166136261)
	for i := 0; i < len(s); i++ {
		h ^= uint32(s[i])
		h *= 16777619
	}
	return h
}

// schema: request_id, query and headers hold a value of their own in
// (nearly) every row, which DuckDB stores with FSST; named here, DuckDB
// compresses them so without first trying a dictionary on every value
// (hashing each string: about a tenth of the store's CPU for such rows).
// The other columns are left to DuckDB's choice. A file created before
// keeps its table as it was.
const schema = `
CREATE TABLE IF NOT EXISTS logs (
	time TIMESTAMP NOT NULL, request_id VARCHAR USING COMPRESSION fsst, kind VARCHAR, log_type VARCHAR,
	node VARCHAR, node_group VARCHAR, route VARCHAR, authority VARCHAR,
	method VARCHAR, path VARCHAR, query VARCHAR USING COMPRESSION fsst, status UINTEGER,
	response_flags VARCHAR, duration_us BIGINT, bytes_in UBIGINT, bytes_out UBIGINT,
	client_ip VARCHAR, client_port UINTEGER, tls_version VARCHAR, tls_sni VARCHAR,
	peer_principal VARCHAR, user_agent VARCHAR, headers VARCHAR USING COMPRESSION fsst,
	upstream_cluster VARCHAR, upstream_host VARCHAR, subject VARCHAR,
	provider VARCHAR, auth_kind VARCHAR, apikey_id VARCHAR, rule VARCHAR,
	decision VARCHAR, config_version VARCHAR, denied BOOLEAN, batch UBIGINT NOT NULL, idx UINTEGER NOT NULL,
	client_ip_h UINTEGER, subject_h UINTEGER, request_id_h UINTEGER
);
CREATE TABLE IF NOT EXISTS batches (
	seq UBIGINT PRIMARY KEY, spool_seq UBIGINT NOT NULL, count UINTEGER NOT NULL,
	min_time TIMESTAMP, max_time TIMESTAMP, prev_hash VARCHAR NOT NULL,
	hash VARCHAR NOT NULL, pruned BOOLEAN NOT NULL DEFAULT false,
	key_id VARCHAR NOT NULL DEFAULT '', prune_to UBIGINT NOT NULL DEFAULT 0
);`

var dialect = sqlq.Dialect{
	StartsWith: "starts_with",
	TimeMS:     "epoch_ms(time)",
	TimeRange: func(since, until time.Time) (string, []any) {
		return "time >= ? AND time < ?", []any{since.UTC(), until.UTC()}
	},
}

// Open opens (creating if needed) the DuckDB file.
func Open(ctx context.Context, cfg Config) (*Store, error) {
	if cfg.Path == "" {
		return nil, errors.New("duckstore: no path")
	}
	if cfg.MemoryLimit == "" {
		cfg.MemoryLimit = "512MB"
	}
	if cfg.Threads <= 0 {
		cfg.Threads = 2
	}
	if cfg.WriteThreads <= 0 {
		cfg.WriteThreads = 1
	}
	if cfg.CheckpointThreshold == "" {
		cfg.CheckpointThreshold = "256MB"
	}
	if cfg.Writers <= 0 {
		cfg.Writers = 2
	}
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	q := url.Values{}
	q.Set("memory_limit", cfg.MemoryLimit)
	q.Set("threads", fmt.Sprint(cfg.Threads))
	if cfg.ReadOnly {
		q.Set("access_mode", "READ_ONLY")
	} else {
		q.Set("checkpoint_threshold", cfg.CheckpointThreshold)
	}
	connector, err := duckdb.NewConnector(cfg.Path+"?"+q.Encode(), nil)
	if err != nil {
		return nil, fmt.Errorf("duckstore: opening %s: %w", cfg.Path, err)
	}
	db := sql.OpenDB(connector)
	s := &Store{db: db, log: cfg.Log, ro: cfg.ReadOnly, threads: cfg.Threads, writeThreads: cfg.WriteThreads}
	if !cfg.ReadOnly {
		if _, err := db.ExecContext(ctx, schema); err != nil {
			db.Close()
			return nil, fmt.Errorf("duckdb %s: creating schema: %w", cfg.Path, err)
		}
		for _, c := range []string{"client_ip_h", "subject_h", "request_id_h"} {
			if _, err := db.ExecContext(ctx, "ALTER TABLE logs ADD COLUMN IF NOT EXISTS "+c+" UINTEGER"); err != nil {
				db.Close()
				return nil, fmt.Errorf("duckdb %s: adding %s: %w", cfg.Path, c, err)
			}
		}
		// config_version came later: files written before it gain the
		// column (NULL in old rows; read back as "").
		if _, err := db.ExecContext(ctx, "ALTER TABLE logs ADD COLUMN IF NOT EXISTS config_version VARCHAR DEFAULT ''"); err != nil {
			db.Close()
			return nil, fmt.Errorf("duckdb %s: adding config_version: %w", cfg.Path, err)
		}
		for _, c := range []string{"key_id VARCHAR DEFAULT ''", "prune_to UBIGINT DEFAULT 0"} {
			if _, err := db.ExecContext(ctx, "ALTER TABLE batches ADD COLUMN IF NOT EXISTS "+c); err != nil {
				db.Close()
				return nil, fmt.Errorf("duckdb %s: adding batches.%s: %w", cfg.Path, c, err)
			}
		}
		// The file holds every request's client address, subject and
		// headers: owner only, whatever the umask (the directory should be
		// 0700 too: DuckDB creates its WAL next to it with the umask).
		for _, f := range []string{cfg.Path, cfg.Path + ".wal"} {
			if err := os.Chmod(f, 0o600); err != nil && !errors.Is(err, os.ErrNotExist) {
				cfg.Log.Warn("duckdb: cannot make the store file owner-only", "file", f, "error", err)
			}
		}
		s.free = make(chan *writer, cfg.Writers)
		for i := range cfg.Writers {
			w := &writer{fn: rowsFunction}
			if i > 0 {
				w.fn = fmt.Sprintf("%s_%d", rowsFunction, i)
			}
			if w.conn, err = db.Conn(ctx); err == nil {
				s.writers = append(s.writers, w)
				err = registerRows(w)
			}
			if err != nil {
				s.Close()
				return nil, fmt.Errorf("duckdb %s: %w", cfg.Path, err)
			}
			s.free <- w
		}
	}
	var legacy int64
	if err := db.QueryRowContext(ctx, "SELECT count(*) FROM (SELECT 1 FROM logs WHERE client_ip_h IS NULL LIMIT 1)").Scan(&legacy); err != nil {
		legacy = 1 // read-only open of a file without the columns
	}
	s.hashed = legacy == 0
	// A file from before keyed chains, opened read-only, has neither
	// column: its headers read as unkeyed with no prune records.
	s.headerCols = "seq, spool_seq, count, min_time, max_time, prev_hash, hash, pruned, coalesce(key_id, ''), coalesce(prune_to, 0)"
	if _, err := db.ExecContext(ctx, "SELECT key_id, prune_to FROM batches LIMIT 0"); err != nil {
		s.headerCols = "seq, spool_seq, count, min_time, max_time, prev_hash, hash, pruned, '', 0"
	}
	return s, nil
}

// DB exposes the database for read-only tooling (benchmarks, archive).
func (s *Store) DB() *sql.DB { return s.db }

// Close closes the file.
func (s *Store) Close() error {
	var err error
	for _, w := range s.writers {
		err = errors.Join(err, w.conn.Close())
	}
	return errors.Join(err, s.db.Close())
}

// Writers is how many batches WriteBatchAfter writes at once.
func (s *Store) Writers() int { return len(s.writers) }

// take waits for a free writing connection.
func (s *Store) take(ctx context.Context) (*writer, error) {
	select {
	case w := <-s.free:
		return w, nil
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// writeThreadsOn sets DuckDB's threads to writeThreads when the first of
// the writes running starts; the returned func sets them back when the
// last one ends.
func (s *Store) writeThreadsOn(ctx context.Context, conn *sql.Conn) (func(), error) {
	if s.writeThreads == s.threads {
		return func() {}, nil
	}
	s.threadsMu.Lock()
	defer s.threadsMu.Unlock()
	if s.writing == 0 {
		if _, err := conn.ExecContext(ctx, fmt.Sprintf("SET GLOBAL threads = %d", s.writeThreads)); err != nil {
			return nil, fmt.Errorf("duckdb: write threads: %w", err)
		}
	}
	s.writing++
	return func() {
		s.threadsMu.Lock()
		defer s.threadsMu.Unlock()
		if s.writing--; s.writing == 0 {
			if _, err := conn.ExecContext(context.WithoutCancel(ctx), fmt.Sprintf("SET GLOBAL threads = %d", s.threads)); err != nil {
				s.log.Warn("duckdb: restoring the query threads failed", "error", err)
			}
		}
	}, nil
}

// ReadsFrames says WriteBatch reads a batch's encoded records
// (accesslog.FrameStore): the Ingester hands them as the spool encoded
// them, and rowSource decodes them a chunk at a time.
func (s *Store) ReadsFrames() bool { return true }

// WriteBatch inserts the batch's rows and header in one transaction. A
// batch whose seq is already stored is skipped (spool replay after a
// crash). The rows go in by one INSERT … SELECT from a table function
// that fills DuckDB's column vectors with typed values (rows.go): no
// per-value boxing as with the Appender's AppendRow. A VARCHAR column
// with the same value in every row of the batch is one parameter of the
// INSERT instead of one cgo call per row.
func (s *Store) WriteBatch(ctx context.Context, b *accesslog.Batch) error {
	return s.WriteBatchAfter(ctx, b, nil)
}

// WriteBatchAfter is WriteBatch on one of the store's writing connections
// (waiting for a free one): the rows and header go in, then prev (when
// not nil) must return nil before the transaction commits; otherwise it
// is rolled back. Up to Writers batches are written at once, and each
// commits after the batch before it (prev).
func (s *Store) WriteBatchAfter(ctx context.Context, b *accesslog.Batch, prev func(context.Context) error) error {
	if s.ro {
		return errors.New("duckstore: opened read-only")
	}
	w, err := s.take(ctx)
	if err != nil {
		return err
	}
	defer func() { s.free <- w }()
	var n int
	if err := w.conn.QueryRowContext(ctx, "SELECT count(*) FROM batches WHERE seq = ?", b.Seq).Scan(&n); err != nil {
		return fmt.Errorf("duckdb: checking batch %d: %w", b.Seq, err)
	}
	if n > 0 {
		// Stored already (a replay): nothing to commit, but the order
		// still holds for the caller.
		if prev != nil {
			return prev(ctx)
		}
		return nil
	}
	restore, err := s.writeThreadsOn(ctx, w.conn)
	if err != nil {
		return err
	}
	defer restore()
	if _, err := w.conn.ExecContext(ctx, "BEGIN TRANSACTION"); err != nil {
		return fmt.Errorf("duckdb: begin batch %d: %w", b.Seq, err)
	}
	rb, err := newRowBatch(b)
	if err == nil {
		w.rows.Store(rb)
		_, err = w.conn.ExecContext(ctx, rb.plan.insertSQL(w.fn), rb.plan.vals...)
		w.rows.Store(nil)
	}
	if err == nil {
		err = insertHeader(ctx, w.conn, &b.BatchHeader)
	}
	if err == nil && prev != nil {
		if err = prev(ctx); err != nil {
			_, rerr := w.conn.ExecContext(context.WithoutCancel(ctx), "ROLLBACK")
			return errors.Join(err, rerr)
		}
	}
	if err == nil {
		_, err = w.conn.ExecContext(ctx, "COMMIT")
	}
	if err != nil {
		_, rerr := w.conn.ExecContext(context.WithoutCancel(ctx), "ROLLBACK")
		return errors.Join(fmt.Errorf("duckdb: writing batch %d (%d rows): %w", b.Seq, b.Len(), err), rerr)
	}
	return nil
}

// Head returns the last batch header of a writer.
func (s *Store) Head(ctx context.Context, writer uint32) (accesslog.BatchHeader, error) {
	hs, err := s.headers(ctx, "WHERE seq >= ? AND seq < ? ORDER BY seq DESC LIMIT 1", accesslog.SeqOf(writer, 0), accesslog.SeqOf(writer+1, 0))
	if err != nil || len(hs) == 0 {
		return accesslog.BatchHeader{}, err
	}
	return hs[0], nil
}

// Headers returns headers from seq on.
func (s *Store) Headers(ctx context.Context, from uint64) ([]accesslog.BatchHeader, error) {
	return s.headers(ctx, "WHERE seq >= ? ORDER BY seq", from)
}

func (s *Store) headers(ctx context.Context, tail string, args ...any) ([]accesslog.BatchHeader, error) {
	rows, err := s.db.QueryContext(ctx, "SELECT "+s.headerCols+" FROM batches "+tail, args...)
	if err != nil {
		return nil, fmt.Errorf("duckdb: reading batch headers: %w", err)
	}
	defer rows.Close()
	var out []accesslog.BatchHeader
	for rows.Next() {
		var h accesslog.BatchHeader
		var minT, maxT sql.NullTime
		if err := rows.Scan(&h.Seq, &h.SpoolSeq, &h.Count, &minT, &maxT, &h.PrevHash, &h.Hash, &h.Pruned, &h.KeyID, &h.PruneTo); err != nil {
			return nil, fmt.Errorf("duckdb: reading batch headers: %w", err)
		}
		h.MinTime, h.MaxTime = minT.Time.UTC(), maxT.Time.UTC()
		out = append(out, h)
	}
	return out, rows.Err()
}

// BatchRecords returns one batch's records in index order.
func (s *Store) BatchRecords(ctx context.Context, seq uint64) ([]accesslog.Record, error) {
	var out []accesslog.Record
	err := s.scan(ctx, "SELECT "+sqlq.Columns("time")+" FROM logs WHERE batch = ? ORDER BY idx", []any{seq}, func(r *accesslog.Record) error {
		out = append(out, *r)
		return nil
	})
	return out, err
}

func (s *Store) scan(ctx context.Context, q string, args []any, fn func(*accesslog.Record) error) error {
	rows, err := s.db.QueryContext(ctx, q, args...)
	if err != nil {
		return fmt.Errorf("duckdb query: %w", err)
	}
	defer rows.Close()
	var r accesslog.Record
	var t time.Time
	targets := sqlq.ScanTargets(&r, &t)
	for rows.Next() {
		if err := rows.Scan(targets...); err != nil {
			return fmt.Errorf("duckdb scan: %w", err)
		}
		r.Time = t.UTC()
		if err := fn(&r); err != nil {
			return err
		}
	}
	return rows.Err()
}

const order = " ORDER BY time DESC, batch DESC, idx DESC"

// Query returns matching records, newest first.
func (s *Store) Query(ctx context.Context, f accesslog.Filter) ([]accesslog.Record, error) {
	out := make([]accesslog.Record, 0, min(f.Limit, 1024))
	err := s.Export(ctx, f, func(r *accesslog.Record) error {
		out = append(out, *r)
		return nil
	})
	return out, err
}

// Export streams matching records, newest first. With a limit it walks
// back from Until in widening time windows (1h, then 1 day, then the
// rest), so a
// newest-first page reads only the recent row groups (DuckDB skips the
// others by their min/max time).
func (s *Store) Export(ctx context.Context, f accesslog.Filter, fn func(*accesslog.Record) error) error {
	if f.Limit <= 0 || f.Since.IsZero() || f.Until.IsZero() {
		return s.export(ctx, f, fn)
	}
	left := f.Limit
	hi := f.Until
	if f.After != nil {
		if c := time.UnixMilli(f.After.TimeMS + 1).UTC(); c.Before(hi) {
			hi = c
		}
	}
	for _, w := range []time.Duration{time.Hour, 24 * time.Hour, 0} {
		if left <= 0 || !hi.After(f.Since) {
			break
		}
		lo := hi.Add(-w)
		if w == 0 || lo.Before(f.Since) {
			lo = f.Since
		}
		win := f
		win.Since, win.Until, win.Limit = lo, hi, left
		if err := s.export(ctx, win, func(r *accesslog.Record) error {
			left--
			return fn(r)
		}); err != nil {
			return err
		}
		hi = lo
	}
	return nil
}

func (s *Store) export(ctx context.Context, f accesslog.Filter, fn func(*accesslog.Record) error) error {
	if !s.hashed || (f.ClientIP == "" && f.Subject == "" && f.RequestID == "") {
		where, args := s.where(f)
		return s.scan(ctx, s.selectSQL(where, f.Limit), args, fn)
	}
	// Point lookups: DuckDB still decompresses a string column it filters
	// on (150 ms over 10M rows) even when the hash filter left nothing, so
	// SQL filters by hash only and the exact comparison happens here. A
	// hash collision can drop rows from a page; the loop then reads on.
	exact := func(r *accesslog.Record) bool {
		return (f.ClientIP == "" || r.ClientIP == f.ClientIP) && (f.Subject == "" || r.Subject == f.Subject) &&
			(f.RequestID == "" || r.RequestID == f.RequestID)
	}
	loose := f
	loose.ClientIP, loose.Subject, loose.RequestID = "", "", ""
	where, args := sqlq.Where(dialect, loose)
	where, args = s.hashConds(f, where, args)
	if f.Limit <= 0 {
		return s.scan(ctx, s.selectSQL(where, 0), args, func(r *accesslog.Record) error {
			if !exact(r) {
				return nil
			}
			return fn(r)
		})
	}
	left := f.Limit
	for round := 0; left > 0 && round < 100; round++ {
		asked, seen := left, 0
		var last accesslog.Record
		err := s.scan(ctx, s.selectSQL(where, asked), args, func(r *accesslog.Record) error {
			seen++
			last = *r
			if !exact(r) {
				return nil
			}
			left--
			return fn(r)
		})
		if err != nil || left == 0 || seen < asked {
			return err // done, or no more rows
		}
		// Some rows were hash collisions: read on after the last row seen.
		c := accesslog.CursorOf(&last)
		loose.After = &c
		where, args = sqlq.Where(dialect, loose)
		where, args = s.hashConds(f, where, args)
	}
	return nil
}

func (s *Store) selectSQL(where string, limit int) string {
	q := "SELECT " + sqlq.Columns("time") + " FROM logs WHERE " + where + order
	if limit > 0 {
		q += fmt.Sprintf(" LIMIT %d", limit)
	}
	return q
}

// where is the filter plus the lookup-hash conditions of its point filters.
func (s *Store) where(f accesslog.Filter) (string, []any) {
	where, args := sqlq.Where(dialect, f)
	return s.hashConds(f, where, args)
}

// hashConds prepends the lookup-hash conditions of f's point filters.
func (s *Store) hashConds(f accesslog.Filter, where string, args []any) (string, []any) {
	if !s.hashed {
		return where, args
	}
	for _, p := range []struct{ col, v string }{{"client_ip_h", f.ClientIP}, {"subject_h", f.Subject}, {"request_id_h", f.RequestID}} {
		if p.v != "" {
			where = p.col + " = ? AND " + where
			args = append([]any{lookupHash(p.v)}, args...)
		}
	}
	return where, args
}

// quantileExpr computes the p50 and p99 of duration_us in phase 2 of
// Stats.
var quantileExpr = "coalesce(reservoir_quantile(duration_us, 0.5, 16384), 0), coalesce(reservoir_quantile(duration_us, 0.99, 16384), 0)"

// Stats groups matching records in two steps: counts for every group
// (cheap), then p50/p99 only for the top groups (quantile state per group
// is what makes a high-cardinality GROUP BY slow). The quantiles come
// from a 16,384-value reservoir sample per group: exact for smaller
// groups, an estimate for larger ones.
func (s *Store) Stats(ctx context.Context, q accesslog.StatsQuery) ([]accesslog.Group, error) {
	col, err := groupCol(q.GroupBy)
	if err != nil {
		return nil, err
	}
	where, args := s.where(q.Filter)
	key := "CAST(" + col + " AS VARCHAR)"
	rows, err := s.db.QueryContext(ctx, "SELECT "+key+" AS k, count(*) AS n, count(*) FILTER (WHERE denied) AS d FROM logs WHERE "+where+
		" GROUP BY k ORDER BY n DESC, k LIMIT "+fmt.Sprint(max(q.Limit, 1)), args...)
	if err != nil {
		return nil, fmt.Errorf("duckdb stats: %w", err)
	}
	var out []accesslog.Group
	idx := map[string]int{}
	for rows.Next() {
		var g accesslog.Group
		var k sql.NullString
		if err := rows.Scan(&k, &g.Count, &g.Denied); err != nil {
			rows.Close()
			return nil, fmt.Errorf("duckdb stats: %w", err)
		}
		g.Key = k.String
		idx[g.Key] = len(out)
		out = append(out, g)
	}
	rows.Close()
	if err := rows.Err(); err != nil || len(out) == 0 {
		return out, err
	}
	ph := make([]string, len(out))
	qargs := append([]any{}, args...)
	for i, g := range out {
		ph[i] = "?"
		qargs = append(qargs, g.Key)
	}
	rows, err = s.db.QueryContext(ctx, "SELECT "+key+" AS k, "+quantileExpr+" FROM logs WHERE "+where+" AND "+key+
		" IN ("+strings.Join(ph, ", ")+") GROUP BY k", qargs...)
	if err != nil {
		return nil, fmt.Errorf("duckdb stats quantiles: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var k sql.NullString
		var p50, p99 float64
		if err := rows.Scan(&k, &p50, &p99); err != nil {
			return nil, fmt.Errorf("duckdb stats quantiles: %w", err)
		}
		if i, ok := idx[k.String]; ok {
			out[i].P50MS, out[i].P99MS = p50/1000, p99/1000
		}
	}
	return out, rows.Err()
}

func groupCol(g string) (string, error) {
	for _, c := range accesslog.GroupByColumns {
		if c == g {
			return c, nil
		}
	}
	return "", fmt.Errorf("group_by: %q is not one of %s", g, strings.Join(accesslog.GroupByColumns, ", "))
}

// Histogram counts requests, denials and rate-limited requests (429)
// per bucket.
func (s *Store) Histogram(ctx context.Context, f accesslog.Filter, bucket time.Duration) ([]accesslog.Bucket, error) {
	where, args := s.where(f)
	ms := bucket.Milliseconds()
	if ms <= 0 {
		return nil, fmt.Errorf("histogram: bucket %s is too small", bucket)
	}
	q := fmt.Sprintf("SELECT (epoch_ms(time) // %d) * %d AS b, count(*), count(*) FILTER (WHERE denied), count(*) FILTER (WHERE status = 429) FROM logs WHERE %s GROUP BY b ORDER BY b", ms, ms, where)
	rows, err := s.db.QueryContext(ctx, q, args...)
	if err != nil {
		return nil, fmt.Errorf("duckdb histogram: %w", err)
	}
	defer rows.Close()
	var out []accesslog.Bucket
	for rows.Next() {
		var b accesslog.Bucket
		var start int64
		if err := rows.Scan(&start, &b.Count, &b.Denied, &b.Limited); err != nil {
			return nil, fmt.Errorf("duckdb histogram: %w", err)
		}
		b.Start = time.UnixMilli(start).UTC()
		out = append(out, b)
	}
	return out, rows.Err()
}

func insertHeader(ctx context.Context, conn *sql.Conn, h *accesslog.BatchHeader) error {
	_, err := conn.ExecContext(ctx, `INSERT INTO batches (seq, spool_seq, count, min_time, max_time, prev_hash, hash, pruned, key_id, prune_to)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`, h.Seq, h.SpoolSeq, h.Count, h.MinTime.UTC(), h.MaxTime.UTC(), h.PrevHash, h.Hash, h.Pruned, h.KeyID, h.PruneTo)
	return err
}

// Prune deletes the rows of the writer's batches up to rec.PruneTo,
// flags them pruned and stores the prune record, in one transaction.
func (s *Store) Prune(ctx context.Context, rec *accesslog.BatchHeader) (int64, error) {
	if s.ro {
		return 0, errors.New("duckstore: opened read-only")
	}
	if rec.PruneTo == 0 || accesslog.WriterOf(rec.PruneTo) != accesslog.WriterOf(rec.Seq) {
		return 0, fmt.Errorf("duckstore: batch %d is not a prune record of its writer", rec.Seq)
	}
	from := accesslog.SeqOf(accesslog.WriterOf(rec.Seq), 0)
	w, err := s.take(ctx)
	if err != nil {
		return 0, err
	}
	defer func() { s.free <- w }()
	conn := w.conn
	if _, err := conn.ExecContext(ctx, "BEGIN TRANSACTION"); err != nil {
		return 0, fmt.Errorf("duckdb retention: %w", err)
	}
	var n int64
	res, err := conn.ExecContext(ctx, "DELETE FROM logs WHERE batch IN (SELECT seq FROM batches WHERE seq > ? AND seq <= ? AND NOT pruned AND prune_to = 0)", from, rec.PruneTo)
	if err == nil {
		n, _ = res.RowsAffected()
		_, err = conn.ExecContext(ctx, "UPDATE batches SET pruned = true WHERE seq > ? AND seq <= ? AND NOT pruned AND prune_to = 0", from, rec.PruneTo)
	}
	var exists int
	if err == nil {
		err = conn.QueryRowContext(ctx, "SELECT count(*) FROM batches WHERE seq = ?", rec.Seq).Scan(&exists)
	}
	if err == nil && exists == 0 {
		err = insertHeader(ctx, conn, rec)
	}
	if err == nil {
		_, err = conn.ExecContext(ctx, "COMMIT")
	}
	if err != nil {
		_, rerr := conn.ExecContext(context.WithoutCancel(ctx), "ROLLBACK")
		return 0, errors.Join(fmt.Errorf("duckdb retention up to batch %d: %w", rec.PruneTo, err), rerr)
	}
	return n, nil
}
