package broker

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/sync/errgroup"

	"github.com/gatehouse-edge/gatehouse/broker/api"
	"github.com/gatehouse-edge/gatehouse/broker/backend"
	"github.com/gatehouse-edge/gatehouse/broker/queue"
	"github.com/gatehouse-edge/gatehouse/broker/sealbox"
	"github.com/gatehouse-edge/gatehouse/broker/store"
	"github.com/gatehouse-edge/gatehouse/contract"
	"github.com/gatehouse-edge/gatehouse/internal/telemetry"
	"github.com/gatehouse-edge/gatehouse/spec"
)

// Config configures the broker role. Either StoreURL/QueueURL or
// Store/Queue (already open, e.g. shared in-process by `gatehouse dev`).
type Config struct {
	HTTPAddr  string // OSB API (default 127.0.0.1:8080)
	AdminAddr string // /metrics, /healthz, /readyz (default 127.0.0.1:8083; "-" = none)
	StoreURL  string // sqlite:PATH | dynamodb://TABLE
	QueueURL  string // sqlite:PATH | sqs://QUEUE-URL
	Store     store.Store
	Queue     queue.Queue
	Backend   backend.Options
	Username  string
	Password  string // never logged
	// BindWait: see api.Config.BindWait.
	BindWait time.Duration
	// BindingKeyFile holds the AES-256 key that seals the API key of a
	// bind answered 202 until the platform fetches it (64 hex digits or
	// base64, mode 0600). Empty: a random key for this process only, so a
	// restart makes pending keys unfetchable. BindingKey, when set, wins.
	BindingKeyFile string
	BindingKey     *sealbox.Box
	// PendingKeyTTL: see api.Config.PendingKeyTTL (default 24h).
	PendingKeyTTL time.Duration
	// KeySweepInterval is how often expired pending keys are wiped from
	// the store (default 1m).
	KeySweepInterval time.Duration
	// SweepInterval and SweepGrace tune the outbox sweeper (defaults 5s);
	// OpDeadline fails operations no worker finished (see
	// Sweeper.Deadline; default 1h).
	SweepInterval, SweepGrace, OpDeadline time.Duration
	Log                                   *slog.Logger
	Registry                              *prometheus.Registry
	// HTTPListener, when set, serves the OSB API instead of HTTPAddr
	// (tests, gatehouse dev).
	HTTPListener net.Listener
	// Ready, when set, is called once the OSB API and the admin server
	// listen, with their addresses (admin nil with AdminAddr "-").
	Ready func(api, admin net.Addr)
	// Tenancy: see api.Config.Tenancy.
	Tenancy api.Tenancy
	// UpstreamAllow lifts the refusal of spec upstreams that point at the
	// node or the platform (--upstream-allow); the broker's own addresses
	// stay refused, and so do NodeServices (the control plane's sidecar
	// and Envoy admin addresses, so the API answers 400 rather than the
	// worker failing the operation).
	UpstreamAllow spec.UpstreamAllow
	NodeServices  []spec.NodeService
}

