package accesslog

import (
	"encoding/base64"
	"encoding/binary"
	"fmt"
	"net/netip"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Filter selects records. Zero fields match everything.
type Filter struct {
	Since, Until time.Time // Since <= time < Until
	Route        string
	Subject      string
	ClientIP     string
	Decision     string
	PathPrefix   string
	Method       string
	Node         string
	RequestID    string
	APIKeyID     string
	Status       uint32
	Denied       *bool
	// Conds are the further conditions of the query language: prefix
	// (value*), negated (!value) and status-class (4xx) matches, and
	// the fields that have no field of their own above. All must hold.
	Conds []Cond
	Limit int     // 0: no limit (export only)
	After *Cursor // newest first: only records older than the cursor
}

// Cond is one condition on a column beyond the exact-match fields of
// Filter. Column is one of CondColumns.
type Cond struct {
	Column string
	Value  string // the value, or the prefix when Prefix is set
	Prefix bool   // the column starts with Value
	Class  uint32 // status only: 1..5 for 1xx..5xx (Value is then "")
	Not    bool   // the condition is negated
}

// CondColumns are the string columns a filter parameter of the same name
// can match (exact, prefix, negated); status and decision have their own
// parsing.
var CondColumns = []string{"route", "subject", "client_ip", "node", "node_group", "request_id", "apikey_id", "method",
	"authority", "provider", "auth_kind", "rule", "response_flags", "upstream_cluster", "user_agent", "path"}

// Cursor is the position of a record in newest-first order.
type Cursor struct {
	TimeMS int64
	Batch  uint64
	Index  uint32
}

// CursorOf returns the cursor just after r.
func CursorOf(r *Record) Cursor {
	return Cursor{TimeMS: r.Time.UnixMilli(), Batch: r.Batch, Index: r.Index}
}

// String encodes the cursor as an opaque URL-safe token.
func (c Cursor) String() string {
	b := binary.AppendVarint(nil, c.TimeMS)
	b = binary.AppendUvarint(b, c.Batch)
	b = binary.AppendUvarint(b, uint64(c.Index))
	return base64.RawURLEncoding.EncodeToString(b)
}

// ParseCursor decodes Cursor.String.
func ParseCursor(s string) (Cursor, error) {
	b, err := base64.RawURLEncoding.DecodeString(s)
	if err != nil {
		return Cursor{}, fmt.Errorf("cursor: not a cursor returned by this API")
	}
	var c Cursor
	var n int
	if c.TimeMS, n = binary.Varint(b); n <= 0 {
		return Cursor{}, fmt.Errorf("cursor: not a cursor returned by this API")
	}
	b = b[n:]
	if c.Batch, n = binary.Uvarint(b); n <= 0 {
		return Cursor{}, fmt.Errorf("cursor: not a cursor returned by this API")
	}
	b = b[n:]
	idx, n := binary.Uvarint(b)
	if n <= 0 || idx > 1<<32-1 || n != len(b) {
		return Cursor{}, fmt.Errorf("cursor: not a cursor returned by this API")
	}
	c.Index = uint32(idx)
	return c, nil
}

// StatsQuery groups the records of Filter by one column.
type StatsQuery struct {
	Filter
	GroupBy string // one of GroupByColumns
}

// GroupByColumns are the columns /v1/stats can group by.
var GroupByColumns = []string{"client_ip", "subject", "route", "status", "decision", "node", "apikey_id", "method", "authority", "response_flags"}

// Group is one row of a stats answer.
type Group struct {
	Key    string  `json:"key"`
	Count  int64   `json:"count"`
	Denied int64   `json:"denied"`
	P50MS  float64 `json:"p50_ms"`
	P99MS  float64 `json:"p99_ms"`
}

// Bucket is one time bucket of a histogram. Denied counts every denial,
// rate-limited requests included; Limited counts those (status 429).
type Bucket struct {
	Start   time.Time `json:"start"`
	Count   int64     `json:"count"`
	Denied  int64     `json:"denied"`
	Limited int64     `json:"limited"`
}

// Limits of the query language.
const (
	DefaultLimit    = 100
	MaxLimit        = 10000
	DefaultStatsTop = 10
	maxValueLen     = 512
	maxRange        = 400 * 24 * time.Hour
)

var filterParams = []string{"since", "until", "route", "subject", "client_ip", "decision", "path_prefix", "method", "node", "request_id", "apikey_id", "status", "denied", "limit", "cursor",
	"node_group", "authority", "provider", "auth_kind", "rule", "response_flags", "upstream_cluster", "user_agent", "path"}

// parseMatch reads the value syntax of a matching parameter: a leading !
// negates, a trailing * makes a prefix match ("petstore/*"); anything else
// is an exact value.
func parseMatch(col, s string) (Cond, error) {
	c, orig := Cond{Column: col}, s
	if rest, ok := strings.CutPrefix(s, "!"); ok {
		c.Not, s = true, rest
	}
	if rest, ok := strings.CutSuffix(s, "*"); ok {
		c.Prefix, s = true, rest
	}
	if s == "" {
		return c, fmt.Errorf("%s: %q has no value to match (write value, value* for a prefix, !value to negate)", col, orig)
	}
	if strings.ContainsAny(s, "*") {
		return c, fmt.Errorf("%s: %q: * is only allowed at the end (a prefix match)", col, s)
	}
	c.Value = s
	return c, nil
}

// ParseFilter reads a filter from URL parameters (the /v1/logs query
// language). extra names further parameters the caller accepts. since and
// until are a duration back from now ("15m", "1h", "7d"), RFC 3339 or Unix
// seconds; since defaults to 24h ago, until to now. Every problem is
// reported with the parameter's name.
func ParseFilter(v url.Values, now time.Time, extra ...string) (Filter, error) {
	var f Filter
	for k, vals := range v {
		if !slices.Contains(filterParams, k) && !slices.Contains(extra, k) {
			return f, fmt.Errorf("unknown parameter %q (known: %s)", k, strings.Join(append(slices.Clone(filterParams), extra...), ", "))
		}
		if len(vals) > 1 {
			return f, fmt.Errorf("parameter %q is given %d times; give it once", k, len(vals))
		}
		if len(vals[0]) > maxValueLen {
			return f, fmt.Errorf("parameter %q is longer than %d bytes", k, maxValueLen)
		}
	}
	var err error
	f.Since = now.Add(-24 * time.Hour)
	f.Until = now
	if s := v.Get("since"); s != "" {
		if f.Since, err = parseTime(s, now); err != nil {
			return f, fmt.Errorf("since: %w", err)
		}
	}
	if s := v.Get("until"); s != "" {
		if f.Until, err = parseTime(s, now); err != nil {
			return f, fmt.Errorf("until: %w", err)
		}
	}
	if !f.Since.Before(f.Until) {
		return f, fmt.Errorf("since (%s) must be before until (%s)", f.Since.Format(time.RFC3339), f.Until.Format(time.RFC3339))
	}
	if f.Until.Sub(f.Since) > maxRange {
		return f, fmt.Errorf("time range %s is longer than the maximum %s", f.Until.Sub(f.Since), maxRange)
	}
	legacy := map[string]*string{"route": &f.Route, "subject": &f.Subject, "node": &f.Node, "request_id": &f.RequestID, "apikey_id": &f.APIKeyID, "client_ip": &f.ClientIP, "method": &f.Method}
	for _, col := range CondColumns {
		s := v.Get(col)
		if s == "" {
			continue
		}
		c, err := parseMatch(col, s)
		if err != nil {
			return f, err
		}
		switch col {
		case "client_ip":
			if !c.Prefix {
				ip, err := netip.ParseAddr(c.Value)
				if err != nil {
					return f, fmt.Errorf("client_ip: %q is not an IP address (or a prefix ending in *)", c.Value)
				}
				c.Value = ip.String()
			}
		case "method":
			if strings.IndexFunc(c.Value, func(r rune) bool { return r < 'A' || r > 'Z' }) >= 0 {
				return f, fmt.Errorf("method: %q is not an upper-case HTTP method", c.Value)
			}
		case "path":
			if !strings.HasPrefix(c.Value, "/") {
				return f, fmt.Errorf("path: %q must start with /", c.Value)
			}
		}
		if p, ok := legacy[col]; ok && !c.Prefix && !c.Not {
			*p = c.Value
			continue
		}
		f.Conds = append(f.Conds, c)
	}
	if s := v.Get("decision"); s != "" {
		not := strings.HasPrefix(s, "!")
		d := strings.TrimPrefix(s, "!")
		if d != "allow" && d != "deny" && d != "shadow-deny" {
			return f, fmt.Errorf("decision: %q is not allow, deny or shadow-deny (! before it negates)", s)
		}
		if not {
			f.Conds = append(f.Conds, Cond{Column: "decision", Value: d, Not: true})
		} else {
			f.Decision = d
		}
	}
	if s := v.Get("path_prefix"); s != "" {
		if !strings.HasPrefix(s, "/") {
			return f, fmt.Errorf("path_prefix: %q must start with /", s)
		}
		f.PathPrefix = s
	}
	if s := v.Get("status"); s != "" {
		not := strings.HasPrefix(s, "!")
		st := strings.TrimPrefix(s, "!")
		c := Cond{Column: "status", Not: not}
		if len(st) == 3 && st[0] >= '1' && st[0] <= '5' && strings.EqualFold(st[1:], "xx") {
			c.Class = uint32(st[0] - '0')
		} else {
			n, err := strconv.ParseUint(st, 10, 32)
			if err != nil || n < 100 || n > 599 {
				return f, fmt.Errorf("status: %q is not an HTTP status (100-599) or a class (1xx-5xx); ! before it negates", s)
			}
			c.Value = st
			if !not {
				f.Status = uint32(n)
			}
		}
		if c.Not || c.Class != 0 {
			f.Conds = append(f.Conds, c)
		}
	}
	if s := v.Get("denied"); s != "" {
		b, err := strconv.ParseBool(s)
		if err != nil {
			return f, fmt.Errorf("denied: %q is not true or false", s)
		}
		f.Denied = &b
	}
	f.Limit = DefaultLimit
	if s := v.Get("limit"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 || n > MaxLimit {
			return f, fmt.Errorf("limit: %q is not a number from 1 to %d", s, MaxLimit)
		}
		f.Limit = n
	}
	if s := v.Get("cursor"); s != "" {
		c, err := ParseCursor(s)
		if err != nil {
			return f, err
		}
		f.After = &c
	}
	return f, nil
}

// ParseStats reads a stats query: the filter parameters plus group_by
// (required) and limit (top N, default 10).
func ParseStats(v url.Values, now time.Time) (StatsQuery, error) {
	var q StatsQuery
	g := v.Get("group_by")
	if g == "" {
		return q, fmt.Errorf("group_by is required (one of %s)", strings.Join(GroupByColumns, ", "))
	}
	if !slices.Contains(GroupByColumns, g) {
		return q, fmt.Errorf("group_by: %q is not one of %s", g, strings.Join(GroupByColumns, ", "))
	}
	lim := v.Get("limit")
	v = cloneWithout(v, "limit")
	f, err := ParseFilter(v, now, "group_by")
	if err != nil {
		return q, err
	}
	if f.After != nil {
		return q, fmt.Errorf("cursor: stats do not page")
	}
	f.Limit = DefaultStatsTop
	if lim != "" {
		n, err := strconv.Atoi(lim)
		if err != nil || n < 1 || n > 1000 {
			return q, fmt.Errorf("limit: %q is not a number from 1 to 1000", lim)
		}
		f.Limit = n
	}
	return StatsQuery{Filter: f, GroupBy: g}, nil
}

// ParseBucket reads the histogram bucket width: a Go duration of at least
// one second, or empty for about 60 buckets over the range.
func ParseBucket(s string, f Filter) (time.Duration, error) {
	span := f.Until.Sub(f.Since)
	if s == "" {
		b := (span / 60).Truncate(time.Second)
		return max(b, time.Second), nil
	}
	d, err := time.ParseDuration(s)
	if err != nil || d < time.Second {
		return 0, fmt.Errorf("bucket: %q is not a duration of at least 1s", s)
	}
	if span/d > 2000 {
		return 0, fmt.Errorf("bucket: %s gives more than 2000 buckets over %s", d, span)
	}
	return d, nil
}

func cloneWithout(v url.Values, keys ...string) url.Values {
	out := url.Values{}
	for k, vals := range v {
		if !slices.Contains(keys, k) {
			out[k] = vals
		}
	}
	return out
}

// parseTime reads a time as a duration back from now, RFC 3339 or Unix
// seconds.
func parseTime(s string, now time.Time) (time.Time, error) {
	if d, ok := strings.CutSuffix(s, "d"); ok {
		n, err := strconv.Atoi(d)
		if err == nil && n >= 0 && n <= 3650 {
			return now.Add(-time.Duration(n) * 24 * time.Hour), nil
		}
	}
	if d, err := time.ParseDuration(s); err == nil {
		if d < 0 || d > 10*365*24*time.Hour {
			return time.Time{}, fmt.Errorf("%q is out of range", s)
		}
		return now.Add(-d), nil
	}
	if t, err := time.Parse(time.RFC3339Nano, s); err == nil {
		return t.UTC(), nil
	}
	if n, err := strconv.ParseInt(s, 10, 64); err == nil && n >= 0 && n < 1<<40 {
		return time.Unix(n, 0).UTC(), nil
	}
	return time.Time{}, fmt.Errorf("%q is not a duration (15m, 1h, 7d), an RFC 3339 time or Unix seconds", s)
}
