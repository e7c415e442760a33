package telemetry

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// ReadyFunc reports nil when the component can serve traffic.
type ReadyFunc func() error

// Admin is the admin HTTP server of a role: /metrics, /healthz (the process
// is alive) and /readyz (every registered check passes). Components add
// their own handlers (e.g. /debug/...) with Handle before serving
// Handler (with ServeHTTP).
type Admin struct {
	mux    *http.ServeMux
	log    *slog.Logger
	mu     sync.Mutex
	checks map[string]ReadyFunc
}

// NewAdmin builds the admin handler set for a registry.
func NewAdmin(log *slog.Logger, reg *prometheus.Registry) *Admin {
	a := &Admin{mux: http.NewServeMux(), log: log, checks: map[string]ReadyFunc{}}
	a.mux.Handle("GET /metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{Registry: reg}))
	a.mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		fmt.Fprintln(w, "ok")
	})
	a.mux.HandleFunc("GET /readyz", a.ready)
	return a
}

// AddReadyCheck registers a named readiness check.
func (a *Admin) AddReadyCheck(name string, f ReadyFunc) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.checks[name] = f
}

// Handle adds a handler to the admin mux (pattern as http.ServeMux).
func (a *Admin) Handle(pattern string, h http.Handler) { a.mux.Handle(pattern, h) }

// Handler is the admin mux, for tests and for embedding.
func (a *Admin) Handler() http.Handler { return a.mux }

func (a *Admin) ready(w http.ResponseWriter, _ *http.Request) {
	a.mu.Lock()
	checks := make(map[string]ReadyFunc, len(a.checks))
	for k, v := range a.checks {
		checks[k] = v
	}
	a.mu.Unlock()
	var failures []string
	for name, f := range checks {
		if err := f(); err != nil {
			failures = append(failures, fmt.Sprintf("%s: %v", name, err))
		}
	}
	if len(failures) > 0 {
		sort.Strings(failures)
		w.WriteHeader(http.StatusServiceUnavailable)
		fmt.Fprintln(w, strings.Join(failures, "\n"))
		return
	}
	fmt.Fprintln(w, "ready")
}

// Limits of every HTTP server Gatehouse runs (ServeHTTP): a client that
// sends its headers or body slowly, reads the answer slowly or keeps an
// idle connection open holds a goroutine and a socket only this long, and
// no request body is read past MaxBodyBytes. A handler that legitimately
// streams for longer (the access-log export) moves its own write deadline
// with http.ResponseController.
const (
	ReadHeaderTimeout = 10 * time.Second
	ReadTimeout       = 30 * time.Second
	WriteTimeout      = 60 * time.Second
	IdleTimeout       = 120 * time.Second
	MaxHeaderBytes    = 64 << 10
	// MaxBodyBytes covers the largest body any API takes: a broker
	// provision carrying a 1 MiB spec plus the OSB envelope.
	MaxBodyBytes = 2 << 20
)

// ServerLimits override the defaults above (tests; a role with other
// needs). Zero fields keep the default.
type ServerLimits struct {
	ReadHeaderTimeout, ReadTimeout, WriteTimeout, IdleTimeout time.Duration
	MaxHeaderBytes                                            int
	MaxBodyBytes                                              int64
}

// NewHTTPServer is the http.Server ServeHTTP runs: the timeouts and header
// limit set, and every request body capped (413 when Content-Length says
// it is too large; a read error past the cap otherwise).
func NewHTTPServer(h http.Handler, limits ...ServerLimits) *http.Server {
	l := ServerLimits{ReadHeaderTimeout, ReadTimeout, WriteTimeout, IdleTimeout, MaxHeaderBytes, MaxBodyBytes}
	for _, o := range limits {
		l.ReadHeaderTimeout = cmp.Or(o.ReadHeaderTimeout, l.ReadHeaderTimeout)
		l.ReadTimeout = cmp.Or(o.ReadTimeout, l.ReadTimeout)
		l.WriteTimeout = cmp.Or(o.WriteTimeout, l.WriteTimeout)
		l.IdleTimeout = cmp.Or(o.IdleTimeout, l.IdleTimeout)
		l.MaxHeaderBytes = cmp.Or(o.MaxHeaderBytes, l.MaxHeaderBytes)
		l.MaxBodyBytes = cmp.Or(o.MaxBodyBytes, l.MaxBodyBytes)
	}
	maxBody := l.MaxBodyBytes
	return &http.Server{
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.ContentLength > maxBody {
				w.Header().Set("Connection", "close")
				http.Error(w, fmt.Sprintf("request body over %d bytes", maxBody), http.StatusRequestEntityTooLarge)
				return
			}
			r.Body = http.MaxBytesReader(w, r.Body, maxBody)
			h.ServeHTTP(w, r)
		}),
		ReadHeaderTimeout: l.ReadHeaderTimeout,
		ReadTimeout:       l.ReadTimeout,
		WriteTimeout:      l.WriteTimeout,
		IdleTimeout:       l.IdleTimeout,
		MaxHeaderBytes:    l.MaxHeaderBytes,
	}
}

// ServeHTTP serves h on l with NewHTTPServer until ctx ends, then shuts
// down gracefully (in-flight requests get up to 5 s).
func ServeHTTP(ctx context.Context, l net.Listener, h http.Handler, limits ...ServerLimits) error {
	srv := NewHTTPServer(h, limits...)
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(l) }()
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	err := srv.Shutdown(sctx)
	if serr := <-errc; !errors.Is(serr, http.ErrServerClosed) {
		return serr
	}
	return err
}
