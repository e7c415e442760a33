// Package controlplane wires the control-plane pipeline together, the way
// it reads: source (revisions of specs) → compile (validated resources per
// node group) → snapshot (what each group is served, last known good,
// canary) → xds (ADS to the fleet and the sidecars). One goroutine owns
// every rebuild: source events are batched by a hold-off timer, then one
// compile runs; NACKs and the rollout's soak timer arrive on the same
// goroutine. It also serves the /debug endpoints.
//
// `gatehouse controlplane` calls Run; `gatehouse dev` builds one with New,
// registers its ADS service and debug handlers on servers it owns, and
// calls (*ControlPlane).Run.
//
// No package of the control plane (this one and those below it) may
// import the sidecars, dev, cmd/, frontdoor or the broker's api and worker
// packages: it reaches the broker only through the route store
// (controlplane/source).
package controlplane

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/gatehouse-edge/gatehouse/authn"

	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/sync/errgroup"
	"google.golang.org/grpc"

	"github.com/gatehouse-edge/gatehouse/controlplane/compile"
	"github.com/gatehouse-edge/gatehouse/controlplane/outcome"
	"github.com/gatehouse-edge/gatehouse/controlplane/snapshot"
	"github.com/gatehouse-edge/gatehouse/controlplane/source"
	"github.com/gatehouse-edge/gatehouse/controlplane/xds"
	"github.com/gatehouse-edge/gatehouse/internal/telemetry"
	"github.com/gatehouse-edge/gatehouse/internal/tlsconfig"
)

// Config is everything a control plane needs. Source is required.
type Config struct {
	Source   source.Source
	Reporter source.Reporter // default source.Discard
	Compile  compile.Options
	// HoldOff batches source events: a rebuild starts this long after the
	// first event of a burst. Default 100ms.
	HoldOff time.Duration
	// CanaryGroup, when set, gets every new version first; the rest of the
	// fleet follows after Soak without a NACK from the canary.
	CanaryGroup string
	Soak        time.Duration // default 60s
	// CanaryMinNACKs is how many distinct authenticated canary nodes
	// must NACK a candidate before it is rolled back (default 2). Without
	// a client CA (plaintext on loopback) every node counts as
	// authenticated.
	CanaryMinNACKs int
	// Gate compares the canary's traffic outcomes with the fleet's during
	// the soak (gate.go); the accesslog sidecars report them.
	Gate Gate
	// PublishQuorum is how many connected nodes of each node group must
	// have ACKed a version before its specs are reported published
	// (default 1; a group with fewer connected nodes needs all of them,
	// a group with none holds nothing back).
	PublishQuorum int
	// CertPoll is how often Compile.CertDir is checked for renewed
	// certificates (default 10s; negative: never).
	CertPoll time.Duration
	// Pprof serves Go's profiles under /debug/pprof/ on the admin port
	// (off by default: a profile burns CPU on demand).
	Pprof bool
	// JWKSAllow lets /debug/explain fetch JWKS from the internal
	// endpoints it names (the authz sidecar's --jwks-allow); nil: public
	// https only.
	JWKSAllow *authn.AllowList
	// TLS is the xDS port's TLS (Run): with a client CA, mutual TLS and
	// each node's group bound to its certificate.
	TLS tlsconfig.Server
	// TLSHandshakes, when positive, is how many TLS handshakes the xDS
	// port runs at once (Serve, which Run calls; default: unbounded); each
	// waits at most TLSHandshakeTimeout for its turn. Every handshake must
	// finish within TLSHandshakeTimeout (default
	// DefaultTLSHandshakeTimeout) instead of gRPC's 120 s.
	TLSHandshakes       int
	TLSHandshakeTimeout time.Duration
	// ReleaseAfter: once no node has connected and no rebuild has run for
	// this long after one did, Serve (and so Run, not (*ControlPlane).Run)
	// returns the free heap to the OS (release.go; default
	// DefaultReleaseAfter, negative: never).
	ReleaseAfter time.Duration
	// NodeGroups, when set, are exactly the node groups served.
	NodeGroups []string
	// MaxNodeGroups caps the groups nodes without a certificate may
	// create when NodeGroups is empty (default 64).
	MaxNodeGroups int
	// GroupGrace is how long a node group without a stream keeps its
	// snapshot (default 10m).
	GroupGrace time.Duration
	Log        *slog.Logger
	Registry   *prometheus.Registry // default: telemetry.NewRegistry()
	Now        func() time.Time
}

