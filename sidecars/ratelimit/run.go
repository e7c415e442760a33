package ratelimitsidecar

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strings"
	"time"

	rlsv3 "github.com/envoyproxy/go-control-plane/envoy/service/ratelimit/v3"
	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"
	"google.golang.org/protobuf/types/known/anypb"

	"github.com/gatehouse-edge/gatehouse/contract"
	"github.com/gatehouse-edge/gatehouse/internal/sidecar"
	"github.com/gatehouse-edge/gatehouse/internal/specdir"
	"github.com/gatehouse-edge/gatehouse/internal/telemetry"
	"github.com/gatehouse-edge/gatehouse/internal/tlsconfig"
	"github.com/gatehouse-edge/gatehouse/ratelimit"
	"github.com/gatehouse-edge/gatehouse/ratelimit/config"
	"github.com/gatehouse-edge/gatehouse/ratelimit/redisstore"
)

// Config is the sidecar's configuration (`gatehouse ratelimit` flags).
type Config struct {
	GRPCAddr  string // default 127.0.0.1:8081
	AdminAddr string // default 127.0.0.1:6070
	// Config sources; at least one. They combine: envoyproxy YAML domains,
	// spec rules (domain gatehouse) and xDS.
	ConfigDir   string
	SpecDir     string
	XDSServer   string
	NodeID      string
	NodeCluster string
	// TLS is the gRPC port's TLS (mutual with a client CA); without it
	// the port must be on loopback (or TLS.Insecure). XDSTLS is the
	// client TLS toward the control plane.
	TLS    tlsconfig.Server
	XDSTLS tlsconfig.Client

	Backend  string // memory (default) | redis
	RedisURL string // see redisstore.Options.URL
	// RedisPasswordFile holds the Redis AUTH password; RedisCAFile the CA
	// of a rediss:// server.
	RedisPasswordFile, RedisCAFile string
	RedisTimeout                   time.Duration // default 50ms
	// RedisWorkers is the number of script calls in flight (default 2);
	// fewer means larger batches and less Redis CPU per request.
	RedisWorkers int
	// RedisCacheSize bounds the over-limit cache (keys; default 100,000;
	// negative disables it).
	RedisCacheSize int
	FailureMode    string // allow (default) | deny
	// MaxCounters caps the live counters in memory (the memory backend,
	// and local-scope limits with Redis); default
	// ratelimit.DefaultMaxCounters. When full, a hit that needs a new
	// counter is answered by its limit's failure mode.
	MaxCounters int
	// GlobalShadowMode answers OK to everything while still counting.
	GlobalShadowMode bool
	// ResponseHeaders adds RateLimit-Limit/-Remaining/-Reset
	// (envoyproxy's LIMIT_RESPONSE_HEADERS_ENABLED); the names default to
	// those, LimitHeader, RemainingHeader and ResetHeader change them
	// (LIMIT_LIMIT_HEADER, LIMIT_REMAINING_HEADER, LIMIT_RESET_HEADER).
	ResponseHeaders                           bool
	LimitHeader, RemainingHeader, ResetHeader string
	// MergeDomainConfig (envoyproxy's MERGE_DOMAIN_CONFIG) lets several
	// --config-dir files declare one domain; their descriptors combine.
	MergeDomainConfig bool
	// GlobalQuotaMode (envoyproxy's QUOTA_MODE) makes every descriptor a
	// quota_mode one.
	GlobalQuotaMode bool
	// ResponseDynamicMetadata (envoyproxy's RESPONSE_DYNAMIC_METADATA)
	// returns the request and the matched descriptors' metadata as
	// dynamic metadata.
	ResponseDynamicMetadata bool
	// BoundedMetricLabels keeps the configured rule as the metric label
	// of detailed_metric/value_to_metric limits too; off, they are
	// counted under envoyproxy's stat names with request values, at most
	// MaxDetailedMetrics names (0 = ratelimit.DefaultMaxDetailedSeries).
	BoundedMetricLabels bool
	MaxDetailedMetrics  int
	// KeyPrefix is prepended to Redis keys (envoyproxy's CACHE_KEY_PREFIX).
	KeyPrefix string
	// ReloadDelay is the hold-off that batches directory changes
	// (internal/specdir; default 200ms). The directories are also polled
	// every 30s in case a file event was lost.
	ReloadDelay time.Duration

	Log      *slog.Logger         // default: discard
	Registry *prometheus.Registry // default: telemetry.NewRegistry()
	Clock    ratelimit.Clock      // default: the system clock
	// Ready, when set, is called with the bound addresses once both
	// listeners are open (tests use ":0").
	Ready func(grpcAddr, adminAddr net.Addr)
}

