package dev

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"github.com/gatehouse-edge/gatehouse/authn"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/gatehouse-edge/gatehouse/broker"
	"github.com/gatehouse-edge/gatehouse/broker/osbclient"
	"github.com/gatehouse-edge/gatehouse/broker/sealbox"
	"github.com/gatehouse-edge/gatehouse/broker/store"
	"github.com/gatehouse-edge/gatehouse/broker/worker"
	"github.com/gatehouse-edge/gatehouse/contract"
	"github.com/gatehouse-edge/gatehouse/controlplane"
	"github.com/gatehouse-edge/gatehouse/controlplane/compile"
	"github.com/gatehouse-edge/gatehouse/controlplane/envoy"
	"github.com/gatehouse-edge/gatehouse/controlplane/source"
	"github.com/gatehouse-edge/gatehouse/internal/telemetry"
	"github.com/gatehouse-edge/gatehouse/sidecars/accesslog"
	"github.com/gatehouse-edge/gatehouse/sidecars/authz"
	"github.com/gatehouse-edge/gatehouse/sidecars/ratelimit"
	"github.com/gatehouse-edge/gatehouse/spec"
)

// DemoAPIKey is the petstore example's demo API key (its SHA-256 is in
// deploy/examples/petstore.yaml). It exists to be tried; never ship it.
const DemoAPIKey = "gh_demo_acme_0123456789"

// DemoUpstream is the address deploy/examples/petstore.yaml gives its
// upstream: a documentation address (RFC 5737), so the examples pass the
// production rules. Dev provisions the examples with it replaced by
// EchoAddr, the one upstream on the node dev allows (--upstream-allow
// in production).
const DemoUpstream = "192.0.2.10:9080"

// BrokerUser is the OSB basic-auth user in dev mode; the password is
// generated on first start and kept in the data directory.
const BrokerUser = "broker"

// Config is what `gatehouse dev` needs. DefaultConfig fills the default
// addresses of package contract.
type Config struct {
	DataDir     string // embedded stores live here (./.gatehouse)
	ExamplesDir string // specs provisioned on first start (deploy/examples)
	NodeGroup   string // node.cluster of the dev sidecars (and of an Envoy you attach)

	BrokerAddr, BrokerAdminAddr     string
	XDSAddr, ControlPlaneAdminAddr  string
	AuthzAddr, AuthzAdminAddr       string
	RateLimitAddr, RateLimitAdmin   string
	AccessLogGRPCAddr, AccessLogAPI string
	EnvoyListenerAddr               string // what the compiled listener binds (for an Envoy you attach)
	IdPAddr                         string // demo identity provider
	EchoAddr                        string // demo upstream
	// JWKSAllow are internal JWKS endpoints the authz sidecar may fetch
	// besides the demo IdP at IdPAddr (always allowed).
	JWKSAllow []string
	// FrontDoorAddr is where the front door listens: an HTTP listener
	// that plays an Envoy of NodeGroup (package frontdoor); "" for none.
	FrontDoorAddr string
	// CanaryGroup, Soak and Gate are the control plane's staged rollout
	// and health gate (off by default in dev).
	CanaryGroup string
	Soak        time.Duration
	Gate        controlplane.Gate
	// UpstreamAllow are upstream addresses specs may use besides the demo
	// echo server (tests: a closed port).
	UpstreamAllow []string
	// ScopedRouteGroups are the control plane's scoped route groups
	// (--scoped-route-groups; tests: NodeGroup, also as the canary).
	ScopedRouteGroups []string

	Out io.Writer
	Log *slog.Logger
	// Ready, when set, is called once every role serves and the examples
	// are live (tests).
	Ready func(Endpoints)
}

