// Package sqlitestore is the embedded store backend: one SQLite file
// (modernc.org/sqlite, pure Go) in WAL mode, safe to share between a broker
// and a worker process on one host. Store revisions are assigned inside the
// writing transaction, so the change feed is gap-free and exact. It must
// not import the broker's api, queue or worker packages.
package sqlitestore

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"strings"
	"time"

	_ "modernc.org/sqlite" // database/sql driver "sqlite"

	"github.com/gatehouse-edge/gatehouse/broker/store"
)

const schema = `
CREATE TABLE IF NOT EXISTS instances (
	id TEXT PRIMARY KEY,
	ver INTEGER NOT NULL,
	doc BLOB NOT NULL,
	outbox INTEGER NOT NULL DEFAULT 0,
	op_created INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS bindings (
	instance_id TEXT NOT NULL,
	id TEXT NOT NULL,
	ver INTEGER NOT NULL,
	doc BLOB NOT NULL,
	outbox INTEGER NOT NULL DEFAULT 0,
	op_created INTEGER NOT NULL DEFAULT 0,
	PRIMARY KEY (instance_id, id)
);
CREATE INDEX IF NOT EXISTS instances_inprogress ON instances(outbox, op_created) WHERE outbox > 0;
CREATE INDEX IF NOT EXISTS bindings_inprogress ON bindings(outbox, op_created) WHERE outbox > 0;
CREATE TABLE IF NOT EXISTS names (
	name TEXT PRIMARY KEY,
	instance_id TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS specs (
	name TEXT PRIMARY KEY,
	rev INTEGER NOT NULL,
	instance_id TEXT NOT NULL,
	deleted INTEGER NOT NULL,
	written_by TEXT NOT NULL,
	json BLOB
);
CREATE INDEX IF NOT EXISTS specs_rev ON specs(rev);
CREATE TABLE IF NOT EXISTS publications (
	name TEXT PRIMARY KEY,
	rev INTEGER NOT NULL,
	error TEXT NOT NULL,
	reported_at INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS meta (
	k TEXT PRIMARY KEY,
	v INTEGER NOT NULL
);
INSERT OR IGNORE INTO meta (k, v) VALUES ('revision', 0);
`

// Store is the SQLite store. It is safe for concurrent use.
type Store struct {
	db   *sql.DB // writer: one connection, writes queue in Go
	rdb  *sql.DB // readers: WAL lets them run beside the writer
	path string
}

var _ store.Store = (*Store)(nil)

// Open opens (creating if needed) the store at path.
func Open(ctx context.Context, path string) (*Store, error) {
	db, err := OpenDB(path)
	if err != nil {
		return nil, err
	}
	// A broker and a worker opening a new file together: the schema
	// statements upgrade a read to a write, which SQLite answers with
	// SQLITE_BUSY at once (no busy handler can help); try again.
	for attempt := 1; ; attempt++ {
		err := initSchema(ctx, db)
		if err == nil {
			break
		}
		if attempt == 20 || !strings.Contains(err.Error(), "SQLITE_BUSY") || ctx.Err() != nil {
			db.Close()
			return nil, fmt.Errorf("sqlite store %s: %w", path, err)
		}
		time.Sleep(time.Duration(attempt) * 10 * time.Millisecond)
	}
	rdb, err := OpenReaders(path, 4)
	if err != nil {
		db.Close()
		return nil, err
	}
	return &Store{db: db, rdb: rdb, path: path}, nil
}

// initSchema creates the tables and adds the columns later versions added.
func initSchema(ctx context.Context, db *sql.DB) error {
	if _, err := db.ExecContext(ctx, schema); err != nil {
		return fmt.Errorf("creating schema: %w", err)
	}
	if err := addSealedUntil(ctx, db); err != nil {
		return fmt.Errorf("adding bindings.sealed_until: %w", err)
	}
	if err := addColumn(ctx, db, "publications", "note", `TEXT NOT NULL DEFAULT ''`); err != nil {
		return fmt.Errorf("adding publications.note: %w", err)
	}
	return nil
}

