package duckstore

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync/atomic"
	"time"

	"github.com/duckdb/duckdb-go/v2"

	"github.com/gatehouse-edge/gatehouse/accesslog"
)

// rowsFunction is the table function WriteBatch inserts from: it yields
// the records of the batch being written (writer.rows) as rows of the logs
// table, one vector of up to 2,048 values per column and chunk. Each
// writing connection has its own (rowsFunction, rowsFunction_1, ...).
const rowsFunction = "gatehouse_batch_rows"

// rowColumn is one column rowsFunction can yield, named as in logs. A
// VARCHAR column has str (written by fillStrings); every other column has
// fill.
type rowColumn struct {
	name string
	typ  duckdb.Type
	str  func(*accesslog.Record) string
	fill func(c duckdb.DataChunk, col int, recs []accesslog.Record) error
}

// fillWith writes get(record) into column col of every row, typed (no
// boxing).
func fillWith[T any](get func(*accesslog.Record) T) func(duckdb.DataChunk, int, []accesslog.Record) error {
	return func(c duckdb.DataChunk, col int, recs []accesslog.Record) error {
		for i := range recs {
			if err := duckdb.SetChunkValue(c, col, i, get(&recs[i])); err != nil {
				return fmt.Errorf("row %d: %w", i, err)
			}
		}
		return nil
	}
}

// rowColumns are the columns of logs that WriteBatch fills.
var rowColumns = []rowColumn{
	{name: "time", typ: duckdb.TYPE_TIMESTAMP, fill: fillWith(func(r *accesslog.Record) time.Time { return r.Time })},
	{name: "request_id", str: func(r *accesslog.Record) string { return r.RequestID }},
	{name: "kind", str: func(r *accesslog.Record) string { return r.Kind }},
	{name: "log_type", str: func(r *accesslog.Record) string { return r.LogType }},
	{name: "node", str: func(r *accesslog.Record) string { return r.Node }},
	{name: "node_group", str: func(r *accesslog.Record) string { return r.NodeGroup }},
	{name: "route", str: func(r *accesslog.Record) string { return r.Route }},
	{name: "authority", str: func(r *accesslog.Record) string { return r.Authority }},
	{name: "method", str: func(r *accesslog.Record) string { return r.Method }},
	{name: "path", str: func(r *accesslog.Record) string { return r.Path }},
	{name: "query", str: func(r *accesslog.Record) string { return r.Query }},
	{name: "status", typ: duckdb.TYPE_UINTEGER, fill: fillWith(func(r *accesslog.Record) uint32 { return r.Status })},
	{name: "response_flags", str: func(r *accesslog.Record) string { return r.ResponseFlags }},
	{name: "duration_us", typ: duckdb.TYPE_BIGINT, fill: fillWith(func(r *accesslog.Record) int64 { return r.DurationUS })},
	{name: "bytes_in", typ: duckdb.TYPE_UBIGINT, fill: fillWith(func(r *accesslog.Record) uint64 { return r.BytesIn })},
	{name: "bytes_out", typ: duckdb.TYPE_UBIGINT, fill: fillWith(func(r *accesslog.Record) uint64 { return r.BytesOut })},
	{name: "client_ip", str: func(r *accesslog.Record) string { return r.ClientIP }},
	{name: "client_port", typ: duckdb.TYPE_UINTEGER, fill: fillWith(func(r *accesslog.Record) uint32 { return r.ClientPort })},
	{name: "tls_version", str: func(r *accesslog.Record) string { return r.TLSVersion }},
	{name: "tls_sni", str: func(r *accesslog.Record) string { return r.TLSSNI }},
	{name: "peer_principal", str: func(r *accesslog.Record) string { return r.PeerPrincipal }},
	{name: "user_agent", str: func(r *accesslog.Record) string { return r.UserAgent }},
	{name: "headers", str: func(r *accesslog.Record) string { return r.Headers }},
	{name: "upstream_cluster", str: func(r *accesslog.Record) string { return r.UpstreamCluster }},
	{name: "upstream_host", str: func(r *accesslog.Record) string { return r.UpstreamHost }},
	{name: "subject", str: func(r *accesslog.Record) string { return r.Subject }},
	{name: "provider", str: func(r *accesslog.Record) string { return r.Provider }},
	{name: "auth_kind", str: func(r *accesslog.Record) string { return r.AuthKind }},
	{name: "apikey_id", str: func(r *accesslog.Record) string { return r.APIKeyID }},
	{name: "rule", str: func(r *accesslog.Record) string { return r.Rule }},
	{name: "decision", str: func(r *accesslog.Record) string { return r.Decision }},
	{name: "config_version", str: func(r *accesslog.Record) string { return r.ConfigVersion }},
	{name: "denied", typ: duckdb.TYPE_BOOLEAN, fill: fillWith(func(r *accesslog.Record) bool { return r.Denied() })},
	{name: "batch", typ: duckdb.TYPE_UBIGINT, fill: fillWith(func(r *accesslog.Record) uint64 { return r.Batch })},
	{name: "idx", typ: duckdb.TYPE_UINTEGER, fill: fillWith(func(r *accesslog.Record) uint32 { return r.Index })},
	{name: "client_ip_h", typ: duckdb.TYPE_UINTEGER, fill: fillWith(func(r *accesslog.Record) uint32 { return lookupHash(r.ClientIP) })},
	{name: "subject_h", typ: duckdb.TYPE_UINTEGER, fill: fillWith(func(r *accesslog.Record) uint32 { return lookupHash(r.Subject) })},
	{name: "request_id_h", typ: duckdb.TYPE_UINTEGER, fill: fillWith(func(r *accesslog.Record) uint32 { return lookupHash(r.RequestID) })},
}

