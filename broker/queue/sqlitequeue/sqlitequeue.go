// Package sqlitequeue is the embedded durable queue: messages in a SQLite
// file (modernc.org/sqlite), hidden by a visibility deadline while a worker
// holds them, with a dead-letter table. Several processes may share the
// file. It must not import the broker's store, api or worker packages.
package sqlitequeue

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"errors"
	"fmt"
	"net/url"
	"time"

	_ "modernc.org/sqlite" // database/sql driver "sqlite"

	"github.com/gatehouse-edge/gatehouse/broker/queue"
)

const schema = `
CREATE TABLE IF NOT EXISTS messages (
	id INTEGER PRIMARY KEY AUTOINCREMENT,
	body BLOB NOT NULL,
	visible_at INTEGER NOT NULL,
	attempts INTEGER NOT NULL DEFAULT 0,
	receipt TEXT NOT NULL DEFAULT '',
	created_at INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS messages_visible ON messages(visible_at);
CREATE TABLE IF NOT EXISTS dead_letters (
	id INTEGER PRIMARY KEY,
	body BLOB NOT NULL,
	attempts INTEGER NOT NULL,
	reason TEXT NOT NULL,
	created_at INTEGER NOT NULL,
	dead_at INTEGER NOT NULL
);
`

// Options tune the queue.
type Options struct {
	// Visibility is how long a received message stays hidden (default 30s).
	Visibility time.Duration
	// Poll is how often an empty long poll looks again (default 25ms).
	Poll time.Duration
}

// Queue is the SQLite queue.
type Queue struct {
	db     *sql.DB
	path   string
	opts   Options
	notify chan struct{} // wakes long polls in this process on Send
}

var _ queue.Queue = (*Queue)(nil)

// Open opens (creating if needed) the queue at path.
func Open(ctx context.Context, path string, opts Options) (*Queue, error) {
	if opts.Visibility <= 0 {
		opts.Visibility = 30 * time.Second
	}
	if opts.Poll <= 0 {
		opts.Poll = 25 * time.Millisecond
	}
	v := url.Values{}
	v.Add("_pragma", "busy_timeout(10000)")
	v.Add("_pragma", "journal_mode(WAL)")
	v.Add("_pragma", "synchronous(NORMAL)")
	v.Set("_txlock", "immediate")
	db, err := sql.Open("sqlite", "file:"+path+"?"+v.Encode())
	if err != nil {
		return nil, fmt.Errorf("sqlite queue %s: %w", path, err)
	}
	db.SetMaxOpenConns(1)
	if _, err := db.ExecContext(ctx, schema); err != nil {
		db.Close()
		return nil, fmt.Errorf("sqlite queue %s: creating schema: %w", path, err)
	}
	return &Queue{db: db, path: path, opts: opts, notify: make(chan struct{}, 1)}, nil
}

// Close closes the database.
func (q *Queue) Close() error { return q.db.Close() }

func (q *Queue) fail(what string, err error) error {
	return fmt.Errorf("sqlite queue %s: %s: %w: %w", q.path, what, queue.ErrUnavailable, err)
}

// Send appends a message, visible at once.
func (q *Queue) Send(ctx context.Context, body []byte) error {
	now := time.Now().UnixNano()
	if _, err := q.db.ExecContext(ctx, `INSERT INTO messages (body, visible_at, created_at) VALUES (?, ?, ?)`, body, now, now); err != nil {
		return q.fail("send", err)
	}
	select {
	case q.notify <- struct{}{}:
	default:
	}
	return nil
}

func newReceipt() string {
	var b [12]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

func (q *Queue) take(ctx context.Context, max int) ([]queue.Message, error) {
	now := time.Now()
	// An empty poll stays a read: no write transaction unless there is
	// something to take.
	var one int
	err := q.db.QueryRowContext(ctx, `SELECT 1 FROM messages WHERE visible_at <= ? LIMIT 1`, now.UnixNano()).Scan(&one)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, nil
	}
	if err != nil {
		return nil, q.fail("receive", err)
	}
	tx, err := q.db.BeginTx(ctx, nil)
	if err != nil {
		return nil, q.fail("receive", err)
	}
	defer tx.Rollback()
	rows, err := tx.QueryContext(ctx, `SELECT id, body, attempts FROM messages WHERE visible_at <= ? ORDER BY visible_at, id LIMIT ?`, now.UnixNano(), max)
	if err != nil {
		return nil, q.fail("receive", err)
	}
	var out []queue.Message
	for rows.Next() {
		var m queue.Message
		var id int64
		if err := rows.Scan(&id, &m.Body, &m.Attempts); err != nil {
			rows.Close()
			return nil, q.fail("receive", err)
		}
		m.ID = fmt.Sprint(id)
		m.Attempts++
		m.Receipt = m.ID + "." + newReceipt()
		out = append(out, m)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, q.fail("receive", err)
	}
	hide := now.Add(q.opts.Visibility).UnixNano()
	for _, m := range out {
		if _, err := tx.ExecContext(ctx, `UPDATE messages SET visible_at = ?, attempts = ?, receipt = ? WHERE id = ?`, hide, m.Attempts, m.Receipt, m.ID); err != nil {
			return nil, q.fail("receive", err)
		}
	}
	if err := tx.Commit(); err != nil {
		return nil, q.fail("receive", err)
	}
	return out, nil
}