// Sidecar is a configured rate-limit service without listeners: what Run
// serves, and what `gatehouse explain` and tests call in-process.
type Sidecar struct {
	cfg     Config
	log     *slog.Logger
	reg     *prometheus.Registry
	svc     *ratelimit.Service
	store   *redisstore.Store
	sources *sources
}

// New checks cfg, builds the backend and loads the directory sources once.
func New(cfg Config) (*Sidecar, error) {
	if cfg.ConfigDir == "" && cfg.SpecDir == "" && cfg.XDSServer == "" {
		return nil, errors.New("ratelimit: a config source is required: --config-dir DIR, --spec-dir DIR or --xds-server HOST:PORT --node-id ID")
	}
	if cfg.XDSServer != "" && cfg.NodeID == "" {
		return nil, errors.New("ratelimit: --xds-server needs --node-id")
	}
	mode, err := ratelimit.ParseFailureMode(cfg.FailureMode)
	if err != nil {
		return nil, fmt.Errorf("ratelimit: --failure-mode: %w", err)
	}
	log, reg := sidecar.Telemetry("ratelimit", cfg.Log, cfg.Registry)
	metrics, err := ratelimit.NewMetrics(reg)
	if err != nil {
		return nil, err
	}
	sm, err := newSourceMetrics(reg)
	if err != nil {
		return nil, err
	}
	s := &Sidecar{cfg: cfg, log: log, reg: reg}
	if cfg.MaxCounters < 0 {
		return nil, fmt.Errorf("ratelimit: --max-counters %d: want a positive number (0 = %d)", cfg.MaxCounters, ratelimit.DefaultMaxCounters)
	}
	mem := ratelimit.NewBoundedMemory(cfg.MaxCounters)
	if err := reg.Register(prometheus.NewGaugeFunc(prometheus.GaugeOpts{Namespace: "gatehouse", Subsystem: "ratelimit", Name: "memory_counters",
		Help: "Live counters in the sidecar's memory (at most --max-counters, see memory_full_total)."}, func() float64 { return float64(mem.Live()) })); err != nil {
		return nil, fmt.Errorf("ratelimit sidecar metrics: %w", err)
	}
	var backend ratelimit.Backend
	switch cfg.Backend {
	case "", "memory":
		backend = mem
		cfg.Backend = "memory"
	case "redis":
		if cfg.RedisURL == "" {
			return nil, errors.New("ratelimit: --backend redis needs --redis-url")
		}
		st, err := redisstore.New(redisstore.Options{URL: cfg.RedisURL, PasswordFile: cfg.RedisPasswordFile, TLSCAFile: cfg.RedisCAFile, Timeout: cfg.RedisTimeout, Workers: cfg.RedisWorkers,
			CacheSize: cfg.RedisCacheSize, Log: log, Metrics: metrics})
		if err != nil {
			return nil, fmt.Errorf("ratelimit: %w", err)
		}
		s.store, backend = st, st
		log.Info("redis backend", "url", redisstore.Redact(cfg.RedisURL), "timeout", st.Timeout().String())
	default:
		return nil, fmt.Errorf("ratelimit: --backend %q: want memory or redis", cfg.Backend)
	}
	s.svc, err = ratelimit.New(ratelimit.Options{
		Backend: backend, BackendName: cfg.Backend, Local: mem, Clock: cfg.Clock, Log: log, Metrics: metrics,
		FailureMode: mode, GlobalShadowMode: cfg.GlobalShadowMode, ResponseHeaders: cfg.ResponseHeaders, KeyPrefix: cfg.KeyPrefix,
		GlobalQuotaMode: cfg.GlobalQuotaMode, LimitHeader: cfg.LimitHeader, RemainingHeader: cfg.RemainingHeader, ResetHeader: cfg.ResetHeader,
		ResponseDynamicMetadata: cfg.ResponseDynamicMetadata, BoundedMetricLabels: cfg.BoundedMetricLabels, MaxDetailedSeries: cfg.MaxDetailedMetrics,
	})
	if err != nil {
		s.Close()
		return nil, err
	}
	if cfg.MaxDetailedMetrics < 0 {
		s.Close()
		return nil, fmt.Errorf("ratelimit: --max-detailed-metrics %d: want a positive number (0 = %d)", cfg.MaxDetailedMetrics, ratelimit.DefaultMaxDetailedSeries)
	}
	for _, h := range []struct{ flag, v string }{{"--limit-header", cfg.LimitHeader}, {"--remaining-header", cfg.RemainingHeader}, {"--reset-header", cfg.ResetHeader}} {
		if h.v != "" && !validHeaderName(h.v) {
			s.Close()
			return nil, fmt.Errorf("ratelimit: %s %q: not an HTTP header name (letters, digits and !#$%%&'*+-.^_`|~)", h.flag, h.v)
		}
	}
	s.sources = &sources{svc: s.svc, m: metrics, sm: sm, log: log}
	if cfg.ConfigDir != "" {
		if err := s.ReloadConfigDir(); err != nil {
			s.Close()
			return nil, err
		}
	}
	if cfg.SpecDir != "" {
		if err := s.ReloadSpecDir(); err != nil {
			s.Close()
			return nil, err
		}
	}
	s.sources.setStarted()
	return s, nil
}