// addColumn adds a column to a table of a store created before the column
// existed; a file that has it is left as it is.
func addColumn(ctx context.Context, db *sql.DB, table, column, decl string) error {
	has := func() (bool, error) {
		var n int
		err := db.QueryRowContext(ctx, `SELECT count(*) FROM pragma_table_info(?) WHERE name = ?`, table, column).Scan(&n)
		return n > 0, err
	}
	ok, err := has()
	if err != nil || ok {
		return err
	}
	if _, err := db.ExecContext(ctx, `ALTER TABLE `+table+` ADD COLUMN `+column+` `+decl); err != nil {
		// Another process opening the same file may have added it between
		// the check and the ALTER.
		if ok, qerr := has(); qerr != nil || !ok {
			return err
		}
	}
	return nil
}

// addSealedUntil adds the bindings.sealed_until column (unix ns of a
// pending key's expiry, 0 = none) to stores created before it existed.
func addSealedUntil(ctx context.Context, db *sql.DB) error {
	var n int
	if err := db.QueryRowContext(ctx, `SELECT count(*) FROM pragma_table_info('bindings') WHERE name = 'sealed_until'`).Scan(&n); err != nil {
		return err
	}
	if n == 0 {
		if _, err := db.ExecContext(ctx, `ALTER TABLE bindings ADD COLUMN sealed_until INTEGER NOT NULL DEFAULT 0`); err != nil {
			// Another process (a broker and a worker starting together on
			// one file) may have added it between the check and the ALTER.
			if qerr := db.QueryRowContext(ctx, `SELECT count(*) FROM pragma_table_info('bindings') WHERE name = 'sealed_until'`).Scan(&n); qerr != nil || n == 0 {
				return err
			}
		}
	}
	_, err := db.ExecContext(ctx, `CREATE INDEX IF NOT EXISTS bindings_sealed ON bindings(sealed_until) WHERE sealed_until > 0`)
	return err
}

// sealedUntil is the sealed_until column of b.
func sealedUntil(b store.Binding) int64 {
	if len(b.SealedKey) == 0 {
		return 0
	}
	return max(b.SealedUntil.UnixNano(), 1)
}

// ExpiredKeys lists bindings whose pending key expired before before.
func (s *Store) ExpiredKeys(ctx context.Context, before time.Time, limit int) ([]store.Binding, error) {
	rows, err := s.rdb.QueryContext(ctx, `SELECT ver, doc FROM bindings WHERE sealed_until > 0 AND sealed_until < ? ORDER BY sealed_until LIMIT ?`, before.UnixNano(), limit)
	if err != nil {
		return nil, fmt.Errorf("sqlite store %s: listing expired binding keys: %w", s.path, err)
	}
	defer rows.Close()
	var out []store.Binding
	for rows.Next() {
		var b store.Binding
		var doc []byte
		if err := rows.Scan(&b.Version, &doc); err != nil {
			return nil, fmt.Errorf("sqlite store %s: listing expired binding keys: %w", s.path, err)
		}
		if err := json.Unmarshal(doc, &b); err != nil {
			return nil, fmt.Errorf("sqlite store %s: decoding a binding: %w", s.path, err)
		}
		out = append(out, b)
	}
	return out, rows.Err()
}

// OpenReaders opens a pool of n read-only connections to path.
func OpenReaders(path string, n int) (*sql.DB, error) {
	q := url.Values{}
	q.Add("_pragma", "busy_timeout(10000)")
	q.Add("_pragma", "query_only(1)")
	db, err := sql.Open("sqlite", "file:"+path+"?"+q.Encode())
	if err != nil {
		return nil, fmt.Errorf("sqlite %s: %w", path, err)
	}
	db.SetMaxOpenConns(n)
	db.SetMaxIdleConns(n)
	return db, nil
}

