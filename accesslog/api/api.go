// Package api is the read-only query HTTP API of the access-log store and
// the small web page served with it: /v1/logs (filters, newest first,
// cursor pagination), /v1/stats (group by, counts, p50/p99), /v1/histogram,
// /v1/summary (total, histogram and top-N lists of one filter in one
// round trip), /v1/export (streaming NDJSON or CSV) and /v1/verify (hash
// chain). Every
// /v1 call needs "Authorization: Bearer <token>" with a token from the
// token file. It must not import a store driver, the sidecars or cmd/; it
// serves any accesslog.Store and opens no listener.
package api

import (
	"bufio"
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"embed"
	"encoding/csv"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net/http"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/sync/errgroup"

	"github.com/gatehouse-edge/gatehouse/accesslog"
)

// Tokens is a set of accepted bearer tokens, kept only as SHA-256 digests.
type Tokens struct{ sums [][32]byte }

// LoadTokens reads a token file: one token per line; blank lines and lines
// starting with # are ignored. The tokens are never logged.
func LoadTokens(path string) (*Tokens, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("api token file: %w", err)
	}
	var toks []string
	for _, line := range strings.Split(string(b), "\n") {
		line = strings.TrimSpace(line)
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		toks = append(toks, line)
	}
	if len(toks) == 0 {
		return nil, fmt.Errorf("api token file %s: no tokens (one per line)", path)
	}
	return NewTokens(toks...)
}

// NewTokens builds a token set; each token must be at least 16 bytes.
func NewTokens(toks ...string) (*Tokens, error) {
	t := &Tokens{}
	for i, tok := range toks {
		if len(tok) < 16 {
			return nil, fmt.Errorf("api token %d is shorter than 16 bytes", i+1)
		}
		t.sums = append(t.sums, sha256.Sum256([]byte(tok)))
	}
	return t, nil
}

// Valid reports whether tok is in the set, in time independent of which
// token matched.
func (t *Tokens) Valid(tok string) bool {
	if t == nil || tok == "" {
		return false
	}
	sum := sha256.Sum256([]byte(tok))
	ok := 0
	for _, s := range t.sums {
		ok |= subtle.ConstantTimeCompare(sum[:], s[:])
	}
	return ok == 1
}

// authorized checks the request's bearer token and answers 401 when it is
// missing or unknown.
func (t *Tokens) authorized(w http.ResponseWriter, r *http.Request) bool {
	tok, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	if ok && t.Valid(strings.TrimSpace(tok)) {
		return true
	}
	w.Header().Set("WWW-Authenticate", `Bearer realm="gatehouse-accesslog"`)
	writeJSON(w, http.StatusUnauthorized, map[string]string{"error": "missing or unknown bearer token"})
	return false
}

// Require serves h only to requests with a valid bearer token (the
// sidecar's /metrics on the query-API port).
func (t *Tokens) Require(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if t.authorized(w, r) {
			h.ServeHTTP(w, r)
		}
	})
}

// LogValue keeps tokens out of logs.
func (t *Tokens) LogValue() slog.Value { return slog.IntValue(len(t.sums)) }

// Config builds a Handler.
type Config struct {
	Store    accesslog.Store
	Tokens   *Tokens
	Log      *slog.Logger
	Registry prometheus.Registerer // optional
	Now      func() time.Time
	// Head, when set, is the last batch this process wrote (the
	// ingester's head). /v1/verify then also checks that the stored chain
	// still ends there: removing the newest batches leaves a chain that
	// links correctly, and only the writer knows where it should end.
	Head func() accesslog.BatchHeader
	// ChainKeys is the chain key ring /v1/verify checks against (nil: the
	// chain is unkeyed); AllowUnkeyedPrefix accepts unkeyed batches at
	// the start of a chain (a store written before the key was set).
	ChainKeys          *accesslog.KeyRing
	AllowUnkeyedPrefix bool
}

//go:embed web
var webFS embed.FS

type handler struct {
	cfg  Config
	log  *slog.Logger
	reqs *prometheus.CounterVec
	lat  *prometheus.HistogramVec
}