// Run serves the OSB API and runs the outbox sweeper until ctx ends.
func Run(ctx context.Context, cfg Config) error {
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	if cfg.Registry == nil {
		cfg.Registry = telemetry.NewRegistry()
	}
	if cfg.HTTPAddr == "" {
		cfg.HTTPAddr = contract.DefaultBrokerAddr
	}
	if cfg.AdminAddr == "" {
		cfg.AdminAddr = contract.DefaultBrokerAdminAddr
	}
	log := cfg.Log.With("component", "broker")
	st, q := cfg.Store, cfg.Queue
	if st == nil {
		s, err := backend.OpenStore(ctx, cfg.StoreURL, cfg.Backend)
		if err != nil {
			return fmt.Errorf("broker: %w", err)
		}
		defer s.Close()
		st = s
	}
	if q == nil {
		qq, err := backend.OpenQueue(ctx, cfg.QueueURL, cfg.Backend)
		if err != nil {
			return fmt.Errorf("broker: %w", err)
		}
		defer qq.Close()
		q = qq
	}
	box := cfg.BindingKey
	if box == nil && cfg.BindingKeyFile != "" {
		b, err := sealbox.LoadKeyFile(cfg.BindingKeyFile)
		if err != nil {
			return fmt.Errorf("broker: %w", err)
		}
		box = b
	}
	if box == nil {
		log.Warn("no --binding-key-file: keys of binds answered 202 are sealed with a key that lives only as long as this process")
	}
	own := cfg.HTTPAddr
	if cfg.HTTPListener != nil {
		own = cfg.HTTPListener.Addr().String()
	}
	h, err := api.New(api.Config{Store: st, Queue: q, Log: cfg.Log, Registry: cfg.Registry,
		Username: cfg.Username, Password: cfg.Password, BindWait: cfg.BindWait, Tenancy: cfg.Tenancy,
		KeyBox: box, PendingKeyTTL: cfg.PendingKeyTTL,
		SpecPolicy: spec.Policy{Upstreams: spec.UpstreamPolicy{Allow: cfg.UpstreamAllow, Reserved: append([]spec.NodeService{
			{Addr: own, What: "the broker"}, {Addr: cfg.AdminAddr, What: "the broker's admin server"},
		}, cfg.NodeServices...)}}})
	if err != nil {
		return fmt.Errorf("broker: %w", err)
	}
	sw, err := NewSweeper(st, q, cfg.Log, cfg.Registry)
	if err != nil {
		return fmt.Errorf("broker: %w", err)
	}
	sw.Interval, sw.Grace, sw.Deadline = cfg.SweepInterval, cfg.SweepGrace, cfg.OpDeadline
	l := cfg.HTTPListener
	if l == nil {
		if l, err = net.Listen("tcp", cfg.HTTPAddr); err != nil {
			return fmt.Errorf("broker: listening for the OSB API on %s: %w", cfg.HTTPAddr, err)
		}
	}
	g, gctx := errgroup.WithContext(ctx)
	var adminAddr net.Addr
	if cfg.AdminAddr != "-" {
		al, err := net.Listen("tcp", cfg.AdminAddr)
		if err != nil {
			l.Close()
			return fmt.Errorf("broker: listening for the admin server on %s: %w", cfg.AdminAddr, err)
		}
		admin := telemetry.NewAdmin(cfg.Log, cfg.Registry)
		admin.AddReadyCheck("store", func() error {
			c, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			defer cancel()
			return st.Ping(c)
		})
		g.Go(func() error { return telemetry.ServeHTTP(gctx, al, admin.Handler()) })
		log.Info("admin listening", "addr", al.Addr().String())
		adminAddr = al.Addr()
	}
	g.Go(func() error { return telemetry.ServeHTTP(gctx, l, h) })
	g.Go(func() error { sw.Run(gctx); return nil })
	g.Go(func() error { sweepKeys(gctx, h, cfg.KeySweepInterval, log); return nil })
	log.Info("OSB API listening", "addr", l.Addr().String(), "store", redactRef(cfg.StoreURL), "queue", redactRef(cfg.QueueURL))
	if cfg.Ready != nil {
		cfg.Ready(l.Addr(), adminAddr)
	}
	return g.Wait()
}

// sweepKeys wipes expired pending binding keys every interval until ctx
// ends.
func sweepKeys(ctx context.Context, h *api.API, interval time.Duration, log *slog.Logger) {
	if interval <= 0 {
		interval = time.Minute
	}
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			if _, err := h.WipeExpiredKeys(ctx); err != nil && ctx.Err() == nil {
				log.Warn("wiping expired pending binding keys failed; retrying next interval", "err", err)
			}
		}
	}
}

// redactRef keeps a backend reference loggable (they carry no secrets, but
// an SQS URL could carry a presigned query string).
func redactRef(ref string) string {
	for i, c := range ref {
		if c == '?' {
			return ref[:i] + "?…"
		}
	}
	return ref
}

// LogValue prints the configuration without the password.
func (c Config) LogValue() slog.Value {
	return slog.GroupValue(slog.String("http_addr", c.HTTPAddr), slog.String("admin_addr", c.AdminAddr),
		slog.String("store", redactRef(c.StoreURL)), slog.String("queue", redactRef(c.QueueURL)),
		slog.String("username", c.Username), slog.String("password", "[redacted]"))
}