// OpenDB opens a SQLite file the way the broker's embedded backends share
// it: WAL, a busy timeout, write transactions that take the lock up front.
func OpenDB(path string) (*sql.DB, error) {
	q := url.Values{}
	q.Add("_pragma", "busy_timeout(10000)")
	q.Add("_pragma", "journal_mode(WAL)")
	q.Add("_pragma", "synchronous(NORMAL)")
	q.Set("_txlock", "immediate")
	db, err := sql.Open("sqlite", "file:"+path+"?"+q.Encode())
	if err != nil {
		return nil, fmt.Errorf("sqlite %s: %w", path, err)
	}
	// One connection: SQLite has one writer anyway, and this keeps writers
	// in this process queued in Go instead of spinning on SQLITE_BUSY.
	db.SetMaxOpenConns(1)
	return db, nil
}

// Close closes the database.
func (s *Store) Close() error { return errors.Join(s.rdb.Close(), s.db.Close()) }

// Ping checks the database answers.
func (s *Store) Ping(ctx context.Context) error {
	if err := s.db.PingContext(ctx); err != nil {
		return fmt.Errorf("sqlite store %s: %w", s.path, err)
	}
	return nil
}

func (s *Store) tx(ctx context.Context, what string, f func(*sql.Tx) error) error {
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("sqlite store %s: %s: begin: %w", s.path, what, err)
	}
	if err := f(tx); err != nil {
		_ = tx.Rollback()
		return err
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("sqlite store %s: %s: commit: %w", s.path, what, err)
	}
	return nil
}

// outboxOf is the outbox column: 1 in progress and not enqueued (the
// sweeper's work), 2 in progress and enqueued, 0 finished.
func outboxOf(op store.Operation) int {
	switch {
	case op.InProgress() && !op.Enqueued:
		return 1
	case op.InProgress():
		return 2
	}
	return 0
}

// GetInstance reads one instance.
func (s *Store) GetInstance(ctx context.Context, id string) (store.Instance, error) {
	var in store.Instance
	var doc []byte
	err := s.rdb.QueryRowContext(ctx, `SELECT ver, doc FROM instances WHERE id = ?`, id).Scan(&in.Version, &doc)
	if errors.Is(err, sql.ErrNoRows) {
		return in, fmt.Errorf("instance %q: %w", id, store.ErrNotFound)
	}
	if err != nil {
		return in, fmt.Errorf("sqlite store %s: reading instance %q: %w", s.path, id, err)
	}
	if err := json.Unmarshal(doc, &in); err != nil {
		return in, fmt.Errorf("sqlite store %s: decoding instance %q: %w", s.path, id, err)
	}
	return in, nil
}

// PutInstance writes in conditionally on in.Version.
func (s *Store) PutInstance(ctx context.Context, in store.Instance) (int64, error) {
	doc, err := json.Marshal(in)
	if err != nil {
		return 0, fmt.Errorf("encoding instance %q: %w", in.ID, err)
	}
	next := in.Version + 1
	err = s.tx(ctx, "writing instance", func(tx *sql.Tx) error {
		var res sql.Result
		var err error
		if in.Version == 0 {
			res, err = tx.ExecContext(ctx, `INSERT INTO instances (id, ver, doc, outbox, op_created) VALUES (?, ?, ?, ?, ?) ON CONFLICT(id) DO NOTHING`,
				in.ID, next, doc, outboxOf(in.Op), in.Op.CreatedAt.UnixNano())
		} else {
			res, err = tx.ExecContext(ctx, `UPDATE instances SET ver = ?, doc = ?, outbox = ?, op_created = ? WHERE id = ? AND ver = ?`,
				next, doc, outboxOf(in.Op), in.Op.CreatedAt.UnixNano(), in.ID, in.Version)
		}
		if err != nil {
			return fmt.Errorf("sqlite store %s: writing instance %q: %w", s.path, in.ID, err)
		}
		if n, _ := res.RowsAffected(); n != 1 {
			return fmt.Errorf("instance %q at version %d: %w", in.ID, in.Version, store.ErrConflict)
		}
		return nil
	})
	if err != nil {
		return 0, err
	}
	return next, nil
}

