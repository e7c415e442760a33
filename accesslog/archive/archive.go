// Package archive writes the access-log archive: one Parquet object per
// completed hour, uploaded to S3 under
// <prefix>/dt=YYYY-MM-DD/hour=HH/<node>.parquet, with the hour's records
// read from an accesslog.Store. It remembers the last archived hour in a
// state file. It must not import a store driver, the sidecars or cmd/.
package archive

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"os"
	"path"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/parquet-go/parquet-go"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/gatehouse-edge/gatehouse/accesslog"
)

// Row is the Parquet schema of an archived record.
type Row struct {
	Time            time.Time `parquet:"time,timestamp(millisecond)"`
	RequestID       string    `parquet:"request_id"`
	Kind            string    `parquet:"kind,dict"`
	LogType         string    `parquet:"log_type,dict"`
	Node            string    `parquet:"node,dict"`
	NodeGroup       string    `parquet:"node_group,dict"`
	Route           string    `parquet:"route,dict"`
	Authority       string    `parquet:"authority,dict"`
	Method          string    `parquet:"method,dict"`
	Path            string    `parquet:"path"`
	Query           string    `parquet:"query"`
	Status          int32     `parquet:"status"`
	ResponseFlags   string    `parquet:"response_flags,dict"`
	DurationUS      int64     `parquet:"duration_us"`
	BytesIn         int64     `parquet:"bytes_in"`
	BytesOut        int64     `parquet:"bytes_out"`
	ClientIP        string    `parquet:"client_ip"`
	ClientPort      int32     `parquet:"client_port"`
	TLSVersion      string    `parquet:"tls_version,dict"`
	TLSSNI          string    `parquet:"tls_sni,dict"`
	PeerPrincipal   string    `parquet:"peer_principal"`
	UserAgent       string    `parquet:"user_agent"`
	Headers         string    `parquet:"headers"`
	UpstreamCluster string    `parquet:"upstream_cluster,dict"`
	UpstreamHost    string    `parquet:"upstream_host"`
	Subject         string    `parquet:"subject"`
	Provider        string    `parquet:"provider,dict"`
	AuthKind        string    `parquet:"auth_kind,dict"`
	APIKeyID        string    `parquet:"apikey_id"`
	Rule            string    `parquet:"rule,dict"`
	Decision        string    `parquet:"decision,dict"`
	Batch           int64     `parquet:"batch"`
	Index           int32     `parquet:"idx"`
}

// FromRecord converts a record to a row.
func FromRecord(r *accesslog.Record) Row {
	return Row{
		Time: r.Time, RequestID: r.RequestID, Kind: r.Kind, LogType: r.LogType, Node: r.Node,
		NodeGroup: r.NodeGroup, Route: r.Route, Authority: r.Authority, Method: r.Method,
		Path: r.Path, Query: r.Query, Status: int32(r.Status), ResponseFlags: r.ResponseFlags,
		DurationUS: r.DurationUS, BytesIn: int64(r.BytesIn), BytesOut: int64(r.BytesOut),
		ClientIP: r.ClientIP, ClientPort: int32(r.ClientPort), TLSVersion: r.TLSVersion,
		TLSSNI: r.TLSSNI, PeerPrincipal: r.PeerPrincipal, UserAgent: r.UserAgent,
		Headers: r.Headers, UpstreamCluster: r.UpstreamCluster, UpstreamHost: r.UpstreamHost,
		Subject: r.Subject, Provider: r.Provider, AuthKind: r.AuthKind, APIKeyID: r.APIKeyID,
		Rule: r.Rule, Decision: r.Decision, Batch: int64(r.Batch), Index: int32(r.Index),
	}
}

// ParseURL splits "s3://bucket/prefix".
func ParseURL(s string) (bucket, prefix string, err error) {
	u, err := url.Parse(s)
	if err != nil || u.Scheme != "s3" || u.Host == "" {
		return "", "", fmt.Errorf("archive %q: want s3://bucket/prefix", s)
	}
	return u.Host, strings.Trim(u.Path, "/"), nil
}

// Config configures an Archiver.
type Config struct {
	Client    *s3.Client
	Bucket    string
	Prefix    string
	Store     accesslog.Store
	Node      string // object name part: which sidecar wrote it
	StateFile string // last archived hour (RFC 3339)
	MaxBehind time.Duration
	Log       *slog.Logger
	Registry  prometheus.Registerer
	Now       func() time.Time
}

// Archiver uploads completed hours.
type Archiver struct {
	cfg      Config
	objects  prometheus.Counter
	rows     prometheus.Counter
	failures prometheus.Counter
}

