// Package chstore is the scale-out access-log store: a ClickHouse database
// that every accesslog sidecar writes to over the native protocol
// (clickhouse-go/v2). The schema works on ClickHouse 18.16 (Debian 12's
// package): DateTime plus a millisecond column, PARTITION BY toDate(time),
// explicit INSERT column lists, retention by dropping partitions, batch
// headers in a ReplacingMergeTree. Newer servers (20.1+) get
// LowCardinality columns, decided by a server-version check. It implements
// accesslog.Store and must not import the sidecars or cmd/.
package chstore

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2"
	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"

	"github.com/gatehouse-edge/gatehouse/accesslog"
	"github.com/gatehouse-edge/gatehouse/accesslog/internal/sqlq"
)

// Config opens a store.
type Config struct {
	Addr     string // host:port of the native protocol
	Database string
	Username string
	Password string // never logged
	Log      *slog.Logger
}

// Store is a ClickHouse-backed accesslog.Store.
type Store struct {
	conn    driver.Conn
	log     *slog.Logger
	mu      sync.Mutex
	version string
}

var dialect = sqlq.Dialect{
	TimeMS: "(toUInt64(time) * 1000 + ms)",
	TimeRange: func(since, until time.Time) (string, []any) {
		// The seconds condition uses the partition key and primary key;
		// the millisecond one makes the bounds exact.
		return "time >= toDateTime(?) AND time <= toDateTime(?) AND (toUInt64(time) * 1000 + ms) >= ? AND (toUInt64(time) * 1000 + ms) < ?",
			[]any{since.Unix(), until.Unix(), since.UnixMilli(), until.UnixMilli()}
	},
}

// lowCard are the columns that become LowCardinality(String) on servers
// that have it.
var lowCard = map[string]bool{"kind": true, "log_type": true, "node": true, "node_group": true, "route": true,
	"authority": true, "method": true, "response_flags": true, "tls_version": true, "upstream_cluster": true,
	"provider": true, "auth_kind": true, "rule": true, "decision": true}

func logsDDL(modern bool) string {
	cols := []string{"time DateTime", "ms UInt16"}
	for _, c := range accesslog.Columns[1:] {
		typ := "String"
		switch c {
		case "status", "client_port":
			typ = "UInt32"
		case "duration_us":
			typ = "Int64"
		case "bytes_in", "bytes_out":
			typ = "UInt64"
		default:
			if modern && lowCard[c] {
				typ = "LowCardinality(String)"
			}
		}
		cols = append(cols, c+" "+typ)
	}
	cols = append(cols, "denied UInt8", "batch UInt64", "idx UInt32")
	return "CREATE TABLE IF NOT EXISTS logs (" + strings.Join(cols, ", ") +
		") ENGINE = MergeTree PARTITION BY toDate(time) ORDER BY (time, batch, idx)"
}

const batchesDDL = `CREATE TABLE IF NOT EXISTS batches (seq UInt64, spool_seq UInt64, count UInt32,
	min_time DateTime, min_ms UInt16, max_time DateTime, max_ms UInt16, prev_hash String, hash String,
	pruned UInt8, ver UInt64, key_id String, prune_to UInt64) ENGINE = ReplacingMergeTree(ver) ORDER BY seq`

// addedColumns are the columns added after the first schema (the keyed
// chain's batches columns, the logs' config_version); a table created
// before them gets them on Open.
var addedColumns = []struct{ table, name, typ string }{
	{"batches", "key_id", "String"}, {"batches", "prune_to", "UInt64"},
	{"logs", "config_version", "String"},
}

var insertLogs = "INSERT INTO logs (time, ms, " + strings.Join(accesslog.Columns[1:], ", ") + ", denied, batch, idx)"

const insertBatches = "INSERT INTO batches (seq, spool_seq, count, min_time, min_ms, max_time, max_ms, prev_hash, hash, pruned, ver, key_id, prune_to)"