// DefaultConfig is the configuration `make run` uses.
func DefaultConfig() Config {
	return Config{
		DataDir: ".gatehouse", ExamplesDir: "deploy/examples", NodeGroup: "dev",
		BrokerAddr: contract.DefaultBrokerAddr, BrokerAdminAddr: contract.DefaultBrokerAdminAddr,
		XDSAddr: contract.DefaultXDSAddr, ControlPlaneAdminAddr: contract.DefaultControlPlaneAdminAddr,
		AuthzAddr: contract.DefaultAuthzAddr, AuthzAdminAddr: contract.DefaultAuthzAdminAddr,
		RateLimitAddr: contract.DefaultRateLimitAddr, RateLimitAdmin: contract.DefaultRateLimitAdminAddr,
		AccessLogGRPCAddr: contract.DefaultAccessLogAddr, AccessLogAPI: contract.DefaultAccessLogHTTPAddr,
		EnvoyListenerAddr: contract.DefaultEnvoyHTTPAddr,
		IdPAddr:           "127.0.0.1:9081", EchoAddr: "127.0.0.1:9080",
		FrontDoorAddr: "127.0.0.1:10080",
	}
}

// Endpoints is what a running suite exposes, with the credentials to use it.
type Endpoints struct {
	Broker, BrokerUser, BrokerPassword string // OSB API base URL and basic auth
	XDS, ControlPlaneAdmin             string
	Authz, RateLimit, AccessLogGRPC    string
	AccessLogAPI, AccessLogToken       string // query API base URL and bearer token
	IdP, Echo                          string
	FrontDoor                          string // front door base URL; "" when off
	NodeGroup                          string
	Provisioned                        []string // example specs provisioned by this start
	// PKI: xDS and the sidecars' gRPC are mutual TLS; an Envoy of
	// NodeGroup (or a test playing one) presents PKI.Envoy().
	PKI *PKI
}