// validHeaderName reports whether h is an HTTP field name (RFC 9110 token).
func validHeaderName(h string) bool {
	for i := 0; i < len(h); i++ {
		c := h[i]
		if 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || strings.IndexByte("!#$%&'*+-.^_`|~", c) >= 0 {
			continue
		}
		return false
	}
	return h != ""
}

// Close releases the backend.
func (s *Sidecar) Close() error {
	if s.store != nil {
		return s.store.Close()
	}
	return nil
}

// ReloadConfigDir re-reads --config-dir; on error the previous rules stay.
// At start-up (from New) an error means the sidecar does not start.
func (s *Sidecar) ReloadConfigDir() error {
	ds, err := config.LoadDirWith(s.cfg.ConfigDir, config.LoadOptions{MergeDomains: s.cfg.MergeDomainConfig})
	if err != nil {
		s.sources.failed("config_dir")
		s.log.Error("config dir rejected; "+s.sources.consequence(), "dir", s.cfg.ConfigDir, "error", err)
		return fmt.Errorf("ratelimit: %w", err)
	}
	return s.sources.update("config_dir", func(n *sources) { n.dir = ds })
}

// ReloadSpecDir re-reads --spec-dir; on error the previous rules stay.
func (s *Sidecar) ReloadSpecDir() error {
	rs, err := LoadSpecDir(s.cfg.SpecDir)
	if err != nil {
		s.sources.failed("spec_dir")
		s.log.Error("spec dir rejected; "+s.sources.consequence(), "dir", s.cfg.SpecDir, "error", err)
		return fmt.Errorf("ratelimit: %w", err)
	}
	return s.sources.update("spec_dir", func(n *sources) { n.specs = rs })
}

// HandleRateLimitConfigs is the xDS handler for RateLimitConfig resources.
func (s *Sidecar) HandleRateLimitConfigs(version string, res []*anypb.Any) error {
	ds, err := DomainsFromResources(res)
	if err == nil {
		err = s.sources.update("xds_rls", func(n *sources) { n.xdsRLC = ds })
	}
	if err != nil {
		return fmt.Errorf("RateLimitConfig version %s: %w", version, err)
	}
	return nil
}