// Open connects, creates the database and tables if needed.
func Open(ctx context.Context, cfg Config) (*Store, error) {
	if cfg.Addr == "" || cfg.Database == "" {
		return nil, errors.New("chstore: needs an address and a database")
	}
	if cfg.Username == "" {
		cfg.Username = "default"
	}
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	where := "clickhouse " + cfg.Addr + "/" + cfg.Database
	boot, err := clickhouse.Open(&clickhouse.Options{
		Addr: []string{cfg.Addr}, Protocol: clickhouse.Native,
		Auth:        clickhouse.Auth{Database: "default", Username: cfg.Username, Password: cfg.Password},
		DialTimeout: 5 * time.Second,
	})
	if err != nil {
		return nil, fmt.Errorf("%s: %w", where, err)
	}
	if err := boot.Exec(ctx, "CREATE DATABASE IF NOT EXISTS "+quoteIdent(cfg.Database)); err != nil {
		boot.Close()
		return nil, fmt.Errorf("%s: creating database: %w", where, err)
	}
	boot.Close()
	conn, err := clickhouse.Open(&clickhouse.Options{
		Addr: []string{cfg.Addr}, Protocol: clickhouse.Native,
		Auth:         clickhouse.Auth{Database: cfg.Database, Username: cfg.Username, Password: cfg.Password},
		DialTimeout:  5 * time.Second,
		MaxOpenConns: 8,
	})
	if err != nil {
		return nil, fmt.Errorf("%s: %w", where, err)
	}
	s := &Store{conn: conn, log: cfg.Log}
	if err := conn.QueryRow(ctx, "SELECT version()").Scan(&s.version); err != nil {
		conn.Close()
		return nil, fmt.Errorf("%s: reading server version: %w", where, err)
	}
	modern := major(s.version) >= 20
	for _, ddl := range []string{logsDDL(modern), batchesDDL} {
		if err := conn.Exec(ctx, ddl); err != nil {
			conn.Close()
			return nil, fmt.Errorf("%s: creating schema (server %s): %w", where, s.version, err)
		}
	}
	for _, c := range addedColumns {
		var n uint64
		if err := conn.QueryRow(ctx, "SELECT count() FROM system.columns WHERE database = currentDatabase() AND table = ? AND name = ?", c.table, c.name).Scan(&n); err != nil {
			conn.Close()
			return nil, fmt.Errorf("%s: reading the %s schema: %w", where, c.table, err)
		}
		if n == 0 {
			if err := conn.Exec(ctx, "ALTER TABLE "+c.table+" ADD COLUMN "+c.name+" "+c.typ); err != nil {
				conn.Close()
				return nil, fmt.Errorf("%s: adding %s.%s: %w", where, c.table, c.name, err)
			}
		}
	}
	cfg.Log.Info("clickhouse store open", "addr", cfg.Addr, "database", cfg.Database, "server_version", s.version, "modern_schema", modern)
	return s, nil
}

func major(v string) int {
	m, _, _ := strings.Cut(v, ".")
	n, _ := strconv.Atoi(m)
	return n
}

func quoteIdent(s string) string { return "`" + strings.ReplaceAll(s, "`", "") + "`" }

// Version is the server version.
func (s *Store) Version() string { return s.version }

// Close closes the connections.
func (s *Store) Close() error { return s.conn.Close() }

// WriteBatch inserts the rows, then the header. ClickHouse has no
// transactions: rows left by a failed attempt (no header) are deleted
// before the retry, and a batch whose header exists is skipped.
func (s *Store) WriteBatch(ctx context.Context, b *accesslog.Batch) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	var n uint64
	if err := s.conn.QueryRow(ctx, "SELECT count() FROM batches WHERE seq = ?", b.Seq).Scan(&n); err != nil {
		return fmt.Errorf("clickhouse: checking batch %d: %w", b.Seq, err)
	}
	if n > 0 {
		return nil
	}
	if err := s.conn.QueryRow(ctx, "SELECT count() FROM logs WHERE batch = ?", b.Seq).Scan(&n); err != nil {
		return fmt.Errorf("clickhouse: checking batch %d: %w", b.Seq, err)
	}
	if n > 0 {
		// A mutation applies to the parts that exist now, not to the rows
		// inserted next.
		if err := s.conn.Exec(ctx, "ALTER TABLE logs DELETE WHERE batch = ?", b.Seq); err != nil {
			return fmt.Errorf("clickhouse: removing %d rows of an unfinished batch %d: %w", n, b.Seq, err)
		}
	}
	batch, err := s.conn.PrepareBatch(ctx, insertLogs)
	if err != nil {
		return fmt.Errorf("clickhouse: preparing batch %d: %w", b.Seq, err)
	}
	for i := range b.Records {
		r := &b.Records[i]
		vals := sqlq.Values(r, r.Time.Truncate(time.Second))
		denied := uint8(0)
		if r.Denied() {
			denied = 1
		}
		// time, ms, the other columns, denied, batch, idx
		row := make([]any, 0, len(vals)+1)
		row = append(row, vals[0], uint16(r.Time.Nanosecond()/1e6))
		row = append(row, vals[1:len(vals)-3]...)
		row = append(row, denied, r.Batch, r.Index)
		if err := batch.Append(row...); err != nil {
			_ = batch.Abort()
			return fmt.Errorf("clickhouse: batch %d row %d: %w", b.Seq, i, err)
		}
	}
	if err := batch.Send(); err != nil {
		return fmt.Errorf("clickhouse: inserting batch %d (%d rows): %w", b.Seq, len(b.Records), err)
	}
	return s.insertHeader(ctx, b.BatchHeader)
}