// NewHandler returns the API and web page as one http.Handler.
func NewHandler(cfg Config) (http.Handler, error) {
	if cfg.Store == nil || cfg.Tokens == nil {
		return nil, errors.New("api: needs a store and tokens")
	}
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	h := &handler{cfg: cfg, log: cfg.Log,
		reqs: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "gatehouse_accesslog_api_requests_total", Help: "Query API requests by endpoint and status code."}, []string{"endpoint", "code"}),
		lat:  prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "gatehouse_accesslog_api_seconds", Help: "Query API latency by endpoint.", Buckets: prometheus.ExponentialBuckets(0.001, 2.5, 12)}, []string{"endpoint"}),
	}
	if cfg.Registry != nil {
		cfg.Registry.MustRegister(h.reqs, h.lat)
	}
	mux := http.NewServeMux()
	mux.Handle("GET /v1/logs", h.api("logs", h.logs))
	mux.Handle("GET /v1/stats", h.api("stats", h.stats))
	mux.Handle("GET /v1/histogram", h.api("histogram", h.histogram))
	mux.Handle("GET /v1/summary", h.api("summary", h.summary))
	mux.Handle("GET /v1/export", h.api("export", h.export))
	mux.Handle("GET /v1/verify", h.api("verify", h.verify))
	sub, err := fs.Sub(webFS, "web")
	if err != nil {
		return nil, err
	}
	static := http.FileServerFS(sub)
	mux.Handle("GET /", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Security-Policy", "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; connect-src 'self'")
		w.Header().Set("X-Content-Type-Options", "nosniff")
		static.ServeHTTP(w, r)
	}))
	return mux, nil
}

// apiError carries an HTTP status to the boundary.
type apiError struct {
	code int
	msg  string
}

func (e *apiError) Error() string { return e.msg }

func badRequest(err error) error { return &apiError{code: http.StatusBadRequest, msg: err.Error()} }

type statusWriter struct {
	http.ResponseWriter
	code int
}

func (w *statusWriter) WriteHeader(c int) {
	if w.code == 0 {
		w.code = c
	}
	w.ResponseWriter.WriteHeader(c)
}

func (w *statusWriter) Write(b []byte) (int, error) {
	if w.code == 0 {
		w.code = http.StatusOK
	}
	return w.ResponseWriter.Write(b)
}

// Unwrap lets http.ResponseController reach the connection (deadlines).
func (w *statusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

func (w *statusWriter) Flush() {
	if f, ok := w.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}

func (h *handler) api(name string, fn func(http.ResponseWriter, *http.Request) error) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		sw := &statusWriter{ResponseWriter: w}
		defer func() {
			h.reqs.WithLabelValues(name, strconv.Itoa(max(sw.code, 200))).Inc()
			h.lat.WithLabelValues(name).Observe(time.Since(start).Seconds())
		}()
		sw.Header().Set("Cache-Control", "no-store")
		if !h.cfg.Tokens.authorized(sw, r) {
			return
		}
		err := fn(sw, r)
		if err == nil {
			return
		}
		var ae *apiError
		switch {
		case errors.As(err, &ae):
			writeJSON(sw, ae.code, map[string]string{"error": ae.msg})
		case errors.Is(err, context.Canceled):
		default:
			h.log.Error("access-log query failed", "endpoint", name, "error", err)
			if sw.code == 0 {
				writeJSON(sw, http.StatusInternalServerError, map[string]string{"error": "query failed: " + err.Error()})
			}
		}
	})
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	enc := json.NewEncoder(w)
	_ = enc.Encode(v)
}

// LogsResponse is the body of /v1/logs.
type LogsResponse struct {
	Records    []accesslog.Record `json:"records"`
	NextCursor string             `json:"next_cursor,omitempty"`
}

func (h *handler) logs(w http.ResponseWriter, r *http.Request) error {
	f, err := accesslog.ParseFilter(r.URL.Query(), h.cfg.Now())
	if err != nil {
		return badRequest(err)
	}
	recs, err := h.cfg.Store.Query(r.Context(), f)
	if err != nil {
		return err
	}
	resp := LogsResponse{Records: recs}
	if len(recs) == f.Limit {
		resp.NextCursor = accesslog.CursorOf(&recs[len(recs)-1]).String()
	}
	writeJSON(w, http.StatusOK, resp)
	return nil
}

// StatsResponse is the body of /v1/stats.
type StatsResponse struct {
	GroupBy string            `json:"group_by"`
	Groups  []accesslog.Group `json:"groups"`
}

func (h *handler) stats(w http.ResponseWriter, r *http.Request) error {
	q, err := accesslog.ParseStats(r.URL.Query(), h.cfg.Now())
	if err != nil {
		return badRequest(err)
	}
	g, err := h.cfg.Store.Stats(r.Context(), q)
	if err != nil {
		return err
	}
	if g == nil {
		g = []accesslog.Group{}
	}
	writeJSON(w, http.StatusOK, StatsResponse{GroupBy: q.GroupBy, Groups: g})
	return nil
}

// HistogramResponse is the body of /v1/histogram.
type HistogramResponse struct {
	BucketSeconds float64            `json:"bucket_seconds"`
	Buckets       []accesslog.Bucket `json:"buckets"`
}