// HandleExtensionConfigs is the xDS handler for the Gatehouse rule
// resources (TypedExtensionConfig, names with contract.RateLimitPrefix).
func (s *Sidecar) HandleExtensionConfigs(version string, res []*anypb.Any) error {
	rs, err := RulesFromResources(res)
	if err == nil {
		err = s.sources.update("xds_ext", func(n *sources) { n.xdsExt = rs })
	}
	if err != nil {
		return fmt.Errorf("rate limit rules version %s: %w", version, err)
	}
	return nil
}

// Ready reports nil once rules are loaded and the backend answers.
func (s *Sidecar) Ready(ctx context.Context) error {
	if err := s.sources.ready(); err != nil {
		return err
	}
	if s.store != nil {
		if err := s.store.Ping(ctx); err != nil {
			return fmt.Errorf("redis: %w", err)
		}
	}
	return nil
}

// streamWorkers bounds the reused stream goroutines (more streams get
// their own goroutine, as without the option).
const streamWorkers = 256

// Run serves RLS v3 until ctx ends.
func Run(ctx context.Context, cfg Config) error {
	if cfg.GRPCAddr == "" {
		cfg.GRPCAddr = contract.DefaultRateLimitAddr
	}
	if cfg.AdminAddr == "" {
		cfg.AdminAddr = contract.DefaultRateLimitAdminAddr
	}
	sc := sidecar.Config{Name: "ratelimit", GRPCAddr: cfg.GRPCAddr, AdminAddr: cfg.AdminAddr, TLS: cfg.TLS, XDSTLS: cfg.XDSTLS}
	if err := sc.Check(); err != nil {
		return err // before New: a refused port never loads config or dials Redis
	}
	s, err := New(cfg)
	if err != nil {
		return err
	}
	defer s.Close()

	var dirs []sidecar.Dir
	for _, d := range []sidecar.Dir{
		{Path: cfg.ConfigDir, Source: "config_dir", Reload: s.ReloadConfigDir, Loaded: true},
		{Path: cfg.SpecDir, Source: "spec_dir", Reload: s.ReloadSpecDir, Loaded: true},
	} {
		if d.Path != "" {
			dirs = append(dirs, d)
		}
	}
	return sidecar.Run(ctx, sidecar.Config{
		Name: sc.Name, GRPCAddr: sc.GRPCAddr, AdminAddr: sc.AdminAddr, TLS: sc.TLS, XDSTLS: sc.XDSTLS,
		// A fixed pool of stream goroutines: handlers park while Redis
		// answers, and fresh goroutines per request would grow their
		// stacks every time.
		ServerOptions: []grpc.ServerOption{grpc.NumStreamWorkers(streamWorkers)},
		Register:      func(gs *grpc.Server) { rlsv3.RegisterRateLimitServiceServer(gs, NewServer(s.svc)) },
		// gRPC health follows whether rules are loaded; /readyz also
		// asks Redis.
		HealthService: ServiceName, HasConfig: s.sources.ready,
		Admin: func(admin *telemetry.Admin) {
			admin.AddReadyCheck("ratelimit", func() error { return s.Ready(ctx) })
		},
		Dirs:  dirs,
		Watch: specdir.Options{HoldOff: cmp.Or(cfg.ReloadDelay, 200*time.Millisecond)},
		XDS: sidecar.XDS{Server: cfg.XDSServer, NodeID: cfg.NodeID, NodeCluster: cfg.NodeCluster, Subscriptions: []sidecar.Subscription{
			{TypeURL: contract.RateLimitConfigType, Handler: s.HandleRateLimitConfigs},
			{TypeURL: contract.ExtensionConfigType, Handler: s.HandleExtensionConfigs},
		}},
		Log: s.log, Registry: s.reg, Listening: cfg.Ready,
	})
}