// Run starts the suite and blocks until ctx ends.
func Run(ctx context.Context, c Config) error {
	if c.Out == nil {
		c.Out = io.Discard
	}
	if c.Log == nil {
		c.Log = slog.New(slog.DiscardHandler)
	}
	if err := os.MkdirAll(c.DataDir, 0o700); err != nil {
		return fmt.Errorf("dev: data directory: %w", err)
	}
	idp, err := LoadIdP(c.DataDir)
	if err != nil {
		return err
	}
	brokerPassword, err := secretFile(filepath.Join(c.DataDir, "broker-password"))
	if err != nil {
		return err
	}
	logToken, err := secretFile(filepath.Join(c.DataDir, "accesslog-token"))
	if err != nil {
		return err
	}
	// The access-log hash chain is keyed: a one-key ring, mode 0600.
	chainKeys := filepath.Join(c.DataDir, "accesslog-chain.keys")
	chainSecret, err := secretFile(filepath.Join(c.DataDir, "accesslog-chain-secret"))
	if err != nil {
		return err
	}
	if err := os.WriteFile(chainKeys, []byte("dev-1 "+chainSecret+"\n"), 0o600); err != nil {
		return fmt.Errorf("dev: writing %s: %w", chainKeys, err)
	}
	bindingKey, err := sealbox.EnsureKeyFile(filepath.Join(c.DataDir, "binding-key"))
	if err != nil {
		return fmt.Errorf("dev: %w", err)
	}
	pki, err := loadPKI(c.DataDir, c.NodeGroup, time.Now())
	if err != nil {
		return err
	}

	st, q, err := broker.OpenEmbedded(ctx, c.DataDir, 30*time.Second)
	if err != nil {
		return fmt.Errorf("dev: %w", err)
	}
	defer st.Close()
	defer q.Close()

	ep := Endpoints{
		Broker: "http://" + c.BrokerAddr, BrokerUser: BrokerUser, BrokerPassword: brokerPassword,
		XDS: c.XDSAddr, ControlPlaneAdmin: "http://" + c.ControlPlaneAdminAddr,
		Authz: c.AuthzAddr, RateLimit: c.RateLimitAddr, AccessLogGRPC: c.AccessLogGRPCAddr,
		AccessLogAPI: "http://" + c.AccessLogAPI, AccessLogToken: logToken,
		IdP: "http://" + c.IdPAddr, Echo: "http://" + c.EchoAddr, NodeGroup: c.NodeGroup,
		PKI: pki,
	}
	// Specs may point at the demo upstream and nothing else on the node.
	allow, err := spec.ParseUpstreamAllow(append([]string{c.EchoAddr}, c.UpstreamAllow...))
	if err != nil {
		return fmt.Errorf("dev: demo upstream: %w", err)
	}
	if c.FrontDoorAddr != "" {
		ep.FrontDoor = "http://" + c.FrontDoorAddr
	}
	compileOpts := compile.Options{
		Sidecars:      envoy.Sidecars{Authz: c.AuthzAddr, RateLimit: c.RateLimitAddr, AccessLog: c.AccessLogGRPCAddr},
		HTTPAddress:   c.EnvoyListenerAddr,
		UpstreamAllow: allow,
		NodeServices:  c.nodeServices(),
		Log:           c.Log,

		ScopedRouteGroups: c.ScopedRouteGroups,
	}
	specPolicy := spec.Policy{Upstreams: spec.UpstreamPolicy{Allow: allow, Reserved: compile.NodeServices(compileOpts)}}
	cpListeners, err := controlplane.Listen(c.XDSAddr, c.ControlPlaneAdminAddr)
	if err != nil {
		return fmt.Errorf("dev: control plane: %w", err)
	}
	checker, err := compile.NewChecker(compileOpts)
	if err != nil {
		return err
	}

	// /debug/explain fetches JWKS as the authz sidecar does.
	explainAllow, err := authn.ParseAllowList(append([]string{c.IdPAddr}, c.JWKSAllow...))
	if err != nil {
		return fmt.Errorf("dev: --jwks-allow: %w", err)
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	g, gctx := errgroup.WithContext(ctx)
	var ready readiness
	g.Go(func() error {
		return controlplane.Run(gctx, controlplane.Config{
			Source:      source.NewFeed(st, source.Options{PollInterval: 100 * time.Millisecond, Log: c.Log}),
			Reporter:    source.NewBrokerReporter(st),
			Compile:     compileOpts,
			HoldOff:     20 * time.Millisecond,
			Log:         c.Log,
			Registry:    telemetry.NewRegistry(),
			TLS:         pki.server(),
			CanaryGroup: c.CanaryGroup, Soak: c.Soak, Gate: c.Gate,
			JWKSAllow: explainAllow,
		}, cpListeners)
	})
	brokerUp := ready.add()
	g.Go(func() error {
		return broker.Run(gctx, broker.Config{
			HTTPAddr: c.BrokerAddr, AdminAddr: c.BrokerAdminAddr, Store: st, Queue: q,
			Username: BrokerUser, Password: brokerPassword,
			BindingKey:    bindingKey,
			SweepInterval: time.Second, SweepGrace: 2 * time.Second,
			Log: c.Log, Registry: telemetry.NewRegistry(), UpstreamAllow: allow, NodeServices: specPolicy.Upstreams.Reserved,
			Ready: func(net.Addr, net.Addr) { brokerUp() },
		})
	})
	g.Go(func() error {
		return worker.Run(gctx, worker.Config{
			Store: st, Queue: q, Log: c.Log, Registry: telemetry.NewRegistry(),
			PublishWait: 10 * time.Second, BackoffBase: 200 * time.Millisecond,
			Compile: checker.Check, SpecPolicy: specPolicy,
		})
	})
	authzUp := ready.add()
	g.Go(func() error {
		return authzsidecar.Run(gctx, authzsidecar.Config{
			GRPCAddr: c.AuthzAddr, AdminAddr: c.AuthzAdminAddr,
			XDSServer: c.XDSAddr, NodeID: "dev-authz", NodeCluster: c.NodeGroup,
			JWKSAllow: append([]string{c.IdPAddr}, c.JWKSAllow...),
			TLS:       pki.server(), XDSTLS: pki.sidecarXDS(),
			Log: c.Log, Registry: telemetry.NewRegistry(),
			Ready: func(net.Addr, net.Addr) { authzUp() },
		})
	})
	rlUp := ready.add()
	g.Go(func() error {
		return ratelimitsidecar.Run(gctx, ratelimitsidecar.Config{
			GRPCAddr: c.RateLimitAddr, AdminAddr: c.RateLimitAdmin,
			XDSServer: c.XDSAddr, NodeID: "dev-ratelimit", NodeCluster: c.NodeGroup,
			TLS: pki.server(), XDSTLS: pki.sidecarXDS(),
			Backend: "memory", ResponseHeaders: true,
			Log: c.Log, Registry: telemetry.NewRegistry(),
			Ready: func(net.Addr, net.Addr) { rlUp() },
		})
	})
	alUp := ready.add()
	g.Go(func() error {
		return accesslogsidecar.Run(gctx, accesslogsidecar.Config{
			GRPCAddr: c.AccessLogGRPCAddr, HTTPAddr: c.AccessLogAPI,
			Store:     "duckdb:" + filepath.Join(c.DataDir, "accesslog.duckdb"),
			Retention: 7 * 24 * time.Hour, ChainKeyFile: chainKeys,
			XDSServer: c.XDSAddr, NodeID: "dev-accesslog", NodeCluster: c.NodeGroup,
			TLS: pki.server(), XDSTLS: pki.sidecarXDS(),
			APITokens: []string{logToken},
			Log:       c.Log, Registry: telemetry.NewRegistry(),
			Ready: func(accesslogsidecar.Addrs) { alUp() },
		})
	})
	for _, s := range []struct {
		role, addr string
		h          http.Handler
	}{{"demo-idp", c.IdPAddr, idp.Handler()}, {"demo-echo", c.EchoAddr, EchoHandler()}} {
		l, err := net.Listen("tcp", s.addr)
		if err != nil {
			cancel()
			return errors.Join(fmt.Errorf("dev: %s: %w", s.role, err), g.Wait())
		}
		g.Go(func() error { return telemetry.ServeHTTP(gctx, l, s.h) })
	}
	door, err := startFrontDoor(gctx, c, pki, g)
	if err != nil {
		cancel()
		return errors.Join(err, g.Wait())
	}

	ready.seal()
	g.Go(func() error {
		if err := ready.wait(gctx, 60*time.Second); err != nil {
			return fmt.Errorf("dev: roles did not start: %w", err)
		}
		provisioned, err := provisionExamples(gctx, c, ep, st)
		if err != nil {
			return err
		}
		ep.Provisioned = provisioned
		if door != nil {
			door.waitConfig(gctx, 10*time.Second)
		}
		served, err := servedExamples(gctx, st)
		if err != nil {
			return err
		}
		printBanner(c.Out, c, ep, idp, served)
		if c.Ready != nil {
			c.Ready(ep)
		}
		return nil
	})
	return g.Wait()
}

// nodeServices are dev's own addresses besides the sidecars': refused as
// spec upstreams even though they share the echo upstream's loopback.
func (c Config) nodeServices() []spec.NodeService {
	return []spec.NodeService{
		{Addr: c.BrokerAddr, What: "the broker"}, {Addr: c.BrokerAdminAddr, What: "the broker's admin server"},
		{Addr: c.XDSAddr, What: "the control plane's xDS"}, {Addr: c.ControlPlaneAdminAddr, What: "the control plane's admin server"},
		{Addr: c.AuthzAdminAddr, What: "the authz sidecar's admin server"}, {Addr: c.RateLimitAdmin, What: "the ratelimit sidecar's admin server"},
		{Addr: c.AccessLogAPI, What: "the access-log query API"}, {Addr: c.IdPAddr, What: "the demo identity provider"},
	}
}

// readiness counts roles that have not reported they serve. Roles are
// added while earlier ones already start, so it is done only once sealed
// (every role added) and no role is pending.
type readiness struct {
	mu      sync.Mutex
	pending int
	sealed  bool
	done    chan struct{}
}

func (r *readiness) add() func() {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.done == nil {
		r.done = make(chan struct{})
	}
	r.pending++
	var once sync.Once
	return func() {
		once.Do(func() {
			r.mu.Lock()
			defer r.mu.Unlock()
			r.pending--
			r.closeIfDone()
		})
	}
}

// seal says every role has been added.
func (r *readiness) seal() {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.done == nil {
		r.done = make(chan struct{})
	}
	r.sealed = true
	r.closeIfDone()
}

// closeIfDone closes done once, when sealed and nothing is pending; r.mu
// is held.
func (r *readiness) closeIfDone() {
	if !r.sealed || r.pending != 0 {
		return
	}
	select {
	case <-r.done:
	default:
		close(r.done)
	}
}

func (r *readiness) wait(ctx context.Context, within time.Duration) error {
	select {
	case <-r.done:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	case <-time.After(within):
		r.mu.Lock()
		defer r.mu.Unlock()
		return fmt.Errorf("%d role(s) not serving after %s", r.pending, within)
	}
}

// secretFile returns the secret kept in path, creating a random one on
// first use (mode 0600).
func secretFile(path string) (string, error) {
	b, err := os.ReadFile(path)
	if err == nil {
		if s := strings.TrimSpace(string(b)); s != "" {
			return s, nil
		}
	} else if !errors.Is(err, os.ErrNotExist) {
		return "", fmt.Errorf("dev: %w", err)
	}
	buf := make([]byte, 18)
	if _, err := rand.Read(buf); err != nil {
		return "", err
	}
	s := hex.EncodeToString(buf)
	if err := os.WriteFile(path, []byte(s+"\n"), 0o600); err != nil {
		return "", fmt.Errorf("dev: writing %s: %w", path, err)
	}
	return s, nil
}

// provisionExamples provisions every example spec through the OSB API on
// the first start (an empty store), waiting until each is live, with a
// progress line per spec. A later start finds the specs and does nothing.
func provisionExamples(ctx context.Context, c Config, ep Endpoints, st store.Feed) ([]string, error) {
	_, existing, err := st.Snapshot(ctx)
	if err != nil {
		return nil, fmt.Errorf("dev: reading the route store: %w", err)
	}
	if len(existing) > 0 || c.ExamplesDir == "" {
		return nil, nil
	}
	docs, err := spec.Load(c.ExamplesDir)
	if err != nil {
		return nil, fmt.Errorf("dev: example specs: %w", err)
	}
	client := &osbclient.Client{BaseURL: ep.Broker, Username: ep.BrokerUser, Password: ep.BrokerPassword, Identity: "gatehouse " + base64.StdEncoding.EncodeToString([]byte(`{"user":"gatehouse-dev"}`))}
	var names []string
	for _, d := range docs {
		name := d.Name()
		for i := range d.EdgeRoute.Spec.Upstreams {
			eps := d.EdgeRoute.Spec.Upstreams[i].Endpoints
			for j, ep := range eps {
				if ep == DemoUpstream {
					eps[j] = c.EchoAddr
				}
			}
		}
		body, err := d.EdgeRoute.CanonicalJSON()
		if err != nil {
			return nil, err
		}
		fmt.Fprintf(c.Out, "provisioning %s (%s) ...", name, d.File)
		resp, err := client.Provision(ctx, name, body)
		if err != nil {
			fmt.Fprintln(c.Out, " failed")
			return nil, fmt.Errorf("dev: provisioning %s: %w", name, err)
		}
		final, err := osbclient.Wait(ctx, 60*time.Second, func(ctx context.Context) (*osbclient.Response, error) {
			return client.LastOperation(ctx, name, resp.Operation)
		}, func(r *osbclient.Response) { fmt.Fprintf(c.Out, " %s ...", r.Description) })
		if err != nil {
			fmt.Fprintln(c.Out, " failed")
			return nil, fmt.Errorf("dev: waiting for %s: %w", name, err)
		}
		if final.State != "succeeded" {
			fmt.Fprintln(c.Out, " failed")
			return nil, fmt.Errorf("dev: provisioning %s ended %s: %s", name, final.State, final.Description)
		}
		fmt.Fprintln(c.Out, " live")
		names = append(names, name)
	}
	return names, nil
}

// servedExamples says which example specs the route store holds now
// (provisioned by this start or an earlier one), by name.
func servedExamples(ctx context.Context, st store.Feed) (map[string]bool, error) {
	_, specs, err := st.Snapshot(ctx)
	if err != nil {
		return nil, fmt.Errorf("dev: reading the route store: %w", err)
	}
	served := map[string]bool{}
	for _, s := range specs {
		served[s.Name], served[s.InstanceID] = true, true
	}
	return served, nil
}

// absPath is p made absolute for the bootstrap (Envoy runs elsewhere).
func absPath(p string) string {
	if a, err := filepath.Abs(p); err == nil {
		return a
	}
	return p
}