func (h *handler) histogram(w http.ResponseWriter, r *http.Request) error {
	v := r.URL.Query()
	bucket := v.Get("bucket")
	v.Del("bucket")
	f, err := accesslog.ParseFilter(v, h.cfg.Now())
	if err != nil {
		return badRequest(err)
	}
	d, err := accesslog.ParseBucket(bucket, f)
	if err != nil {
		return badRequest(err)
	}
	b, err := h.cfg.Store.Histogram(r.Context(), f, d)
	if err != nil {
		return err
	}
	if b == nil {
		b = []accesslog.Bucket{}
	}
	writeJSON(w, http.StatusOK, HistogramResponse{BucketSeconds: d.Seconds(), Buckets: b})
	return nil
}

// SummaryResponse is the body of /v1/summary: everything the page shows
// above the table, for one filter. Total, Denied and Limited are the
// sums over the whole range (the histogram covers it).
type SummaryResponse struct {
	Since         time.Time                    `json:"since"`
	Until         time.Time                    `json:"until"`
	Total         int64                        `json:"total"`
	Denied        int64                        `json:"denied"`
	Limited       int64                        `json:"limited"`
	BucketSeconds float64                      `json:"bucket_seconds"`
	Buckets       []accesslog.Bucket           `json:"buckets"`
	Top           map[string][]accesslog.Group `json:"top"`
}

// DefaultSummaryTop are the top-N lists /v1/summary gives without top=.
var DefaultSummaryTop = []string{"route", "client_ip", "subject", "status"}

const maxSummaryTop = 100

func (h *handler) summary(w http.ResponseWriter, r *http.Request) error {
	v := r.URL.Query()
	bucket, top, topLimit := v.Get("bucket"), v.Get("top"), v.Get("top_limit")
	for _, k := range []string{"bucket", "top", "top_limit"} {
		if len(v[k]) > 1 {
			return badRequest(fmt.Errorf("parameter %q is given %d times; give it once", k, len(v[k])))
		}
		v.Del(k)
	}
	if v.Has("limit") || v.Has("cursor") {
		return badRequest(errors.New("summary takes no limit or cursor (top_limit sets the length of the top-N lists)"))
	}
	f, err := accesslog.ParseFilter(v, h.cfg.Now())
	if err != nil {
		return badRequest(err)
	}
	d, err := accesslog.ParseBucket(bucket, f)
	if err != nil {
		return badRequest(err)
	}
	groups := DefaultSummaryTop
	if top != "" {
		groups = strings.Split(top, ",")
		if len(groups) > len(accesslog.GroupByColumns) {
			return badRequest(fmt.Errorf("top: at most %d lists", len(accesslog.GroupByColumns)))
		}
		for i, g := range groups {
			if !slices.Contains(accesslog.GroupByColumns, g) {
				return badRequest(fmt.Errorf("top[%d]: %q is not one of %s", i, g, strings.Join(accesslog.GroupByColumns, ", ")))
			}
		}
	}
	n := accesslog.DefaultStatsTop
	if topLimit != "" {
		if n, err = strconv.Atoi(topLimit); err != nil || n < 1 || n > maxSummaryTop {
			return badRequest(fmt.Errorf("top_limit: %q is not a number from 1 to %d", topLimit, maxSummaryTop))
		}
	}
	resp := SummaryResponse{Since: f.Since, Until: f.Until, BucketSeconds: d.Seconds(), Top: make(map[string][]accesslog.Group, len(groups))}
	lists := make([][]accesslog.Group, len(groups))
	eg, ctx := errgroup.WithContext(r.Context())
	eg.Go(func() error {
		b, err := h.cfg.Store.Histogram(ctx, f, d)
		resp.Buckets = b
		return err
	})
	for i, g := range groups {
		q := accesslog.StatsQuery{Filter: f, GroupBy: g}
		q.Limit = n
		eg.Go(func() error {
			l, err := h.cfg.Store.Stats(ctx, q)
			lists[i] = l
			return err
		})
	}
	if err := eg.Wait(); err != nil {
		return err
	}
	if resp.Buckets == nil {
		resp.Buckets = []accesslog.Bucket{}
	}
	for _, b := range resp.Buckets {
		resp.Total += b.Count
		resp.Denied += b.Denied
		resp.Limited += b.Limited
	}
	for i, g := range groups {
		if lists[i] == nil {
			lists[i] = []accesslog.Group{}
		}
		resp.Top[g] = lists[i]
	}
	writeJSON(w, http.StatusOK, resp)
	return nil
}