// ControlPlane is one running pipeline.
type ControlPlane struct {
	cfg      Config
	admit    *groupAdmission
	log      *slog.Logger
	compiler *compile.Compiler
	xds      *xds.Server
	pub      *snapshot.Publisher
	metrics  *metrics
	reports  chan []report

	pendingMu sync.Mutex
	pending   *source.Revision
	notify    chan struct{}
	nacks     chan xds.NACK
	outcomes  chan outcome.Report
	// window is the health gate's traffic of the soaking candidate
	// (gate.go); owned by the loop goroutine.
	window gateWindow
	certs  chan struct{}

	// lastRev is the last revision compiled (without its deletions);
	// owned by the loop goroutine.
	lastRev *source.Revision

	stateMu sync.Mutex
	state   State

	// deleted are the spec deletions not yet live on the whole fleet;
	// owned by the loop goroutine.
	deleted []report
	// canaryNACKs are the distinct nodes that NACKed the candidate
	// version; owned by the loop goroutine.
	canaryNACKs struct {
		version string
		nodes   map[string]bool
	}
	// acks holds the published reports until the nodes ACK (rollout.go).
	acks ackGate
	// release, set by Serve before anything runs, hears of rebuilds
	// (release.go); nil without Serve.
	release *memRelease
	// rejects are the specs a fleet node NACKed and the bisection that
	// finds them (rollout.go); owned by the loop goroutine.
	rejects fleetRejects
}

