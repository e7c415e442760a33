// Package accesslogsidecar is the accesslog role: it serves Envoy's
// AccessLogService (ALS v3) over gRPC, turns entries into redacted records
// with the accesslog library, feeds the Ingester, runs retention and the
// S3 archive, and serves the query API and web page over HTTP. Redaction
// settings come from a spec directory or from the control plane over xDS.
// It is wiring only: the logic lives in accesslog/...; it must not import
// cmd/ or other sidecars.
package accesslogsidecar

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"github.com/gatehouse-edge/gatehouse/contract"
	"hash/fnv"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"

	"github.com/gatehouse-edge/gatehouse/accesslog"
	"github.com/gatehouse-edge/gatehouse/accesslog/api"
	"github.com/gatehouse-edge/gatehouse/internal/sidecar"
	"github.com/gatehouse-edge/gatehouse/internal/telemetry"
	"github.com/gatehouse-edge/gatehouse/internal/tlsconfig"
)

// Config configures Run. Listeners, when set, take precedence over the
// addresses (gatehouse dev and tests pre-open them).
type Config struct {
	GRPCAddr     string
	HTTPAddr     string
	GRPCListener net.Listener
	HTTPListener net.Listener

	// Store is "duckdb:PATH" or "clickhouse://HOST:PORT/DB[?username=&password_file=]".
	Store             string
	DuckDBMemoryLimit string // default 512MB
	DuckDBThreads     int    // default 2
	// SpoolDir holds the on-disk segment log; default "<duckdb file>.spool",
	// or "./gatehouse-accesslog.spool" with ClickHouse.
	SpoolDir string
	// SpoolMaxBytes bounds the spool on disk (default 1 GiB): how much of a
	// store outage is absorbed before entries are dropped (and counted).
	SpoolMaxBytes int64

	// Archive is "s3://bucket/prefix" for hourly Parquet objects; empty: off.
	Archive         string
	ArchiveEndpoint string // S3 endpoint URL override (s3rver, MinIO); path-style is then used
	ArchiveRegion   string // default from the AWS config, else us-east-1
	// Retention drops whole days older than this; 0 keeps everything.
	Retention time.Duration

	// SpecDir: compile redaction settings from EdgeRoute files here.
	SpecDir string
	// XDSServer/NodeID/NodeCluster: subscribe to settings from the control plane.
	XDSServer   string
	NodeID      string
	NodeCluster string
	// TLS is the ALS gRPC port's TLS (mutual with a client CA); HTTPTLS
	// the query API's (HTTPS; its bearer tokens stay the login). Without
	// them a port must be on loopback (or Insecure). XDSTLS is the client
	// TLS toward the control plane.
	TLS     tlsconfig.Server
	HTTPTLS tlsconfig.Server
	XDSTLS  tlsconfig.Client

	// APITokenFile lists bearer tokens, one per line; APITokens adds tokens
	// in process (gatehouse dev). At least one is required.
	APITokenFile string
	APITokens    []string
	// RedactHMACKeyFile, when set, keeps an HMAC of masked values.
	RedactHMACKeyFile string
	// ChainKeyFile is the chain key ring ("<key id> <secret>" per line,
	// the last key signs new batches): the hash chain becomes HMAC-SHA256,
	// so whoever can write the store cannot recompute it. Without it the
	// chain is plain SHA-256 and a warning is logged.
	ChainKeyFile string
	// ChainAllowUnkeyedPrefix lets /v1/verify accept unkeyed batches at
	// the start of a chain (a store written before ChainKeyFile was set).
	ChainAllowUnkeyedPrefix bool

	BatchSize     int           // most entries per spool frame (default 10000)
	StoreBatch    int           // most entries per store batch (default accesslog.DefaultStoreBatch, 200000)
	StoreWriters  int           // store batches written at once (default accesslog.DefaultStoreWriters, 2; DuckDB only)
	StoreDelay    time.Duration // longest a spooled entry waits for its store batch to fill (default accesslog.DefaultStoreDelay, 2s)
	FlushInterval time.Duration // crash-loss window (default 100ms)

	Log      *slog.Logger
	Registry *prometheus.Registry
	// Ready, when set, is called once both listeners are open.
	Ready func(Addrs)

	// OutcomeInterval is how often the traffic outcome counts per (node
	// group, config version, route) are reported to the control plane at
	// XDSServer, for its rollout gate (default 1s; negative: never).
	OutcomeInterval time.Duration

	xdsDial []grpc.DialOption // from XDSTLS
	// wrapStore, when set (tests only, export_test.go), wraps the opened
	// store, e.g. to hold writes back so that entries stay in the spool.
	wrapStore func(accesslog.Store) accesslog.Store
}

// Addrs are the addresses Run listens on.
type Addrs struct{ GRPC, HTTP string }