func (h *handler) export(w http.ResponseWriter, r *http.Request) error {
	v := r.URL.Query()
	format := v.Get("format")
	v.Del("format")
	if format == "" {
		format = "ndjson"
	}
	if format != "ndjson" && format != "csv" {
		return badRequest(fmt.Errorf("format: %q is not ndjson or csv", format))
	}
	noLimit := v.Get("limit") == ""
	f, err := accesslog.ParseFilter(v, h.cfg.Now())
	if err != nil {
		return badRequest(err)
	}
	if noLimit {
		f.Limit = 0
	}
	bw := bufio.NewWriterSize(w, 64<<10)
	var write func(*accesslog.Record) error
	if format == "csv" {
		w.Header().Set("Content-Type", "text/csv; charset=utf-8")
		cw := csv.NewWriter(bw)
		if err := cw.Write(append(append([]string{}, accesslog.Columns...), "batch", "index")); err != nil {
			return err
		}
		write = func(rec *accesslog.Record) error {
			if err := cw.Write(CSVRow(rec)); err != nil {
				return err
			}
			cw.Flush()
			return cw.Error()
		}
	} else {
		w.Header().Set("Content-Type", "application/x-ndjson")
		enc := json.NewEncoder(bw)
		write = func(rec *accesslog.Record) error { return enc.Encode(rec) }
	}
	w.Header().Set("Content-Disposition", "attachment; filename=gatehouse-logs."+map[string]string{"csv": "csv", "ndjson": "ndjson"}[format])
	// An export streams for as long as the store has rows, past the
	// server's WriteTimeout: the write deadline moves with the progress (a
	// client that stops reading is still cut off after ExportStall); the
	// read deadline is lifted too, as the request has no body to read.
	rc := http.NewResponseController(w)
	var extended time.Time
	extend := func() {
		if now := time.Now(); now.Sub(extended) > time.Second {
			extended = now
			_ = rc.SetWriteDeadline(now.Add(ExportStall))
		}
	}
	_ = rc.SetReadDeadline(time.Time{})
	extend()
	w.WriteHeader(http.StatusOK)
	n := 0
	err = h.cfg.Store.Export(r.Context(), f, func(rec *accesslog.Record) error {
		extend()
		n++
		if err := write(rec); err != nil {
			return err
		}
		if n%10000 == 0 {
			if err := bw.Flush(); err != nil {
				return err
			}
			if fl, ok := w.(http.Flusher); ok {
				fl.Flush()
			}
		}
		return nil
	})
	if ferr := bw.Flush(); err == nil {
		err = ferr
	}
	return err
}

// ExportStall is how long an export may wait on a client that does not
// read before the connection is cut.
const ExportStall = time.Minute

// CSVRow is a record in accesslog.Columns order plus batch and index.
// Cells a spreadsheet would read as a formula (starting with =, +, -, @,
// tab or CR: a path, user agent or header is the client's choice) get a
// leading ' so they stay text.
func CSVRow(r *accesslog.Record) []string {
	row := csvRow(r)
	for i, c := range row {
		if c != "" && strings.ContainsRune("=+-@\t\r", rune(c[0])) {
			row[i] = "'" + c
		}
	}
	return row
}

func csvRow(r *accesslog.Record) []string {
	u := func(v uint64) string { return strconv.FormatUint(v, 10) }
	return []string{
		r.Time.UTC().Format("2006-01-02T15:04:05.000Z"), r.RequestID, r.Kind, r.LogType, r.Node, r.NodeGroup, r.Route,
		r.Authority, r.Method, r.Path, r.Query, u(uint64(r.Status)), r.ResponseFlags,
		strconv.FormatInt(r.DurationUS, 10), u(r.BytesIn), u(r.BytesOut), r.ClientIP, u(uint64(r.ClientPort)),
		r.TLSVersion, r.TLSSNI, r.PeerPrincipal, r.UserAgent, r.Headers,
		r.UpstreamCluster, r.UpstreamHost, r.Subject, r.Provider, r.AuthKind,
		r.APIKeyID, r.Rule, r.Decision, r.ConfigVersion, u(r.Batch), u(uint64(r.Index)),
	}
}

func (h *handler) verify(w http.ResponseWriter, r *http.Request) error {
	if len(r.URL.Query()) > 0 {
		return badRequest(errors.New("verify takes no parameters"))
	}
	res, err := accesslog.Verify(r.Context(), h.cfg.Store, accesslog.VerifyOptions{Keys: h.cfg.ChainKeys, AllowUnkeyedPrefix: h.cfg.AllowUnkeyedPrefix})
	if err != nil {
		return err
	}
	if res.OK && h.cfg.Head != nil {
		if want := h.cfg.Head(); want.Seq != 0 {
			got, err := h.cfg.Store.Head(r.Context(), accesslog.WriterOf(want.Seq))
			if err != nil {
				return err
			}
			if got.Seq < want.Seq || (got.Seq == want.Seq && got.Hash != want.Hash) {
				res.OK = false
				res.BrokenBatch = got.Seq + 1
				if got.Seq == want.Seq {
					res.BrokenBatch = got.Seq
				}
				res.Reason = fmt.Sprintf("this process wrote up to batch %d (hash %.12s…) but the stored chain ends at batch %d: the newest batches were removed or replaced", want.Seq, want.Hash, got.Seq)
			}
		}
	}
	writeJSON(w, http.StatusOK, res)
	return nil
}