func (s *Store) insertHeader(ctx context.Context, h accesslog.BatchHeader) error {
	hb, err := s.conn.PrepareBatch(ctx, insertBatches)
	if err != nil {
		return fmt.Errorf("clickhouse: header of batch %d: %w", h.Seq, err)
	}
	pruned := uint8(0)
	if h.Pruned {
		pruned = 1
	}
	if err := hb.Append(h.Seq, h.SpoolSeq, h.Count, h.MinTime.Truncate(time.Second), uint16(h.MinTime.Nanosecond()/1e6),
		h.MaxTime.Truncate(time.Second), uint16(h.MaxTime.Nanosecond()/1e6), h.PrevHash, h.Hash, pruned, uint64(time.Now().UnixNano()), h.KeyID, h.PruneTo); err != nil {
		_ = hb.Abort()
		return fmt.Errorf("clickhouse: header of batch %d: %w", h.Seq, err)
	}
	if err := hb.Send(); err != nil {
		return fmt.Errorf("clickhouse: header of batch %d: %w", h.Seq, err)
	}
	return nil
}

// Head returns the last header of a writer.
func (s *Store) Head(ctx context.Context, writer uint32) (accesslog.BatchHeader, error) {
	hs, err := s.headers(ctx, "WHERE seq >= ? AND seq < ? ORDER BY seq DESC LIMIT 1", accesslog.SeqOf(writer, 0), accesslog.SeqOf(writer+1, 0))
	if err != nil || len(hs) == 0 {
		return accesslog.BatchHeader{}, err
	}
	return hs[0], nil
}

// Headers returns the headers from seq on.
func (s *Store) Headers(ctx context.Context, from uint64) ([]accesslog.BatchHeader, error) {
	return s.headers(ctx, "WHERE seq >= ? ORDER BY seq", from)
}

func (s *Store) headers(ctx context.Context, tail string, args ...any) ([]accesslog.BatchHeader, error) {
	rows, err := s.conn.Query(ctx, "SELECT seq, spool_seq, count, min_time, min_ms, max_time, max_ms, prev_hash, hash, pruned, key_id, prune_to FROM batches FINAL "+tail, args...)
	if err != nil {
		return nil, fmt.Errorf("clickhouse: reading batch headers: %w", err)
	}
	defer rows.Close()
	var out []accesslog.BatchHeader
	for rows.Next() {
		var h accesslog.BatchHeader
		var minMS, maxMS uint16
		var pruned uint8
		if err := rows.Scan(&h.Seq, &h.SpoolSeq, &h.Count, &h.MinTime, &minMS, &h.MaxTime, &maxMS, &h.PrevHash, &h.Hash, &pruned, &h.KeyID, &h.PruneTo); err != nil {
			return nil, fmt.Errorf("clickhouse: reading batch headers: %w", err)
		}
		h.MinTime = h.MinTime.UTC().Add(time.Duration(minMS) * time.Millisecond)
		h.MaxTime = h.MaxTime.UTC().Add(time.Duration(maxMS) * time.Millisecond)
		h.Pruned = pruned == 1
		out = append(out, h)
	}
	return out, rows.Err()
}

