package authn

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"sync"
	"sync/atomic"
	"time"
)

// maxJWKSBytes bounds one JWKS response body.
const maxJWKSBytes = 1 << 20

// RemoteJWKSConfig configures a JWKS fetched from a URI.
type RemoteJWKSConfig struct {
	URI string
	// Client fetches the document; its Timeout bounds one fetch. Default:
	// NewJWKSClient(nil, 0), which reaches public https endpoints only.
	Client *http.Client
	// RefreshInterval is the background refresh period (default 5m).
	RefreshInterval time.Duration
	// MinRefreshInterval is the least time between two fetches caused by
	// unknown kids (default 30s): a flood of random kids costs one fetch.
	MinRefreshInterval time.Duration
	// MaxStaleness is how long the last good set is used while refreshes
	// fail (default 24h); after that tokens are refused with
	// keys_unavailable rather than verified against keys nobody vouches for.
	MaxStaleness time.Duration
	Clock        func() time.Time
	Log          *slog.Logger
	Metrics      *Metrics
}

// RemoteJWKS is a KeySource fetched from a jwksUri: fetched when Run
// starts, refreshed in the background, and on demand (rate-limited,
// single-flight) when a token names an unknown kid. A failed fetch keeps
// the last good set.
type RemoteJWKS struct {
	cfg   RemoteJWKSConfig
	label string
	set   atomic.Pointer[KeySet]
	body  []byte // last fetched document, to keep the generation when unchanged

	mu          sync.Mutex
	lastAttempt time.Time
	lastSuccess atomic.Int64 // unix nanoseconds
	inflight    chan struct{}
	life        context.Context // Run's context; fetches end with it
}

// NewRemoteJWKS builds the source; call Run to start fetching.
func NewRemoteJWKS(cfg RemoteJWKSConfig) (*RemoteJWKS, error) {
	u, err := url.Parse(cfg.URI)
	if err != nil || u.Host == "" || (u.Scheme != "https" && u.Scheme != "http") {
		// Not echoed: a query string may carry a token.
		return nil, fmt.Errorf("jwks uri: want an absolute http(s) URL")
	}
	if u.User != nil {
		return nil, fmt.Errorf("jwks uri %s://%s%s: credentials in the URL are not allowed", u.Scheme, u.Host, u.Path)
	}
	if cfg.Client == nil {
		cfg.Client = NewJWKSClient(nil, 0)
	}
	if cfg.RefreshInterval <= 0 {
		cfg.RefreshInterval = 5 * time.Minute
	}
	if cfg.MinRefreshInterval <= 0 {
		cfg.MinRefreshInterval = 30 * time.Second
	}
	if cfg.MinRefreshInterval > cfg.RefreshInterval {
		cfg.MinRefreshInterval = cfg.RefreshInterval
	}
	if cfg.MaxStaleness <= 0 {
		cfg.MaxStaleness = 24 * time.Hour
	}
	if cfg.Clock == nil {
		cfg.Clock = time.Now
	}
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	// The label drops any query string: bounded, and never a credential.
	label := u.Scheme + "://" + u.Host + u.Path
	return &RemoteJWKS{cfg: cfg, label: label, life: context.Background()}, nil
}

// URI is the configured JWKS URI.
func (r *RemoteJWKS) URI() string { return r.cfg.URI }