// GetBinding reads one binding.
func (s *Store) GetBinding(ctx context.Context, instanceID, id string) (store.Binding, error) {
	var b store.Binding
	var doc []byte
	err := s.rdb.QueryRowContext(ctx, `SELECT ver, doc FROM bindings WHERE instance_id = ? AND id = ?`, instanceID, id).Scan(&b.Version, &doc)
	if errors.Is(err, sql.ErrNoRows) {
		return b, fmt.Errorf("binding %q of instance %q: %w", id, instanceID, store.ErrNotFound)
	}
	if err != nil {
		return b, fmt.Errorf("sqlite store %s: reading binding %q: %w", s.path, id, err)
	}
	if err := json.Unmarshal(doc, &b); err != nil {
		return b, fmt.Errorf("sqlite store %s: decoding binding %q: %w", s.path, id, err)
	}
	return b, nil
}

// PutBinding writes b conditionally on b.Version.
func (s *Store) PutBinding(ctx context.Context, b store.Binding) (int64, error) {
	doc, err := json.Marshal(b)
	if err != nil {
		return 0, fmt.Errorf("encoding binding %q: %w", b.ID, err)
	}
	next := b.Version + 1
	err = s.tx(ctx, "writing binding", func(tx *sql.Tx) error {
		var res sql.Result
		var err error
		if b.Version == 0 {
			res, err = tx.ExecContext(ctx, `INSERT INTO bindings (instance_id, id, ver, doc, outbox, op_created, sealed_until) VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT(instance_id, id) DO NOTHING`,
				b.InstanceID, b.ID, next, doc, outboxOf(b.Op), b.Op.CreatedAt.UnixNano(), sealedUntil(b))
		} else {
			res, err = tx.ExecContext(ctx, `UPDATE bindings SET ver = ?, doc = ?, outbox = ?, op_created = ?, sealed_until = ? WHERE instance_id = ? AND id = ? AND ver = ?`,
				next, doc, outboxOf(b.Op), b.Op.CreatedAt.UnixNano(), sealedUntil(b), b.InstanceID, b.ID, b.Version)
		}
		if err != nil {
			return fmt.Errorf("sqlite store %s: writing binding %q: %w", s.path, b.ID, err)
		}
		if n, _ := res.RowsAffected(); n != 1 {
			return fmt.Errorf("binding %q at version %d: %w", b.ID, b.Version, store.ErrConflict)
		}
		return nil
	})
	if err != nil {
		return 0, err
	}
	return next, nil
}

// ListBindings lists every binding record of an instance, deleted or not.
func (s *Store) ListBindings(ctx context.Context, instanceID string) ([]store.Binding, error) {
	rows, err := s.rdb.QueryContext(ctx, `SELECT ver, doc FROM bindings WHERE instance_id = ? ORDER BY id`, instanceID)
	if err != nil {
		return nil, fmt.Errorf("sqlite store %s: listing bindings of %q: %w", s.path, instanceID, err)
	}
	defer rows.Close()
	var out []store.Binding
	for rows.Next() {
		var b store.Binding
		var doc []byte
		if err := rows.Scan(&b.Version, &doc); err != nil {
			return nil, fmt.Errorf("sqlite store %s: listing bindings: %w", s.path, err)
		}
		if err := json.Unmarshal(doc, &b); err != nil {
			return nil, fmt.Errorf("sqlite store %s: decoding binding: %w", s.path, err)
		}
		out = append(out, b)
	}
	return out, rows.Err()
}

