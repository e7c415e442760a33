package telemetry

import (
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
// their own handlers (e.g. /debug/...) with Handle before Serve.
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

// ServeHTTP serves h on l until ctx ends, then shuts down gracefully
// (in-flight requests get up to 5 s).
func ServeHTTP(ctx context.Context, l net.Listener, h http.Handler) error {
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second}
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

// Serve listens on addr and serves the admin mux until ctx ends.
func (a *Admin) Serve(ctx context.Context, addr string) error {
	l, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("admin listener: %w", err)
	}
	a.log.Info("admin http listening", "addr", l.Addr().String())
	return ServeHTTP(ctx, l, a.mux)
}
