package duckstore

import (
	"errors"
	"fmt"

	"github.com/duckdb/duckdb-go/v2"

	"github.com/gatehouse-edge/gatehouse/accesslog"
)

// rowsFunction is the table function WriteBatch inserts from: it yields
// the records of the batch being written (Store.rows) as rows of the logs
// table, one vector of up to 2,048 values per column and chunk.
const rowsFunction = "gatehouse_batch_rows"

// rowColumns are the columns rowsFunction yields, named as in logs.
var rowColumns = []struct {
	name string
	typ  duckdb.Type
}{
	{"time", duckdb.TYPE_TIMESTAMP}, {"request_id", duckdb.TYPE_VARCHAR}, {"kind", duckdb.TYPE_VARCHAR},
	{"log_type", duckdb.TYPE_VARCHAR}, {"node", duckdb.TYPE_VARCHAR}, {"node_group", duckdb.TYPE_VARCHAR},
	{"route", duckdb.TYPE_VARCHAR}, {"authority", duckdb.TYPE_VARCHAR}, {"method", duckdb.TYPE_VARCHAR},
	{"path", duckdb.TYPE_VARCHAR}, {"query", duckdb.TYPE_VARCHAR}, {"status", duckdb.TYPE_UINTEGER},
	{"response_flags", duckdb.TYPE_VARCHAR}, {"duration_us", duckdb.TYPE_BIGINT}, {"bytes_in", duckdb.TYPE_UBIGINT},
	{"bytes_out", duckdb.TYPE_UBIGINT}, {"client_ip", duckdb.TYPE_VARCHAR}, {"client_port", duckdb.TYPE_UINTEGER},
	{"tls_version", duckdb.TYPE_VARCHAR}, {"tls_sni", duckdb.TYPE_VARCHAR}, {"peer_principal", duckdb.TYPE_VARCHAR},
	{"user_agent", duckdb.TYPE_VARCHAR}, {"headers", duckdb.TYPE_VARCHAR}, {"upstream_cluster", duckdb.TYPE_VARCHAR},
	{"upstream_host", duckdb.TYPE_VARCHAR}, {"subject", duckdb.TYPE_VARCHAR}, {"provider", duckdb.TYPE_VARCHAR},
	{"auth_kind", duckdb.TYPE_VARCHAR}, {"apikey_id", duckdb.TYPE_VARCHAR}, {"rule", duckdb.TYPE_VARCHAR},
	{"decision", duckdb.TYPE_VARCHAR}, {"config_version", duckdb.TYPE_VARCHAR}, {"denied", duckdb.TYPE_BOOLEAN}, {"batch", duckdb.TYPE_UBIGINT},
	{"idx", duckdb.TYPE_UINTEGER}, {"client_ip_h", duckdb.TYPE_UINTEGER}, {"subject_h", duckdb.TYPE_UINTEGER},
	{"request_id_h", duckdb.TYPE_UINTEGER},
}

// registerRows registers rowsFunction on the writing connection.
func (s *Store) registerRows() error {
	infos := make([]duckdb.ColumnInfo, len(rowColumns))
	for i, c := range rowColumns {
		t, err := duckdb.NewTypeInfo(c.typ)
		if err != nil {
			return fmt.Errorf("column %s: %w", c.name, err)
		}
		infos[i] = duckdb.ColumnInfo{Name: c.name, T: t}
	}
	return duckdb.RegisterTableUDF(s.conn, rowsFunction, duckdb.ChunkTableFunction{
		BindArguments: func(map[string]any, ...any) (duckdb.ChunkTableSource, error) {
			recs := s.rows.Load()
			if recs == nil {
				return nil, errors.New(rowsFunction + " is for WriteBatch only")
			}
			return &rowSource{infos: infos, recs: *recs}, nil
		},
	})
}

// rowSource yields recs in chunks.
type rowSource struct {
	infos []duckdb.ColumnInfo
	recs  []accesslog.Record
	next  int
}

func (r *rowSource) ColumnInfos() []duckdb.ColumnInfo { return r.infos }

func (r *rowSource) Cardinality() *duckdb.CardinalityInfo {
	return &duckdb.CardinalityInfo{Cardinality: uint(len(r.recs)), Exact: true}
}

func (r *rowSource) Init() {}

// FillChunk writes the next records column by column; a chunk of size 0
// ends the function.
func (r *rowSource) FillChunk(c duckdb.DataChunk) error {
	recs := r.recs[r.next:]
	recs = recs[:min(len(recs), duckdb.GetDataChunkCapacity())]
	r.next += len(recs)
	var err error
	for i := range recs {
		rec := &recs[i]
		col := 0
		setAt(&err, c, &col, i, rec.Time)
		for _, v := range [...]string{rec.RequestID, rec.Kind, rec.LogType, rec.Node, rec.NodeGroup,
			rec.Route, rec.Authority, rec.Method, rec.Path, rec.Query} {
			setAt(&err, c, &col, i, v)
		}
		setAt(&err, c, &col, i, rec.Status)
		setAt(&err, c, &col, i, rec.ResponseFlags)
		setAt(&err, c, &col, i, rec.DurationUS)
		setAt(&err, c, &col, i, rec.BytesIn)
		setAt(&err, c, &col, i, rec.BytesOut)
		setAt(&err, c, &col, i, rec.ClientIP)
		setAt(&err, c, &col, i, rec.ClientPort)
		for _, v := range [...]string{rec.TLSVersion, rec.TLSSNI, rec.PeerPrincipal, rec.UserAgent,
			rec.Headers, rec.UpstreamCluster, rec.UpstreamHost, rec.Subject, rec.Provider,
			rec.AuthKind, rec.APIKeyID, rec.Rule, rec.Decision, rec.ConfigVersion} {
			setAt(&err, c, &col, i, v)
		}
		setAt(&err, c, &col, i, rec.Denied())
		setAt(&err, c, &col, i, rec.Batch)
		setAt(&err, c, &col, i, rec.Index)
		for _, v := range [...]string{rec.ClientIP, rec.Subject, rec.RequestID} {
			setAt(&err, c, &col, i, lookupHash(v))
		}
		if err != nil {
			return fmt.Errorf("row %d: %w", r.next-len(recs)+i, err)
		}
	}
	return c.SetSize(len(recs))
}

// setAt writes v into column *col of row i (typed: no boxing) unless an
// earlier write failed, and moves to the next column.
func setAt[T any](err *error, c duckdb.DataChunk, col *int, i int, v T) {
	if *err == nil {
		*err = duckdb.SetChunkValue(c, *col, i, v)
	}
	*col++
}