// MarkEnqueued clears the outbox flag if opID is still the current
// operation. It is a read-modify-write in one transaction.
func (s *Store) MarkEnqueued(ctx context.Context, instanceID, bindingID, opID string) error {
	return s.tx(ctx, "marking enqueued", func(tx *sql.Tx) error {
		var doc []byte
		var err error
		if bindingID == "" {
			err = tx.QueryRowContext(ctx, `SELECT doc FROM instances WHERE id = ?`, instanceID).Scan(&doc)
		} else {
			err = tx.QueryRowContext(ctx, `SELECT doc FROM bindings WHERE instance_id = ? AND id = ?`, instanceID, bindingID).Scan(&doc)
		}
		if errors.Is(err, sql.ErrNoRows) {
			return fmt.Errorf("operation %q of %s: %w", opID, what(instanceID, bindingID), store.ErrNotFound)
		}
		if err != nil {
			return fmt.Errorf("sqlite store %s: marking enqueued: %w", s.path, err)
		}
		if bindingID == "" {
			var in store.Instance
			if err := json.Unmarshal(doc, &in); err != nil {
				return err
			}
			if in.Op.ID != opID || in.Op.Enqueued {
				return nil
			}
			in.Op.Enqueued = true
			doc, _ = json.Marshal(in)
			_, err = tx.ExecContext(ctx, `UPDATE instances SET ver = ver + 1, doc = ?, outbox = 2 WHERE id = ?`, doc, instanceID)
		} else {
			var b store.Binding
			if err := json.Unmarshal(doc, &b); err != nil {
				return err
			}
			if b.Op.ID != opID || b.Op.Enqueued {
				return nil
			}
			b.Op.Enqueued = true
			doc, _ = json.Marshal(b)
			_, err = tx.ExecContext(ctx, `UPDATE bindings SET ver = ver + 1, doc = ?, outbox = 2 WHERE instance_id = ? AND id = ?`, doc, instanceID, bindingID)
		}
		if err != nil {
			return fmt.Errorf("sqlite store %s: marking enqueued: %w", s.path, err)
		}
		return nil
	})
}

func what(instanceID, bindingID string) string {
	if bindingID == "" {
		return fmt.Sprintf("instance %q", instanceID)
	}
	return fmt.Sprintf("binding %q of instance %q", bindingID, instanceID)
}

// PendingOutbox lists operations the queue has not accepted yet.
func (s *Store) PendingOutbox(ctx context.Context, olderThan time.Time, limit int) ([]store.OutboxItem, error) {
	return s.inProgress(ctx, "outbox = 1", olderThan, limit)
}

// Overdue lists in-progress operations created before createdBefore.
func (s *Store) Overdue(ctx context.Context, createdBefore time.Time, limit int) ([]store.OutboxItem, error) {
	return s.inProgress(ctx, "outbox > 0", createdBefore, limit)
}

func (s *Store) inProgress(ctx context.Context, cond string, before time.Time, limit int) ([]store.OutboxItem, error) {
	rows, err := s.rdb.QueryContext(ctx, `
		SELECT id, '', doc, op_created FROM instances WHERE `+cond+` AND op_created < ?
		UNION ALL
		SELECT instance_id, id, doc, op_created FROM bindings WHERE `+cond+` AND op_created < ?
		ORDER BY 4 LIMIT ?`, before.UnixNano(), before.UnixNano(), limit)
	if err != nil {
		return nil, fmt.Errorf("sqlite store %s: listing in-progress operations: %w", s.path, err)
	}
	defer rows.Close()
	var out []store.OutboxItem
	for rows.Next() {
		var it store.OutboxItem
		var doc []byte
		var created int64
		if err := rows.Scan(&it.InstanceID, &it.BindingID, &doc, &created); err != nil {
			return nil, fmt.Errorf("sqlite store %s: listing in-progress operations: %w", s.path, err)
		}
		var rec struct {
			Op store.Operation `json:"op"`
		}
		if err := json.Unmarshal(doc, &rec); err != nil {
			return nil, fmt.Errorf("sqlite store %s: decoding an operation record: %w", s.path, err)
		}
		it.OpID, it.CreatedAt = rec.Op.ID, time.Unix(0, created)
		out = append(out, it)
	}
	return out, rows.Err()
}