// New builds an Archiver.
func New(cfg Config) (*Archiver, error) {
	if cfg.Client == nil || cfg.Bucket == "" || cfg.Store == nil || cfg.StateFile == "" {
		return nil, errors.New("archive: needs an S3 client, bucket, store and state file")
	}
	if cfg.Node == "" {
		cfg.Node = "accesslog"
	}
	if cfg.MaxBehind <= 0 {
		cfg.MaxBehind = 48 * time.Hour
	}
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	a := &Archiver{cfg: cfg,
		objects:  prometheus.NewCounter(prometheus.CounterOpts{Name: "gatehouse_accesslog_archive_objects_total", Help: "Parquet objects uploaded."}),
		rows:     prometheus.NewCounter(prometheus.CounterOpts{Name: "gatehouse_accesslog_archive_rows_total", Help: "Records archived."}),
		failures: prometheus.NewCounter(prometheus.CounterOpts{Name: "gatehouse_accesslog_archive_failures_total", Help: "Failed hour uploads (retried)."}),
	}
	if cfg.Registry != nil {
		cfg.Registry.MustRegister(a.objects, a.rows, a.failures)
	}
	return a, nil
}

// Key is the object key of an hour.
func (a *Archiver) Key(hour time.Time) string {
	hour = hour.UTC()
	return path.Join(a.cfg.Prefix, "dt="+hour.Format(time.DateOnly), fmt.Sprintf("hour=%02d", hour.Hour()), a.cfg.Node+".parquet")
}

// ArchiveHour writes the records of [hour, hour+1h) as one Parquet object
// and returns its key and row count. An hour without records writes
// nothing.
func (a *Archiver) ArchiveHour(ctx context.Context, hour time.Time) (string, int, error) {
	hour = hour.UTC().Truncate(time.Hour)
	var buf bytes.Buffer
	w := parquet.NewGenericWriter[Row](&buf, parquet.Compression(&parquet.Zstd))
	rows := make([]Row, 0, 1024)
	n := 0
	flush := func() error {
		if len(rows) == 0 {
			return nil
		}
		_, err := w.Write(rows)
		rows = rows[:0]
		return err
	}
	err := a.cfg.Store.Export(ctx, accesslog.Filter{Since: hour, Until: hour.Add(time.Hour)}, func(r *accesslog.Record) error {
		rows = append(rows, FromRecord(r))
		n++
		if len(rows) == cap(rows) {
			return flush()
		}
		return nil
	})
	if err == nil {
		err = flush()
	}
	if err != nil {
		return "", 0, fmt.Errorf("archive hour %s: reading records: %w", hour.Format(time.RFC3339), err)
	}
	if n == 0 {
		return "", 0, nil
	}
	if err := w.Close(); err != nil {
		return "", 0, fmt.Errorf("archive hour %s: encoding parquet: %w", hour.Format(time.RFC3339), err)
	}
	key := a.Key(hour)
	_, err = a.cfg.Client.PutObject(ctx, &s3.PutObjectInput{
		Bucket: aws.String(a.cfg.Bucket), Key: aws.String(key),
		Body: bytes.NewReader(buf.Bytes()), ContentType: aws.String("application/vnd.apache.parquet"),
	})
	if err != nil {
		return "", 0, fmt.Errorf("archive hour %s: uploading s3://%s/%s: %w", hour.Format(time.RFC3339), a.cfg.Bucket, key, err)
	}
	a.objects.Inc()
	a.rows.Add(float64(n))
	return key, n, nil
}

// CatchUp archives every completed hour after the last archived one (at
// most MaxBehind back) and records progress in the state file.
func (a *Archiver) CatchUp(ctx context.Context) error {
	now := a.cfg.Now().UTC()
	last := now.Truncate(time.Hour).Add(-time.Hour) // newest completed hour
	next := now.Add(-a.cfg.MaxBehind).Truncate(time.Hour)
	if b, err := os.ReadFile(a.cfg.StateFile); err == nil {
		t, perr := time.Parse(time.RFC3339, strings.TrimSpace(string(b)))
		if perr != nil {
			return fmt.Errorf("archive state %s: %w", a.cfg.StateFile, perr)
		}
		if t.Add(time.Hour).After(next) {
			next = t.Add(time.Hour)
		}
	} else if !os.IsNotExist(err) {
		return fmt.Errorf("archive state: %w", err)
	}
	for h := next; !h.After(last); h = h.Add(time.Hour) {
		key, n, err := a.ArchiveHour(ctx, h)
		if err != nil {
			a.failures.Inc()
			return err
		}
		if n > 0 {
			a.cfg.Log.Info("archived access-log hour", "hour", h.Format(time.RFC3339), "rows", n, "key", key)
		}
		tmp := a.cfg.StateFile + ".tmp"
		if err := os.WriteFile(tmp, []byte(h.Format(time.RFC3339)+"\n"), 0o600); err != nil {
			return fmt.Errorf("archive state: %w", err)
		}
		if err := os.Rename(tmp, a.cfg.StateFile); err != nil {
			return fmt.Errorf("archive state: %w", err)
		}
	}
	return nil
}

// Run catches up now and then every interval until ctx ends.
func (a *Archiver) Run(ctx context.Context, interval time.Duration) error {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		if err := a.CatchUp(ctx); err != nil && ctx.Err() == nil {
			a.cfg.Log.Error("access-log archive failed; retrying later", "error", err)
		}
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}
