// Package sqlq turns an accesslog.Filter into a SQL WHERE clause with
// positional arguments, for the SQL stores (DuckDB, ClickHouse). It owns
// no connection and must not import a database driver.
package sqlq

import (
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/gatehouse-edge/gatehouse/accesslog"
)

// Dialect says how a store spells time.
type Dialect struct {
	// TimeMS is an expression giving a row's time in Unix milliseconds.
	TimeMS string
	// TimeRange returns a condition (and args) selecting since <= time <
	// until that can use the store's sort key or partitions.
	TimeRange func(since, until time.Time) (string, []any)
	// StartsWith is the store's function name for "string starts with"
	// (DuckDB starts_with, ClickHouse startsWith); both take the column
	// and the prefix, so a prefix needs no LIKE escaping.
	StartsWith string
}

// Where builds "cond AND cond ..." for f (never empty).
func Where(d Dialect, f accesslog.Filter) (string, []any) {
	var conds []string
	var args []any
	add := func(c string, a ...any) {
		conds = append(conds, c)
		args = append(args, a...)
	}
	if !f.Since.IsZero() || !f.Until.IsZero() {
		since, until := f.Since, f.Until
		if until.IsZero() {
			until = time.Date(9999, 1, 1, 0, 0, 0, 0, time.UTC)
		}
		c, a := d.TimeRange(since, until)
		add(c, a...)
	}
	eq := func(col, v string) {
		if v != "" {
			add(col+" = ?", v)
		}
	}
	eq("route", f.Route)
	eq("subject", f.Subject)
	eq("client_ip", f.ClientIP)
	eq("decision", f.Decision)
	eq("method", f.Method)
	eq("node", f.Node)
	eq("request_id", f.RequestID)
	eq("apikey_id", f.APIKeyID)
	if f.PathPrefix != "" {
		// starts_with semantics without LIKE wildcards in the value.
		add("substring(path, 1, ?) = ?", len(f.PathPrefix), f.PathPrefix)
	}
	if f.Status != 0 {
		add("status = ?", f.Status)
	}
	if f.Denied != nil {
		if *f.Denied {
			add("denied = 1")
		} else {
			add("denied = 0")
		}
	}
	for _, c := range f.Conds {
		cond, a := condSQL(d, c)
		if cond == "" {
			continue
		}
		if c.Not {
			cond = "NOT (" + cond + ")"
		}
		add(cond, a...)
	}
	if c := f.After; c != nil {
		add("("+d.TimeMS+" < ? OR ("+d.TimeMS+" = ? AND (batch < ? OR (batch = ? AND idx < ?))))",
			c.TimeMS, c.TimeMS, c.Batch, c.Batch, c.Index)
	}
	if len(conds) == 0 {
		return "1 = 1", nil
	}
	return strings.Join(conds, " AND "), args
}

// Columns is the SELECT list of a record in accesslog.Columns order
// followed by batch and idx, with the time column replaced by timeExpr.
func Columns(timeExpr string) string {
	cols := append([]string{timeExpr}, accesslog.Columns[1:]...)
	return strings.Join(cols, ", ") + ", batch, idx"
}

// ScanTargets returns pointers to r's fields in Columns order, for
// rows.Scan; the time goes to *t for the caller to convert.
func ScanTargets(r *accesslog.Record, t any) []any {
	return []any{t, &r.RequestID, &r.Kind, &r.LogType, &r.Node, &r.NodeGroup, &r.Route,
		&r.Authority, &r.Method, &r.Path, &r.Query, &r.Status, &r.ResponseFlags,
		&r.DurationUS, &r.BytesIn, &r.BytesOut, &r.ClientIP, &r.ClientPort,
		&r.TLSVersion, &r.TLSSNI, &r.PeerPrincipal, &r.UserAgent, &r.Headers,
		&r.UpstreamCluster, &r.UpstreamHost, &r.Subject, &r.Provider, &r.AuthKind,
		&r.APIKeyID, &r.Rule, &r.Decision, &r.ConfigVersion, &r.Batch, &r.Index}
}

// Values returns r's column values in accesslog.Columns order (time as
// given), then denied, batch and idx.
func Values(r *accesslog.Record, t any) []any {
	return []any{t, r.RequestID, r.Kind, r.LogType, r.Node, r.NodeGroup, r.Route,
		r.Authority, r.Method, r.Path, r.Query, r.Status, r.ResponseFlags,
		r.DurationUS, r.BytesIn, r.BytesOut, r.ClientIP, r.ClientPort,
		r.TLSVersion, r.TLSSNI, r.PeerPrincipal, r.UserAgent, r.Headers,
		r.UpstreamCluster, r.UpstreamHost, r.Subject, r.Provider, r.AuthKind,
		r.APIKeyID, r.Rule, r.Decision, r.ConfigVersion, r.Denied(), r.Batch, r.Index}
}

// condSQL is one Cond without its negation; "" for a column that is not
// a filter column (never from ParseFilter).
func condSQL(d Dialect, c accesslog.Cond) (string, []any) {
	if c.Column == "status" {
		if c.Class != 0 {
			return "status >= ? AND status < ?", []any{c.Class * 100, (c.Class + 1) * 100}
		}
		n, err := strconv.ParseUint(c.Value, 10, 32)
		if err != nil {
			return "1 = 0", nil
		}
		return "status = ?", []any{uint32(n)}
	}
	if c.Column != "decision" && !slices.Contains(accesslog.CondColumns, c.Column) {
		return "", nil
	}
	if c.Prefix {
		if d.StartsWith != "" {
			return d.StartsWith + "(" + c.Column + ", ?)", []any{c.Value}
		}
		return "substring(" + c.Column + ", 1, ?) = ?", []any{len(c.Value), c.Value}
	}
	return c.Column + " = ?", []any{c.Value}
}