var selectCols = "time, ms, " + strings.Join(accesslog.Columns[1:], ", ") + ", batch, idx"

func (s *Store) scan(ctx context.Context, q string, args []any, fn func(*accesslog.Record) error) error {
	rows, err := s.conn.Query(ctx, q, args...)
	if err != nil {
		return fmt.Errorf("clickhouse query: %w", err)
	}
	defer rows.Close()
	var r accesslog.Record
	var t time.Time
	var ms uint16
	targets := sqlq.ScanTargets(&r, &t)
	targets = append([]any{targets[0], &ms}, targets[1:]...)
	for rows.Next() {
		if err := rows.Scan(targets...); err != nil {
			return fmt.Errorf("clickhouse scan: %w", err)
		}
		r.Time = t.UTC().Add(time.Duration(ms) * time.Millisecond)
		if err := fn(&r); err != nil {
			return err
		}
	}
	return rows.Err()
}

// BatchRecords returns one batch's records in index order.
func (s *Store) BatchRecords(ctx context.Context, seq uint64) ([]accesslog.Record, error) {
	var out []accesslog.Record
	err := s.scan(ctx, "SELECT "+selectCols+" FROM logs WHERE batch = ? ORDER BY idx", []any{seq}, func(r *accesslog.Record) error {
		out = append(out, *r)
		return nil
	})
	return out, err
}

// Query returns matching records, newest first.
func (s *Store) Query(ctx context.Context, f accesslog.Filter) ([]accesslog.Record, error) {
	out := make([]accesslog.Record, 0, min(f.Limit, 1024))
	err := s.Export(ctx, f, func(r *accesslog.Record) error {
		out = append(out, *r)
		return nil
	})
	return out, err
}

// Export streams matching records, newest first.
func (s *Store) Export(ctx context.Context, f accesslog.Filter, fn func(*accesslog.Record) error) error {
	where, args := sqlq.Where(dialect, f)
	q := "SELECT " + selectCols + " FROM logs WHERE " + where + " ORDER BY time DESC, ms DESC, batch DESC, idx DESC"
	if f.Limit > 0 {
		q += fmt.Sprintf(" LIMIT %d", f.Limit)
	}
	return s.scan(ctx, q, args, fn)
}

// Stats groups matching records.
func (s *Store) Stats(ctx context.Context, q accesslog.StatsQuery) ([]accesslog.Group, error) {
	col := ""
	for _, c := range accesslog.GroupByColumns {
		if c == q.GroupBy {
			col = c
		}
	}
	if col == "" {
		return nil, fmt.Errorf("group_by: %q is not one of %s", q.GroupBy, strings.Join(accesslog.GroupByColumns, ", "))
	}
	where, args := sqlq.Where(dialect, q.Filter)
	sqlText := "SELECT toString(" + col + ") AS k, count() AS n, countIf(denied = 1), toInt64(quantileTDigest(0.5)(duration_us)), toInt64(quantileTDigest(0.99)(duration_us)) FROM logs WHERE " +
		where + " GROUP BY k ORDER BY n DESC, k LIMIT " + strconv.Itoa(max(q.Limit, 1))
	rows, err := s.conn.Query(ctx, sqlText, args...)
	if err != nil {
		return nil, fmt.Errorf("clickhouse stats: %w", err)
	}
	defer rows.Close()
	var out []accesslog.Group
	for rows.Next() {
		var g accesslog.Group
		var n, d uint64
		var p50, p99 int64
		if err := rows.Scan(&g.Key, &n, &d, &p50, &p99); err != nil {
			return nil, fmt.Errorf("clickhouse stats: %w", err)
		}
		g.Count, g.Denied, g.P50MS, g.P99MS = int64(n), int64(d), float64(p50)/1000, float64(p99)/1000
		out = append(out, g)
	}
	return out, rows.Err()
}

