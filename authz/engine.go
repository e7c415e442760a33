package authz

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"cel.dev/cel-go/cel"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/gatehouse-edge/gatehouse/authn"
	"github.com/gatehouse-edge/gatehouse/spec"
)

// Options configure an Engine. Zero values take the defaults noted.
type Options struct {
	Log *slog.Logger // default: discard
	// Registry receives the engine's and authn's metrics; nil registers
	// nothing (metrics are still counted, just not exported).
	Registry prometheus.Registerer
	// HTTPClient fetches remote JWKS. Default: authn.NewJWKSClient with
	// JWKSAllow (public https endpoints, plus what JWKSAllow names).
	HTTPClient *http.Client
	// JWKSAllow lets the default HTTPClient reach internal JWKS endpoints
	// (and plain http to the hosts it names); nil allows none.
	JWKSAllow *authn.AllowList
	Clock     func() time.Time // default time.Now

	JWKSRefreshInterval    time.Duration // default 5m
	JWKSMinRefreshInterval time.Duration // unknown-kid refresh spacing, default 30s
	JWKSMaxStaleness       time.Duration // default 24h
	MaxTokenSize           int           // default 8 KiB
	TokenCacheSize         int           // default 10,000; negative disables the cache
	TokenCacheTTL          time.Duration // default 5m
	// KeepCredential forwards the credential (Authorization or the API-key
	// header/query parameter) upstream; by default it is removed.
	KeepCredential bool
	// CELCostLimit bounds the runtime cost of one `when` evaluation
	// (default 10,000); over it the rule errs and the request is denied.
	CELCostLimit uint64
}

// Engine decides requests against the current set of SpecPolicies. Decide
// is safe for concurrent use and never blocks on Update: Update builds the
// new evaluators fully and swaps them in atomically.
type Engine struct {
	opts    Options
	log     *slog.Logger
	metrics *Metrics
	authnM  *authn.Metrics
	cache   *authn.TokenCache
	env     *cel.Env

	snap atomic.Pointer[policySet]
	acts sync.Pool // *activation

	mu     sync.Mutex // serializes Update and Close
	jwks   map[string]*jwksRunner
	ctx    context.Context
	cancel context.CancelFunc
	closed bool
}

type jwksRunner struct {
	src    *authn.RemoteJWKS
	cancel context.CancelFunc
	done   chan struct{}
}

// NewEngine builds an engine with no policy loaded: until the first
// Update every request is denied (403, no_policy). Call Close to stop its
// JWKS refreshers.
func NewEngine(opts Options) (*Engine, error) {
	if opts.Log == nil {
		opts.Log = slog.New(slog.DiscardHandler)
	}
	if opts.Clock == nil {
		opts.Clock = time.Now
	}
	if opts.CELCostLimit == 0 {
		opts.CELCostLimit = 10000
	}
	if opts.MaxTokenSize <= 0 {
		opts.MaxTokenSize = authn.DefaultMaxTokenSize
	}
	if opts.HTTPClient == nil {
		opts.HTTPClient = authn.NewJWKSClient(opts.JWKSAllow, 0)
	}
	reg := opts.Registry
	if reg == nil {
		reg = prometheus.NewRegistry() // private: counted, not exported
	}
	m, err := NewMetrics(reg)
	if err != nil {
		return nil, err
	}
	am, err := authn.NewMetrics(reg)
	if err != nil {
		return nil, err
	}
	env, err := spec.NewCELEnv()
	if err != nil {
		return nil, fmt.Errorf("authz: CEL environment: %w", err)
	}
	e := &Engine{opts: opts, log: opts.Log, metrics: m, authnM: am, env: env, jwks: map[string]*jwksRunner{}}
	if opts.TokenCacheSize >= 0 {
		e.cache = authn.NewTokenCache(opts.TokenCacheSize, opts.TokenCacheTTL, am)
	}
	e.acts.New = func() any { return new(activation) }
	e.ctx, e.cancel = context.WithCancel(context.Background())
	return e, nil
}

// Ready is nil once a policy set has been loaded.
func (e *Engine) Ready() error {
	if e.snap.Load() == nil {
		return errors.New("no authz policy loaded yet")
	}
	return nil
}

// Routes lists the route ids of the current policy set.
func (e *Engine) Routes() []string {
	s := e.snap.Load()
	if s == nil {
		return nil
	}
	out := make([]string, 0, len(s.routes))
	for id := range s.routes {
		out = append(out, id)
	}
	return out
}

// Close stops the JWKS refreshers. Decide keeps working on the last keys.
func (e *Engine) Close() {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.closed {
		return
	}
	e.closed = true
	e.cancel()
	for _, r := range e.jwks {
		r.cancel()
		<-r.done
	}
	e.jwks = map[string]*jwksRunner{}
}

// Update replaces the whole policy set. On error nothing changes: the
// previous policies keep serving (the caller NACKs with the error).
func (e *Engine) Update(policies []*SpecPolicy) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.closed {
		return errors.New("authz engine is closed")
	}
	b := builder{e: e, newJWKS: map[string]*authn.RemoteJWKS{}, usedJWKS: map[string]bool{}}
	next, err := b.build(policies)
	if err != nil {
		e.metrics.updates.WithLabelValues("failure").Inc()
		return err
	}
	// Start the new JWKS sources before the swap so the first token that
	// needs one joins its initial fetch.
	for uri, src := range b.newJWKS {
		ctx, cancel := context.WithCancel(e.ctx)
		r := &jwksRunner{src: src, cancel: cancel, done: make(chan struct{})}
		go func() { defer close(r.done); src.Run(ctx) }()
		e.jwks[uri] = r
	}
	prev := e.snap.Swap(next)
	for uri, r := range e.jwks {
		if !b.usedJWKS[uri] {
			r.cancel()
			<-r.done
			delete(e.jwks, uri)
		}
	}
	if prev != nil {
		for id := range prev.routes {
			if next.routes[id] == nil {
				e.metrics.checks.DeletePartialMatch(prometheus.Labels{"route": id})
			}
		}
	}
	e.metrics.updates.WithLabelValues("success").Inc()
	e.metrics.routes.Set(float64(len(next.routes)))
	e.log.Info("authz policies loaded", "specs", len(policies), "routes", len(next.routes), "jwks_sources", len(e.jwks))
	return nil
}