// Run serves until ctx ends, then stops accepting entries, spools what is
// in memory and closes the store.
func Run(ctx context.Context, cfg Config) (err error) {
	log, reg := sidecar.Telemetry("accesslog", cfg.Log, cfg.Registry)
	tokens, err := loadTokens(cfg, log)
	if err != nil {
		return err
	}
	var hmacKey []byte
	if cfg.RedactHMACKeyFile != "" {
		if hmacKey, err = loadHMACKey(cfg.RedactHMACKeyFile, log); err != nil {
			return err
		}
	}
	var chainKeys *accesslog.KeyRing
	if cfg.ChainKeyFile != "" {
		if chainKeys, err = LoadChainKeys(cfg.ChainKeyFile, log); err != nil {
			return fmt.Errorf("accesslog: %w", err)
		}
	} else {
		log.Warn("no --chain-key-file: the log hash chain is plain SHA-256, which anyone who can write the store can recompute")
	}
	store, spoolDir, err := openStore(ctx, cfg, log)
	if err != nil {
		return err
	}
	if cfg.wrapStore != nil {
		store = cfg.wrapStore(store)
	}
	defer func() {
		if cerr := store.Close(); cerr != nil {
			err = errors.Join(err, fmt.Errorf("accesslog: closing store: %w", cerr))
		}
	}()

	metrics := accesslog.NewMetrics(reg)
	writer := writerID(cfg)
	ing, err := accesslog.NewIngester(ctx, accesslog.IngesterConfig{
		Store: store, Writer: writer, ChainKeys: chainKeys, SpoolDir: spoolDir, BatchSize: cfg.BatchSize, StoreBatch: cfg.StoreBatch, StoreWriters: cfg.StoreWriters, StoreDelay: cfg.StoreDelay, MaxSpoolBytes: cfg.SpoolMaxBytes, FlushInterval: cfg.FlushInterval,
		Log: log, Metrics: metrics,
	})
	if err != nil {
		return err
	}
	settings := newSettings(log, hmacKey, reg)

	dirs, xds, err := settings.sources(cfg)
	if err != nil {
		return err
	}
	if cfg.xdsDial, err = cfg.XDSTLS.GRPCDialOptions("--xds"); err != nil {
		return fmt.Errorf("accesslog: %w", err)
	}
	apiHandler, err := api.NewHandler(api.Config{Store: store, Tokens: tokens, Log: log, Registry: reg, Head: ing.Head,
		ChainKeys: chainKeys, AllowUnkeyedPrefix: cfg.ChainAllowUnkeyedPrefix})
	if err != nil {
		return err
	}
	outcomes := accesslog.NewOutcomes(0)
	var tasks []func(context.Context) error
	if cfg.XDSServer != "" && cfg.OutcomeInterval >= 0 {
		tasks = append(tasks, func(ctx context.Context) error { return runOutcomeReports(ctx, cfg, outcomes, log, reg) })
	}
	if cfg.Retention > 0 {
		tasks = append(tasks, func(ctx context.Context) error { return runRetention(ctx, ing, cfg.Retention, log) })
	}
	if cfg.Archive != "" {
		tasks = append(tasks, func(ctx context.Context) error {
			arch, err := newArchiver(ctx, cfg, store, spoolDir, log, reg)
			if err != nil {
				return err
			}
			return arch.run(ctx)
		})
	}

	// The ingester outlives the servers: it stops after the gRPC server has
	// drained, so every entry Envoy sent is spooled.
	ingCtx, stopIngest := context.WithCancel(context.WithoutCancel(ctx))
	ingDone := make(chan error, 1)
	go func() { ingDone <- ing.Run(ingCtx) }()

	err = sidecar.Run(ctx, sidecar.Config{
		Name: "accesslog", GRPCAddr: cmp.Or(cfg.GRPCAddr, contract.DefaultAccessLogAddr), AdminAddr: cmp.Or(cfg.HTTPAddr, contract.DefaultAccessLogHTTPAddr),
		GRPCListener: cfg.GRPCListener, AdminListener: cfg.HTTPListener,
		TLS: cfg.TLS, AdminTLS: &cfg.HTTPTLS, AdminFlag: "--http-addr", AdminWhat: "accesslog query API", XDSTLS: cfg.XDSTLS,
		// The ALS codec hands the stream handler raw messages; entries are
		// read from the wire into records without building protobuf messages.
		ServerOptions: []grpc.ServerOption{grpc.ForceServerCodecV2(newALSCodec())},
		Register: func(gs *grpc.Server) {
			gs.RegisterService(&alsServiceDesc, &alsServer{settings: settings, ing: ing, m: metrics, log: log, outcomes: outcomes})
		},
		HealthService: alsServiceDesc.ServiceName, HasConfig: settings.ready,
		Admin: func(admin *telemetry.Admin) { admin.AddReadyCheck("settings", settings.ready) },
		AdminHandler: func(admin http.Handler) http.Handler {
			mux := http.NewServeMux()
			// Metrics name routes and traffic volumes: on this port (often
			// not loopback) they need the query API's bearer token like /v1.
			mux.Handle("/metrics", tokens.Require(admin))
			mux.Handle("/healthz", admin)
			mux.Handle("/readyz", admin)
			mux.Handle("/", apiHandler)
			return mux
		},
		// The query API and web page take no request bodies.
		AdminLimits: []telemetry.ServerLimits{{MaxBodyBytes: 64 << 10}},
		Dirs:        dirs, XDS: xds, Tasks: tasks,
		Log: log, Registry: reg,
		Listening: func(g, h net.Addr) {
			if cfg.Ready != nil {
				cfg.Ready(Addrs{GRPC: g.String(), HTTP: h.String()})
			}
			log.Info("accesslog serving", "grpc_addr", g.String(), "http_addr", h.String(), "store", redactStoreURL(cfg.Store), "spool_dir", spoolDir, "chain_writer", writer, "chain_keys", chainKeys)
		},
	})
	stopIngest()
	return errors.Join(err, <-ingDone)
}