// Run fetches now and then every RefreshInterval until ctx ends.
func (r *RemoteJWKS) Run(ctx context.Context) {
	if m := r.cfg.Metrics; m != nil {
		m.addSource(r)
		defer m.removeSource(r)
	}
	r.mu.Lock()
	r.life = ctx
	r.mu.Unlock()
	t := time.NewTicker(r.cfg.RefreshInterval)
	defer t.Stop()
	for {
		r.fetchShared(ctx)
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// Current is the last good set, or nil when none was fetched or it is
// older than MaxStaleness.
func (r *RemoteJWKS) Current() *KeySet {
	s := r.set.Load()
	if s == nil {
		return nil
	}
	if r.cfg.Clock().Sub(time.Unix(0, r.lastSuccess.Load())) > r.cfg.MaxStaleness {
		return nil
	}
	return s
}

// Age is the time since the last successful fetch, and false before the first.
func (r *RemoteJWKS) Age() (time.Duration, bool) {
	ns := r.lastSuccess.Load()
	if ns == 0 {
		return 0, false
	}
	return r.cfg.Clock().Sub(time.Unix(0, ns)), true
}

// RefreshForKID fetches again unless a fetch started less than
// MinRefreshInterval ago; a caller arriving while a fetch is in flight
// waits for that fetch instead of starting another (single flight).
func (r *RemoteJWKS) RefreshForKID(ctx context.Context, kid string) *KeySet {
	// Bound to the source's lifetime, not the request: one caller giving
	// up must not abort the fetch the others share. Client.Timeout bounds it.
	r.mu.Lock()
	life := r.life
	r.mu.Unlock()
	if ch := r.startFetch(life); ch != nil {
		select {
		case <-ch:
		case <-ctx.Done():
		}
	}
	return r.Current()
}

// startFetch starts a fetch unless one is in flight (then it returns that
// one's channel) or one started within MinRefreshInterval
// (then it returns nil). The channel closes when the fetch is done.
func (r *RemoteJWKS) startFetch(ctx context.Context) <-chan struct{} {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.inflight != nil {
		return r.inflight
	}
	now := r.cfg.Clock()
	if !r.lastAttempt.IsZero() && now.Sub(r.lastAttempt) < r.cfg.MinRefreshInterval {
		return nil
	}
	r.lastAttempt = now
	ch := make(chan struct{})
	r.inflight = ch
	go func() {
		r.fetch(ctx)
		r.mu.Lock()
		r.inflight = nil
		r.mu.Unlock()
		close(ch)
	}()
	return ch
}

// fetchShared is the background fetch: it joins a fetch in flight and
// skips when one started within MinRefreshInterval (e.g. for an unknown
// kid just before the tick).
func (r *RemoteJWKS) fetchShared(ctx context.Context) {
	if ch := r.startFetch(ctx); ch != nil {
		<-ch
	}
}

// fetch runs one fetch and records it; callers go through startFetch's single
// flight, so fetches never overlap.
func (r *RemoteJWKS) fetch(ctx context.Context) {
	err := r.fetchOnce(ctx)
	if err != nil && ctx.Err() != nil {
		return // shutting down: not a failure of the JWKS endpoint
	}
	if m := r.cfg.Metrics; m != nil {
		res := "success"
		if err != nil {
			res = "failure"
		}
		m.jwksFetches.WithLabelValues(r.label, res).Inc()
	}
	if err != nil {
		r.cfg.Log.Warn("jwks fetch failed; keeping the last good key set", "jwks_uri", r.label, "error", err)
	}
}

func (r *RemoteJWKS) fetchOnce(ctx context.Context) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, r.cfg.URI, nil)
	if err != nil {
		return fmt.Errorf("building request: %w", err)
	}
	req.Header.Set("Accept", "application/json")
	resp, err := r.cfg.Client.Do(req)
	if err != nil {
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err // the URL is in the log attributes already
		}
		return fmt.Errorf("GET: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET: status %d", resp.StatusCode)
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxJWKSBytes+1))
	if err != nil {
		return fmt.Errorf("reading body: %w", err)
	}
	if len(body) > maxJWKSBytes {
		return fmt.Errorf("body over %d bytes", maxJWKSBytes)
	}
	if cur := r.set.Load(); cur != nil && string(body) == string(r.body) {
		r.lastSuccess.Store(r.cfg.Clock().UnixNano())
		return nil
	}
	set, err := ParseKeySet(body)
	if err != nil {
		return err
	}
	r.body = body
	r.set.Store(set)
	r.lastSuccess.Store(r.cfg.Clock().UnixNano())
	r.cfg.Log.Info("jwks loaded", "jwks_uri", r.label, "keys", set.Len(), "refused_keys", len(set.refused))
	return nil
}