func init() {
	for i := range rowColumns {
		if c := &rowColumns[i]; c.str != nil {
			c.typ = duckdb.TYPE_VARCHAR
		}
	}
}

// rowPlan is how one batch goes in: the columns the table function yields
// and the VARCHAR columns holding one value in every row of the batch,
// which the INSERT takes as a parameter instead (one value, not one cgo
// call per row: many columns are the same or empty across a batch, e.g.
// tls_* without TLS, apikey_id on JWT routes, node_group, kind).
type rowPlan struct {
	cols   []int // indexes into rowColumns, in the function's column order
	consts []int // indexes into rowColumns of the constant VARCHAR columns
	vals   []any // their values
}

// planBatch finds the constant VARCHAR columns of b (at least two rows:
// below that there is nothing to save). It reads the batch once, row by
// row (a batch is ~100 MB: a pass per column would read it from memory
// again for every column), and stops comparing a column at its first
// difference; encoded records (Batch.Frames) are decoded a chunk at a
// time into scratch.
func planBatch(b *accesslog.Batch, scratch []accesslog.Record) (rowPlan, error) {
	var cand []int // VARCHAR columns constant so far
	if b.Len() > 1 {
		for i := range rowColumns {
			if rowColumns[i].str != nil {
				cand = append(cand, i)
			}
		}
	}
	var first []string
	rest := b.Records
	next := func() ([]accesslog.Record, error) { // Records: all at once
		recs := rest
		rest = nil
		return recs, nil
	}
	if b.Records == nil && b.Frames != nil {
		rd := b.Reader()
		next = func() ([]accesslog.Record, error) { return rd.Next(scratch) }
	}
	for len(cand) > 0 {
		recs, err := next()
		if err != nil {
			return rowPlan{}, err
		}
		if len(recs) == 0 {
			break
		}
		if first == nil {
			first = make([]string, len(cand))
			for k, i := range cand {
				// A copy: a decoded record's strings share the frames'
				// bytes, and the values outlive the chunk.
				first[k] = strings.Clone(rowColumns[i].str(&recs[0]))
			}
		}
		for j := range recs {
			r := &recs[j]
			for k := 0; k < len(cand); {
				if rowColumns[cand[k]].str(r) == first[k] {
					k++
					continue
				}
				cand = append(cand[:k], cand[k+1:]...)
				first = append(first[:k], first[k+1:]...)
			}
			if len(cand) == 0 {
				break
			}
		}
	}
	var p rowPlan
	for i := range rowColumns {
		if k := slices.Index(cand, i); k >= 0 {
			p.consts = append(p.consts, i)
			p.vals = append(p.vals, first[k])
			continue
		}
		p.cols = append(p.cols, i)
	}
	return p, nil
}