func loadTokens(cfg Config, log *slog.Logger) (*api.Tokens, error) {
	var toks []string
	if cfg.APITokenFile != "" {
		b, err := readSecretFile(cfg.APITokenFile, "api token file", log)
		if err != nil {
			return nil, fmt.Errorf("accesslog: %w", err)
		}
		if _, err := api.LoadTokens(cfg.APITokenFile); err != nil {
			return nil, fmt.Errorf("accesslog: %w", err)
		}
		for _, l := range strings.Split(string(b), "\n") {
			if l = strings.TrimSpace(l); l != "" && !strings.HasPrefix(l, "#") {
				toks = append(toks, l)
			}
		}
	}
	toks = append(toks, cfg.APITokens...)
	if len(toks) == 0 {
		return nil, errors.New("accesslog: the query API needs --api-token-file (one bearer token per line)")
	}
	t, err := api.NewTokens(toks...)
	if err != nil {
		return nil, fmt.Errorf("accesslog: %w", err)
	}
	return t, nil
}

// writerID names this process's hash chain. An embedded store has one
// writer (0); a shared ClickHouse store gets a chain per sidecar, derived
// from the node id (or host name) so it is stable across restarts.
func writerID(cfg Config) uint32 {
	if !strings.HasPrefix(cfg.Store, "clickhouse://") {
		return 0
	}
	name := cfg.NodeID
	if name == "" {
		name, _ = os.Hostname()
	}
	h := fnv.New32a()
	h.Write([]byte(name))
	return 1 + h.Sum32()%(accesslog.MaxWriter-1)
}

// redactStoreURL drops credentials from a store URL for logging.
func redactStoreURL(s string) string {
	if i := strings.Index(s, "?"); i >= 0 {
		s = s[:i]
	}
	if i := strings.Index(s, "@"); i >= 0 {
		if j := strings.Index(s, "://"); j >= 0 && j < i {
			s = s[:j+3] + s[i+1:]
		}
	}
	return s
}

// defaultSpool is the spool next to a DuckDB file.
func defaultSpool(path string) string {
	return filepath.Clean(path) + ".spool"
}

// settingsHolder owns the current redaction policy.
type settingsHolder struct {
	log     *slog.Logger
	hmacKey []byte
	policy  atomic.Pointer[accesslog.Redactor]
	loaded  atomic.Bool
	routes  prometheus.Gauge // routes with settings
	lastOK  prometheus.Gauge // 1 when the last load or reload was accepted
}

func newSettings(log *slog.Logger, hmacKey []byte, reg prometheus.Registerer) *settingsHolder {
	s := &settingsHolder{log: log, hmacKey: hmacKey,
		routes: prometheus.NewGauge(prometheus.GaugeOpts{Name: "gatehouse_accesslog_settings_routes", Help: "Routes with access-log settings."}),
		lastOK: prometheus.NewGauge(prometheus.GaugeOpts{Name: "gatehouse_accesslog_settings_last_reload_success", Help: "1 when the last settings load was accepted, 0 when it was rejected (the previous settings stay)."}),
	}
	reg.MustRegister(s.routes, s.lastOK)
	// Until settings arrive, mask everything a spec could call secret.
	s.policy.Store(accesslog.StrictRedactor(hmacKey))
	return s
}

func (s *settingsHolder) current() *accesslog.Redactor { return s.policy.Load() }

func (s *settingsHolder) set(specs []*accesslog.SpecSettings) {
	p := accesslog.NewRedactor(specs, s.hmacKey)
	s.policy.Store(p)
	s.loaded.Store(true)
	s.routes.Set(float64(p.Routes()))
	s.lastOK.Set(1)
	s.log.Info("access-log settings loaded", "specs", len(specs), "routes", p.Routes())
}

func (s *settingsHolder) ready() error {
	if !s.loaded.Load() {
		return errors.New("redaction settings not loaded yet")
	}
	return nil
}
