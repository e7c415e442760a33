package ratelimitsidecar

import (
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"

	rlsconfv3 "github.com/envoyproxy/go-control-plane/ratelimit/config/ratelimit/v3"
	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/protobuf/types/known/anypb"

	"github.com/gatehouse-edge/gatehouse/contract"
	"github.com/gatehouse-edge/gatehouse/internal/specdir"
	"github.com/gatehouse-edge/gatehouse/ratelimit"
	"github.com/gatehouse-edge/gatehouse/ratelimit/config"
)

// Sources are where the rules come from. Each source's last good content is
// kept; any change rebuilds the whole rule set, and the service switches
// to it only if it builds. A failed update leaves the previous rules
// serving and is returned (and NACKed, for xDS).
type sources struct {
	mu  sync.Mutex
	svc *ratelimit.Service
	m   *ratelimit.Metrics
	sm  *sourceMetrics
	log *slog.Logger

	dir     []*config.Domain       // --config-dir
	specs   []*ratelimit.SpecRules // --spec-dir
	xdsRLC  []*config.Domain       // RateLimitConfig resources
	xdsExt  []*ratelimit.SpecRules // extension resources; nil = none present
	loaded  bool
	summary string
	// started is set once New returned: before, a rejected source stops
	// the start; after, the previous config keeps serving.
	started bool
}

func (s *sources) setStarted() {
	s.mu.Lock()
	s.started = true
	s.mu.Unlock()
}

// consequence says what a rejected source means now, for the log.
func (s *sources) consequence() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.consequenceLocked()
}

func (s *sources) consequenceLocked() string {
	if !s.started {
		return "the sidecar does not start (exit status 1); fix it, or check it offline with gatehouse ratelimit validate DIR"
	}
	return "previous config keeps serving"
}

type sourceMetrics struct {
	reloads     *prometheus.CounterVec
	lastSuccess *prometheus.GaugeVec
}

func newSourceMetrics(reg prometheus.Registerer) (*sourceMetrics, error) {
	m := &sourceMetrics{
		reloads: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: "gatehouse", Subsystem: "ratelimit", Name: "config_loads_total",
			Help: "Config loads by source (config_dir, spec_dir, xds_rls, xds_ext) and result (success, failure)."}, []string{"source", "result"}),
		lastSuccess: prometheus.NewGaugeVec(prometheus.GaugeOpts{Namespace: "gatehouse", Subsystem: "ratelimit", Name: "config_last_reload_success",
			Help: "1 when the last load of a source succeeded, 0 when it failed (the previous config keeps serving)."}, []string{"source"}),
	}
	for _, c := range []prometheus.Collector{m.reloads, m.lastSuccess} {
		if err := reg.Register(c); err != nil {
			return nil, fmt.Errorf("ratelimit sidecar metrics: %w", err)
		}
	}
	return m, nil
}

// update applies change to a copy of the sources, rebuilds, and swaps.
func (s *sources) update(source string, change func(*sources)) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	next := &sources{dir: s.dir, specs: s.specs, xdsRLC: s.xdsRLC, xdsExt: s.xdsExt}
	change(next)
	rules, summary, err := next.build(s.m)
	if s.sm != nil {
		res := "success"
		v := 1.0
		if err != nil {
			res, v = "failure", 0
		}
		s.sm.reloads.WithLabelValues(source, res).Inc()
		s.sm.lastSuccess.WithLabelValues(source).Set(v)
	}
	if err != nil {
		s.log.Error("rate limit config rejected; "+s.consequenceLocked(), "source", source, "error", err)
		return err
	}
	s.dir, s.specs, s.xdsRLC, s.xdsExt = next.dir, next.specs, next.xdsRLC, next.xdsExt
	s.svc.SetRules(rules)
	s.loaded, s.summary = true, summary
	s.log.Info("rate limit config loaded", "source", source, "domains", summary)
	return nil
}

// failed records a source that could not even be read or parsed.
func (s *sources) failed(source string) {
	if s.sm != nil {
		s.sm.reloads.WithLabelValues(source, "failure").Inc()
		s.sm.lastSuccess.WithLabelValues(source).Set(0)
	}
}

func (s *sources) build(m *ratelimit.Metrics) (*ratelimit.Rules, string, error) {
	var domains []*config.Domain
	domains = append(domains, s.dir...)
	gatehouse := append([]*ratelimit.SpecRules(nil), s.specs...)
	gatehouse = append(gatehouse, s.xdsExt...)
	for _, d := range s.xdsRLC {
		if d.Name == contract.RateLimitDomain && s.xdsExt != nil {
			continue // the extension resources are authoritative for it
		}
		domains = append(domains, d)
	}
	if len(gatehouse) > 0 {
		d, err := ratelimit.Domain(gatehouse)
		if err != nil {
			return nil, "", err
		}
		domains = append(domains, d)
	}
	names := make([]string, len(domains))
	for i, d := range domains {
		names[i] = d.Name
	}
	r, err := ratelimit.NewRules(domains, m)
	if err != nil {
		return nil, "", err
	}
	return r, strings.Join(names, ","), nil
}

func (s *sources) ready() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.loaded {
		return errors.New("no rate limit config loaded yet")
	}
	return nil
}

// LoadSpecDir loads, validates and compiles every spec in dir with the same
// ratelimit.Compile the control plane uses.
func LoadSpecDir(dir string) ([]*ratelimit.SpecRules, error) {
	return specdir.LoadCompiled(dir, ratelimit.Compile)
}

// RulesFromResources decodes the SpecRules among TypedExtensionConfig
// resources (names with contract.RateLimitPrefix; other concerns' are
// skipped). It returns nil when there is none. Any bad one fails the set.
func RulesFromResources(resources []*anypb.Any) ([]*ratelimit.SpecRules, error) {
	return contract.Collect(resources, contract.RateLimitPrefix, contract.RateLimitRulesType, func(r *ratelimit.SpecRules) string { return r.Spec })
}

// DomainsFromResources decodes RateLimitConfig resources as
// envoyproxy/ratelimit does.
func DomainsFromResources(resources []*anypb.Any) ([]*config.Domain, error) {
	var out []*config.Domain
	var problems []string
	for _, a := range resources {
		var c rlsconfv3.RateLimitConfig
		if err := a.UnmarshalTo(&c); err != nil {
			problems = append(problems, fmt.Sprintf("resource of type %s is not a RateLimitConfig: %v", a.GetTypeUrl(), err))
			continue
		}
		d, err := config.FromProto("xds RateLimitConfig "+c.GetName(), &c)
		if err != nil {
			problems = append(problems, err.Error())
			continue
		}
		out = append(out, d)
	}
	if len(problems) > 0 {
		return nil, errors.New(strings.Join(problems, "; "))
	}
	return out, nil
}