// New builds a control plane; nothing runs until Run.
func New(ctx context.Context, cfg Config) (*ControlPlane, error) {
	if cfg.Source == nil {
		return nil, errors.New("controlplane: a source is required")
	}
	if cfg.Registry == nil {
		cfg.Registry = telemetry.NewRegistry()
	}
	if cfg.Reporter == nil {
		cfg.Reporter = source.Discard
	}
	if cfg.HoldOff <= 0 {
		cfg.HoldOff = 100 * time.Millisecond
	}
	if cfg.PublishQuorum <= 0 {
		cfg.PublishQuorum = 1
	}
	if cfg.Soak <= 0 {
		cfg.Soak = time.Minute
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.CanaryMinNACKs <= 0 {
		cfg.CanaryMinNACKs = 2
	}
	cfg.Gate.defaults()
	if cfg.MaxNodeGroups <= 0 {
		cfg.MaxNodeGroups = DefaultMaxNodeGroups
	}
	if cfg.GroupGrace <= 0 {
		cfg.GroupGrace = DefaultGroupGrace
	}
	log := cfg.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	cfg.Compile.Log = log
	comp, err := compile.New(cfg.Compile)
	if err != nil {
		return nil, err
	}
	cp := &ControlPlane{
		cfg:      cfg,
		log:      log.With("component", "controlplane"),
		compiler: comp,
		metrics:  newMetrics(cfg.Registry),
		reports:  make(chan []report, 64),
		notify:   make(chan struct{}, 1),
		nacks:    make(chan xds.NACK, 1024),
		outcomes: make(chan outcome.Report, 1024),
		certs:    make(chan struct{}, 1),
		acks:     ackGate{done: make(chan ackedVersion, 16)},
	}
	cp.admit = &groupAdmission{cp: cp, dynamic: map[string]bool{}}
	cp.xds = xds.New(ctx, xds.Options{
		Admit:    cp.admit.admit,
		Log:      log,
		Registry: cfg.Registry,
		OnNACK:   cp.onNACK,
		OnGroup:  func(g string) { cp.pub.Ensure(context.Background(), g) },
		Now:      cfg.Now,
	})
	cp.pub = snapshot.New(cp.xds, log, cfg.Registry)
	cp.state.Rollout.Phase = PhaseIdle
	return cp, nil
}

// RegisterXDS adds the ADS service (SotW and delta) to g.
// It also serves the accesslog sidecars' outcome reports (gate.go).
func (cp *ControlPlane) RegisterXDS(g *grpc.Server) {
	cp.xds.Register(g)
	outcome.Register(g, cp.onOutcome)
}

// XDS is the xDS server (node status, snapshots).
func (cp *ControlPlane) XDS() *xds.Server { return cp.xds }

// Publisher is what each node group is served.
func (cp *ControlPlane) Publisher() *snapshot.Publisher { return cp.pub }

// Run watches the source and rebuilds until ctx ends.
func (cp *ControlPlane) Run(ctx context.Context) error {
	g, ctx := errgroup.WithContext(ctx)
	g.Go(func() error {
		if err := cp.cfg.Source.Watch(ctx, cp.offer); err != nil {
			return fmt.Errorf("source: %w", err)
		}
		return nil
	})
	g.Go(func() error { cp.reportLoop(ctx); return nil })
	g.Go(func() error { cp.loop(ctx); return nil })
	g.Go(func() error { cp.admit.collect(ctx); return nil })
	if cp.cfg.Compile.CertDir != "" && cp.cfg.CertPoll >= 0 {
		every := cp.cfg.CertPoll
		if every == 0 {
			every = 10 * time.Second
		}
		g.Go(func() error { cp.watchCerts(ctx, every); return nil })
	}
	return g.Wait()
}

// offer is the source callback: keep only the newest revision and wake
// the loop. It never blocks.
func (cp *ControlPlane) offer(rev source.Revision) {
	cp.pendingMu.Lock()
	if cp.pending != nil {
		// The newer revision replaces the pending one, but the deletions
		// the older one carried must still be reported.
		rev.Deleted = append(append([]source.Spec(nil), cp.pending.Deleted...), rev.Deleted...)
	}
	cp.pending = &rev
	cp.pendingMu.Unlock()
	select {
	case cp.notify <- struct{}{}:
	default:
	}
}

func (cp *ControlPlane) onNACK(n xds.NACK) {
	cp.metrics.nacks.Inc()
	select {
	case cp.nacks <- n:
	default:
		cp.metrics.nacksDropped.Inc()
	}
}

// loop is the one goroutine that compiles and publishes.
func (cp *ControlPlane) loop(ctx context.Context) {
	hold := time.NewTimer(time.Hour)
	hold.Stop()
	holding := false
	soak := time.NewTimer(time.Hour)
	soak.Stop()
	for {
		select {
		case <-ctx.Done():
			hold.Stop()
			soak.Stop()
			return
		case <-cp.notify:
			if !holding {
				holding = true
				hold.Reset(cp.cfg.HoldOff)
			}
		case <-hold.C:
			holding = false
			cp.pendingMu.Lock()
			rev := cp.pending
			cp.pending = nil
			cp.pendingMu.Unlock()
			if rev != nil && cp.rebuild(ctx, *rev) {
				soak.Reset(cp.cfg.Soak)
			}
		case r := <-cp.outcomes:
			if cp.outcomeReported(ctx, r) {
				soak.Stop()
			}
		case n := <-cp.nacks:
			if cp.canaryRejected(ctx, n) {
				soak.Stop()
			} else if cp.fleetRejected(ctx, n) {
				soak.Reset(cp.cfg.Soak)
			}
		case a := <-cp.acks.done:
			if cp.versionACKed(ctx, a) {
				soak.Reset(cp.cfg.Soak)
			}
		case <-soak.C:
			cp.promote(ctx)
		case <-cp.certs:
			cp.certsChanged()
		}
	}
}