// Receive long-polls for up to wait.
func (q *Queue) Receive(ctx context.Context, max int, wait time.Duration) ([]queue.Message, error) {
	if max <= 0 {
		max = 1
	}
	deadline := time.NewTimer(wait)
	defer deadline.Stop()
	tick := time.NewTicker(q.opts.Poll)
	defer tick.Stop()
	for {
		ms, err := q.take(ctx, max)
		if err != nil || len(ms) > 0 {
			return ms, err
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-deadline.C:
			return nil, nil
		case <-q.notify:
		case <-tick.C:
		}
	}
}

func (q *Queue) setVisible(ctx context.Context, m queue.Message, at time.Time, what string) error {
	res, err := q.db.ExecContext(ctx, `UPDATE messages SET visible_at = ? WHERE id = ? AND receipt = ?`, at.UnixNano(), m.ID, m.Receipt)
	if err != nil {
		return q.fail(what, err)
	}
	if n, _ := res.RowsAffected(); n != 1 {
		return fmt.Errorf("sqlite queue %s: %s message %s: the receipt is stale (the message was redelivered or deleted)", q.path, what, m.ID)
	}
	return nil
}

// Extend hides m for d from now.
func (q *Queue) Extend(ctx context.Context, m queue.Message, d time.Duration) error {
	return q.setVisible(ctx, m, time.Now().Add(d), "extend")
}

// Release makes m visible after delay.
func (q *Queue) Release(ctx context.Context, m queue.Message, delay time.Duration) error {
	return q.setVisible(ctx, m, time.Now().Add(delay), "release")
}

// Delete acknowledges messages in one transaction. A stale receipt is
// skipped: that delivery no longer owns the message.
func (q *Queue) Delete(ctx context.Context, ms ...queue.Message) error {
	if len(ms) == 0 {
		return nil
	}
	tx, err := q.db.BeginTx(ctx, nil)
	if err != nil {
		return q.fail("delete", err)
	}
	defer tx.Rollback()
	for _, m := range ms {
		if _, err := tx.ExecContext(ctx, `DELETE FROM messages WHERE id = ? AND receipt = ?`, m.ID, m.Receipt); err != nil {
			return q.fail("delete", err)
		}
	}
	if err := tx.Commit(); err != nil {
		return q.fail("delete", err)
	}
	return nil
}

// DeadLetter moves m to the dead_letters table.
func (q *Queue) DeadLetter(ctx context.Context, m queue.Message, reason string) error {
	tx, err := q.db.BeginTx(ctx, nil)
	if err != nil {
		return q.fail("dead-letter", err)
	}
	defer tx.Rollback()
	res, err := tx.ExecContext(ctx, `INSERT INTO dead_letters (id, body, attempts, reason, created_at, dead_at)
		SELECT id, body, attempts, ?, created_at, ? FROM messages WHERE id = ? AND receipt = ?`, reason, time.Now().UnixNano(), m.ID, m.Receipt)
	if err != nil {
		return q.fail("dead-letter", err)
	}
	if n, _ := res.RowsAffected(); n != 1 {
		return fmt.Errorf("sqlite queue %s: dead-letter message %s: the receipt is stale", q.path, m.ID)
	}
	if _, err := tx.ExecContext(ctx, `DELETE FROM messages WHERE id = ?`, m.ID); err != nil {
		return q.fail("dead-letter", err)
	}
	if err := tx.Commit(); err != nil {
		return q.fail("dead-letter", err)
	}
	return nil
}

// DeadLetters lists dead-lettered bodies and reasons (for operators and
// tests), oldest first, at most limit.
func (q *Queue) DeadLetters(ctx context.Context, limit int) ([]DeadLetter, error) {
	rows, err := q.db.QueryContext(ctx, `SELECT body, attempts, reason FROM dead_letters ORDER BY dead_at LIMIT ?`, limit)
	if err != nil {
		return nil, q.fail("list dead letters", err)
	}
	defer rows.Close()
	var out []DeadLetter
	for rows.Next() {
		var d DeadLetter
		if err := rows.Scan(&d.Body, &d.Attempts, &d.Reason); err != nil {
			return nil, q.fail("list dead letters", err)
		}
		out = append(out, d)
	}
	return out, rows.Err()
}

// DeadLetter is one message given up on.
type DeadLetter struct {
	Body     []byte
	Attempts int
	Reason   string
}

// Len counts messages still queued (visible or not).
func (q *Queue) Len(ctx context.Context) (int, error) {
	var n int
	if err := q.db.QueryRowContext(ctx, `SELECT count(*) FROM messages`).Scan(&n); err != nil {
		return 0, q.fail("count", err)
	}
	return n, nil
}