// Histogram counts requests and denials per bucket.
func (s *Store) Histogram(ctx context.Context, f accesslog.Filter, bucket time.Duration) ([]accesslog.Bucket, error) {
	ms := bucket.Milliseconds()
	if ms <= 0 {
		return nil, fmt.Errorf("histogram: bucket %s is too small", bucket)
	}
	where, args := sqlq.Where(dialect, f)
	q := fmt.Sprintf("SELECT intDiv(toUInt64(time) * 1000 + ms, %d) * %d AS b, count(), countIf(denied = 1), countIf(status = 429) FROM logs WHERE %s GROUP BY b ORDER BY b", ms, ms, where)
	rows, err := s.conn.Query(ctx, q, args...)
	if err != nil {
		return nil, fmt.Errorf("clickhouse histogram: %w", err)
	}
	defer rows.Close()
	var out []accesslog.Bucket
	for rows.Next() {
		var b accesslog.Bucket
		var start, n, d, l uint64
		if err := rows.Scan(&start, &n, &d, &l); err != nil {
			return nil, fmt.Errorf("clickhouse histogram: %w", err)
		}
		b.Start, b.Count, b.Denied, b.Limited = time.UnixMilli(int64(start)).UTC(), int64(n), int64(d), int64(l)
		out = append(out, b)
	}
	return out, rows.Err()
}

// Prune flags the writer's batches up to rec.PruneTo pruned (a newer
// header version), deletes their rows (a mutation) and then stores the
// prune record. ClickHouse has no transactions: a failure before the
// record is stored leaves flagged batches that Verify reports until the
// next retention run stores a record covering them.
func (s *Store) Prune(ctx context.Context, rec *accesslog.BatchHeader) (int64, error) {
	if rec.PruneTo == 0 || accesslog.WriterOf(rec.PruneTo) != accesslog.WriterOf(rec.Seq) {
		return 0, fmt.Errorf("clickhouse: batch %d is not a prune record of its writer", rec.Seq)
	}
	from := accesslog.SeqOf(accesslog.WriterOf(rec.Seq), 0)
	s.mu.Lock()
	defer s.mu.Unlock()
	hs, err := s.headers(ctx, "WHERE seq > ? AND seq <= ? AND pruned = 0 AND prune_to = 0 ORDER BY seq", from, rec.PruneTo)
	if err != nil {
		return 0, fmt.Errorf("clickhouse retention: %w", err)
	}
	var n uint64
	if err := s.conn.QueryRow(ctx, "SELECT count() FROM logs WHERE batch > ? AND batch <= ?", from, rec.PruneTo).Scan(&n); err != nil {
		return 0, fmt.Errorf("clickhouse retention: %w", err)
	}
	for _, h := range hs {
		h.Pruned = true
		if err := s.insertHeader(ctx, h); err != nil {
			return 0, fmt.Errorf("clickhouse retention: %w", err)
		}
	}
	if n > 0 {
		if err := s.conn.Exec(ctx, "ALTER TABLE logs DELETE WHERE batch > ? AND batch <= ?", from, rec.PruneTo); err != nil {
			return 0, fmt.Errorf("clickhouse retention: deleting the rows of batches up to %d: %w", rec.PruneTo, err)
		}
		// The deletion is a mutation that runs in the background: wait for
		// it (bounded), so retention's rows are gone when Prune returns.
		deadline := time.Now().Add(2 * time.Minute)
		for {
			var pending uint64
			if err := s.conn.QueryRow(ctx, "SELECT count() FROM system.mutations WHERE database = currentDatabase() AND table = 'logs' AND is_done = 0").Scan(&pending); err != nil {
				return 0, fmt.Errorf("clickhouse retention: %w", err)
			}
			if pending == 0 {
				break
			}
			if time.Now().After(deadline) {
				s.log.Warn("clickhouse retention: row deletion still running; the rows go when it finishes", "prune_to", rec.PruneTo)
				break
			}
			select {
			case <-ctx.Done():
				return 0, ctx.Err()
			case <-time.After(50 * time.Millisecond):
			}
		}
	}
	var exists uint64
	if err := s.conn.QueryRow(ctx, "SELECT count() FROM batches WHERE seq = ?", rec.Seq).Scan(&exists); err != nil {
		return int64(n), fmt.Errorf("clickhouse retention: %w", err)
	}
	if exists == 0 {
		if err := s.insertHeader(ctx, *rec); err != nil {
			return int64(n), fmt.Errorf("clickhouse retention: %w", err)
		}
	}
	return int64(n), nil
}

// Exec runs a statement (administration and tests).
func (s *Store) Exec(ctx context.Context, stmt string, args ...any) error {
	return s.conn.Exec(ctx, stmt, args...)
}