// ClaimName reserves name for instanceID.
func (s *Store) ClaimName(ctx context.Context, name, instanceID string) error {
	return s.tx(ctx, "claiming a name", func(tx *sql.Tx) error {
		var holder string
		err := tx.QueryRowContext(ctx, `SELECT instance_id FROM names WHERE name = ?`, name).Scan(&holder)
		switch {
		case errors.Is(err, sql.ErrNoRows):
			_, err = tx.ExecContext(ctx, `INSERT INTO names (name, instance_id) VALUES (?, ?)`, name, instanceID)
			if err != nil {
				return fmt.Errorf("sqlite store %s: claiming name %q: %w", s.path, name, err)
			}
			return nil
		case err != nil:
			return fmt.Errorf("sqlite store %s: claiming name %q: %w", s.path, name, err)
		case holder != instanceID:
			return fmt.Errorf("name %q belongs to instance %q: %w", name, holder, store.ErrConflict)
		}
		return nil
	})
}

// ReleaseName frees name if instanceID holds it.
func (s *Store) ReleaseName(ctx context.Context, name, instanceID string) error {
	if _, err := s.db.ExecContext(ctx, `DELETE FROM names WHERE name = ? AND instance_id = ?`, name, instanceID); err != nil {
		return fmt.Errorf("sqlite store %s: releasing name %q: %w", s.path, name, err)
	}
	return nil
}

// GetSpec returns the latest write of a spec.
func (s *Store) GetSpec(ctx context.Context, name string) (store.StoredSpec, error) {
	var sp store.StoredSpec
	var del int
	err := s.rdb.QueryRowContext(ctx, `SELECT name, rev, instance_id, deleted, written_by, json FROM specs WHERE name = ?`, name).
		Scan(&sp.Name, &sp.Revision, &sp.InstanceID, &del, &sp.WrittenBy, &sp.JSON)
	if errors.Is(err, sql.ErrNoRows) {
		return sp, fmt.Errorf("spec %q: %w", name, store.ErrNotFound)
	}
	if err != nil {
		return sp, fmt.Errorf("sqlite store %s: reading spec %q: %w", s.path, name, err)
	}
	sp.Deleted = del == 1
	return sp, nil
}

// PutSpec writes sp at the next store revision if the spec is still at
// prevRevision.
func (s *Store) PutSpec(ctx context.Context, sp store.StoredSpec, prevRevision int64) (int64, error) {
	var rev int64
	err := s.tx(ctx, "writing spec", func(tx *sql.Tx) error {
		var cur int64
		err := tx.QueryRowContext(ctx, `SELECT rev FROM specs WHERE name = ?`, sp.Name).Scan(&cur)
		if err != nil && !errors.Is(err, sql.ErrNoRows) {
			return fmt.Errorf("sqlite store %s: reading spec %q: %w", s.path, sp.Name, err)
		}
		if cur != prevRevision {
			return fmt.Errorf("spec %q is at revision %d, not %d: %w", sp.Name, cur, prevRevision, store.ErrConflict)
		}
		if err := tx.QueryRowContext(ctx, `UPDATE meta SET v = v + 1 WHERE k = 'revision' RETURNING v`).Scan(&rev); err != nil {
			return fmt.Errorf("sqlite store %s: next revision: %w", s.path, err)
		}
		del := 0
		body := sp.JSON
		if sp.Deleted {
			del, body = 1, nil
		}
		_, err = tx.ExecContext(ctx, `INSERT INTO specs (name, rev, instance_id, deleted, written_by, json) VALUES (?, ?, ?, ?, ?, ?)
			ON CONFLICT(name) DO UPDATE SET rev = excluded.rev, instance_id = excluded.instance_id, deleted = excluded.deleted,
			written_by = excluded.written_by, json = excluded.json`, sp.Name, rev, sp.InstanceID, del, sp.WrittenBy, body)
		if err != nil {
			return fmt.Errorf("sqlite store %s: writing spec %q: %w", s.path, sp.Name, err)
		}
		return nil
	})
	return rev, err
}

func (s *Store) scanSpecs(rows *sql.Rows) ([]store.StoredSpec, error) {
	defer rows.Close()
	var out []store.StoredSpec
	for rows.Next() {
		var sp store.StoredSpec
		var del int
		if err := rows.Scan(&sp.Name, &sp.Revision, &sp.InstanceID, &del, &sp.WrittenBy, &sp.JSON); err != nil {
			return nil, fmt.Errorf("sqlite store %s: reading specs: %w", s.path, err)
		}
		sp.Deleted = del == 1
		out = append(out, sp)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("sqlite store %s: reading specs: %w", s.path, err)
	}
	return out, nil
}