// insertSQL is the INSERT of a batch under p from the table function fn;
// p.vals are its parameters.
func (p *rowPlan) insertSQL(fn string) string {
	q := "INSERT INTO logs BY NAME SELECT *"
	for _, i := range p.consts {
		q += ", CAST(? AS VARCHAR) AS " + rowColumns[i].name
	}
	return q + " FROM " + fn + "()"
}

// rowBatch is what WriteBatch hands the table function: the batch, how
// it goes in, and for encoded records (Batch.Frames) the array a chunk of
// them is decoded into (nil for Records).
type rowBatch struct {
	b       *accesslog.Batch
	plan    *rowPlan
	scratch []accesslog.Record
}

// newRowBatch plans b, decoding its encoded records (if any) into an
// array of one chunk, which the table function then reuses.
func newRowBatch(b *accesslog.Batch) (*rowBatch, error) {
	rb := &rowBatch{b: b}
	if b.Records == nil && b.Frames != nil {
		rb.scratch = make([]accesslog.Record, duckdb.GetDataChunkCapacity())
	}
	plan, err := planBatch(b, rb.scratch)
	rb.plan = &plan
	return rb, err
}

// registerRows registers w's table function on its connection.
func registerRows(w *writer) error {
	types := make([]duckdb.TypeInfo, len(rowColumns))
	for i, c := range rowColumns {
		t, err := duckdb.NewTypeInfo(c.typ)
		if err != nil {
			return fmt.Errorf("column %s: %w", c.name, err)
		}
		types[i] = t
	}
	return duckdb.RegisterTableUDF(w.conn, w.fn, duckdb.ChunkTableFunction{
		BindArguments: func(map[string]any, ...any) (duckdb.ChunkTableSource, error) {
			rb := w.rows.Load()
			if rb == nil {
				return nil, errors.New(w.fn + " is for WriteBatch only")
			}
			infos := make([]duckdb.ColumnInfo, len(rb.plan.cols))
			for k, i := range rb.plan.cols {
				infos[k] = duckdb.ColumnInfo{Name: rowColumns[i].name, T: types[i]}
			}
			src := &rowSource{infos: infos, cols: rb.plan.cols, recs: rb.b.Records, n: rb.b.Len(), inlined: &w.inlined}
			if rb.scratch != nil {
				src.rd, src.scratch = rb.b.Reader(), rb.scratch
			}
			return src, nil
		},
	})
}

// rowSource yields a batch's records in chunks: parts of its Records, or
// (rd set) its encoded records (Batch.Frames) decoded into scratch, one
// chunk at a time, with strings that share the frames' bytes (DuckDB
// copies them into its vectors).
type rowSource struct {
	infos   []duckdb.ColumnInfo
	cols    []int
	recs    []accesslog.Record
	rd      *accesslog.BatchReader
	scratch []accesslog.Record
	n       int // rows in all
	next    int
	// inlined counts the strings written straight into the vectors.
	inlined *atomic.Int64
}

func (r *rowSource) ColumnInfos() []duckdb.ColumnInfo { return r.infos }

func (r *rowSource) Cardinality() *duckdb.CardinalityInfo {
	return &duckdb.CardinalityInfo{Cardinality: uint(r.n), Exact: true}
}

func (r *rowSource) Init() {}

// FillChunk writes the next records column by column; a chunk of size 0
// ends the function.
func (r *rowSource) FillChunk(c duckdb.DataChunk) error {
	var recs []accesslog.Record
	if r.rd != nil {
		var err error
		if recs, err = r.rd.Next(r.scratch[:min(len(r.scratch), duckdb.GetDataChunkCapacity())]); err != nil {
			return err
		}
	} else {
		recs = r.recs[r.next:]
		recs = recs[:min(len(recs), duckdb.GetDataChunkCapacity())]
	}
	// The size first: the VARCHAR fill reads the vectors back (strfill.go).
	if err := c.SetSize(len(recs)); err != nil {
		return err
	}
	inlined := 0
	for k, i := range r.cols {
		var err error
		if col := &rowColumns[i]; col.str != nil {
			var n int
			n, err = fillStrings(&c, k, recs, col.str)
			inlined += n
		} else {
			err = col.fill(c, k, recs)
		}
		if err != nil {
			return fmt.Errorf("column %s, batch row %d+: %w", rowColumns[i].name, r.next, err)
		}
	}
	r.inlined.Add(int64(inlined))
	r.next += len(recs)
	return nil
}