// Snapshot returns every live spec and the store revision.
func (s *Store) Snapshot(ctx context.Context) (int64, []store.StoredSpec, error) {
	var rev int64
	var specs []store.StoredSpec
	// One read transaction, so the revision and the rows agree.
	tx, err := s.rdb.BeginTx(ctx, &sql.TxOptions{ReadOnly: true})
	if err != nil {
		return 0, nil, fmt.Errorf("sqlite store %s: snapshot: %w", s.path, err)
	}
	defer tx.Rollback()
	if err := tx.QueryRowContext(ctx, `SELECT v FROM meta WHERE k = 'revision'`).Scan(&rev); err != nil {
		return 0, nil, fmt.Errorf("sqlite store %s: snapshot revision: %w", s.path, err)
	}
	rows, err := tx.QueryContext(ctx, `SELECT name, rev, instance_id, deleted, written_by, json FROM specs WHERE deleted = 0 ORDER BY name`)
	if err != nil {
		return 0, nil, fmt.Errorf("sqlite store %s: snapshot: %w", s.path, err)
	}
	if specs, err = s.scanSpecs(rows); err != nil {
		return 0, nil, err
	}
	return rev, specs, nil
}

// Changes returns the spec writes after since, in revision order. Only the
// latest write of each spec is kept, which is all a consumer needs.
func (s *Store) Changes(ctx context.Context, since int64) (int64, []store.StoredSpec, error) {
	rows, err := s.rdb.QueryContext(ctx, `SELECT name, rev, instance_id, deleted, written_by, json FROM specs WHERE rev > ? ORDER BY rev`, since)
	if err != nil {
		return since, nil, fmt.Errorf("sqlite store %s: changes since %d: %w", s.path, since, err)
	}
	specs, err := s.scanSpecs(rows)
	if err != nil {
		return since, nil, err
	}
	next := since
	if n := len(specs); n > 0 {
		next = specs[n-1].Revision
	}
	return next, specs, nil
}

// ReportPublished records the control plane's verdict for a revision.
func (s *Store) ReportPublished(ctx context.Context, name string, revision int64, perr error) error {
	msg := ""
	if perr != nil {
		msg = perr.Error()
	}
	return s.report(ctx, name, revision, msg, "")
}

// ReportPublishedNote records a revision published, with a note.
func (s *Store) ReportPublishedNote(ctx context.Context, name string, revision int64, note string) error {
	return s.report(ctx, name, revision, "", note)
}

func (s *Store) report(ctx context.Context, name string, revision int64, msg, note string) error {
	_, err := s.db.ExecContext(ctx, `INSERT INTO publications (name, rev, error, note, reported_at) VALUES (?, ?, ?, ?, ?)
		ON CONFLICT(name) DO UPDATE SET rev = excluded.rev, error = excluded.error, note = excluded.note, reported_at = excluded.reported_at
		WHERE excluded.rev >= publications.rev`, name, revision, msg, note, time.Now().UnixNano())
	if err != nil {
		return fmt.Errorf("sqlite store %s: reporting revision %d of %q: %w", s.path, revision, name, err)
	}
	return nil
}

// GetPublication returns the last report for a spec.
func (s *Store) GetPublication(ctx context.Context, name string) (store.Publication, error) {
	p := store.Publication{SpecName: name}
	var at int64
	err := s.rdb.QueryRowContext(ctx, `SELECT rev, error, note, reported_at FROM publications WHERE name = ?`, name).Scan(&p.Revision, &p.Error, &p.Note, &at)
	if errors.Is(err, sql.ErrNoRows) {
		return p, fmt.Errorf("publication of %q: %w", name, store.ErrNotFound)
	}
	if err != nil {
		return p, fmt.Errorf("sqlite store %s: reading publication of %q: %w", s.path, name, err)
	}
	p.ReportedAt = time.Unix(0, at)
	return p, nil
}
