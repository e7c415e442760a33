// Package compile turns a source revision into validated xDS resources per
// node group: it parses and validates each spec, builds its Envoy
// resources (package envoy) and its sidecar resources (the domain
// libraries' own Compile functions, wrapped by package contract), checks
// every resource with ValidateAll recursing into every Any plus
// referential checks and the tenant rules (tenancy.go: claimable hosts,
// overlap across tenants, certificate ownership), prunes a spec that fails
// (recording why, for the broker) and assembles what is left per node
// group.
//
// Compiling is incremental: a spec whose bytes did not change is not
// parsed, compiled or validated again. A Compiler is used by one goroutine
// at a time; a Result is logically immutable (it assembles each node
// group lazily, once, under its own lock) and safe to share. It must not import
// snapshot, xds or the sidecars.
package compile

import (
	"fmt"
	"log/slog"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"

	"github.com/gatehouse-edge/gatehouse/contract"
	"github.com/gatehouse-edge/gatehouse/controlplane/envoy"
	"github.com/gatehouse-edge/gatehouse/controlplane/source"
	"github.com/gatehouse-edge/gatehouse/internal/tenancy"
	"github.com/gatehouse-edge/gatehouse/spec"
)

// Options shape the compiled config of every node group.
type Options struct {
	// Sidecars are the sidecar addresses in the CDS sidecar clusters;
	// default envoy.DefaultSidecars.
	Sidecars envoy.Sidecars
	// HTTPAddress is the address the HTTP listener binds; default
	// contract.DefaultEnvoyHTTPAddr (not 8080: that is the broker's
	// default, and both may run on one host).
	HTTPAddress string
	// HTTPSAddress is the address the HTTPS listener binds; default
	// contract.DefaultEnvoyHTTPSAddr. There is an HTTPS listener only
	// when a published spec names a certificate (spec.tls.certificate).
	HTTPSAddress string
	// CertDir holds the certificates specs name in spec.tls.certificate,
	// as NAME.crt and NAME.key (PEM). Empty: a spec naming one fails.
	CertDir  string
	Upstream envoy.UpstreamOptions
	// ProxylessGroups are node groups of proxyless gRPC clients (grpc-go
	// with an xds:/// target) rather than Envoys: their listeners are API
	// listeners named by each spec host (wildcard hosts excepted), and
	// their route table carries no Envoy filter overrides or rate-limit
	// actions (gRPC clients enforce neither).
	ProxylessGroups []string
	// ScopedRouteGroups are Envoy node groups served the scoped route
	// layout: one RouteConfiguration per spec and one
	// ScopedRouteConfiguration per exact host (the connection manager
	// picks the scope by the :authority host), so one spec's change
	// re-sends that spec's routes only, not the group's whole table. A
	// group any of whose specs has a wildcard host keeps the one table
	// (Envoy's scope keys match exactly), with a warning. Not for
	// proxyless groups.
	ScopedRouteGroups []string
	// RateLimitFailureModeDeny sets failure_mode_deny on Envoy's ratelimit
	// filter: when the ratelimit sidecar cannot answer (down, over the
	// 100ms timeout, an error), Envoy answers 500 instead of letting the
	// request through (--ratelimit-failure-mode deny).
	RateLimitFailureModeDeny bool
	// MaxJWKSURIsPerGroup caps the distinct jwksUris one node group's authz
	// sidecars fetch (default DefaultMaxJWKSURIsPerGroup; negative: no cap).
	// A spec that would exceed it is left out and reported.
	MaxJWKSURIsPerGroup int
	// CertOwners binds certificates to the tenants that may name them
	// (nil: none bound; every spec's certificate must cover its hosts
	// either way).
	CertOwners tenancy.CertOwners
	// TenantDomains restricts tenants to domain suffixes, as the broker's
	// --tenant-domains (nil: any claimable host).
	TenantDomains tenancy.Domains
	// UpstreamAllow lifts the refusal of upstream addresses that point at
	// the node or the platform (--upstream-allow); NodeServices are the
	// running role's own listen addresses and EnvoyAdmin the fleet's
	// Envoy admin (default contract.DefaultEnvoyAdminAddr): see upstreams.go.
	UpstreamAllow spec.UpstreamAllow
	NodeServices  []spec.NodeService
	EnvoyAdmin    string
	Log           *slog.Logger
}

// Compiler compiles revisions, reusing the work of unchanged specs.
type Compiler struct {
	opts            Options
	policy          spec.Policy
	log             *slog.Logger
	sidecarClusters []*clusterv3.Cluster
	optsKey         string
	files           map[string]*fileEntry // key: content hash of origin+bytes
	// keys are the last revision's file keys with a copy of the bytes
	// they hash: a spec whose bytes are equal to its last ones reuses its
	// key instead of hashing them again (every Compile sees every spec).
	keys   map[fileID]keyMemo
	groups *groupCache
}

// New checks the options and builds a Compiler.
func New(o Options) (*Compiler, error) {
	if o.Sidecars == (envoy.Sidecars{}) {
		o.Sidecars = envoy.DefaultSidecars
	}
	if o.HTTPAddress == "" {
		o.HTTPAddress = contract.DefaultEnvoyHTTPAddr
	}
	if o.HTTPSAddress == "" {
		o.HTTPSAddress = contract.DefaultEnvoyHTTPSAddr
	}
	if o.MaxJWKSURIsPerGroup == 0 {
		o.MaxJWKSURIsPerGroup = DefaultMaxJWKSURIsPerGroup
	}
	log := o.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if err := checkPolicyOptions(o); err != nil {
		return nil, fmt.Errorf("compile options: %w", err)
	}
	sc, err := envoy.SidecarClusters(o.Sidecars)
	if err != nil {
		return nil, fmt.Errorf("compile options: %w", err)
	}
	for _, c := range sc {
		if err := ValidateAll(c); err != nil {
			return nil, fmt.Errorf("compile options: cluster %s: %w", c.GetName(), err)
		}
	}
	if _, err := envoy.Listener(envoy.ListenerOptions{Name: envoy.HTTPListener, Address: o.HTTPAddress, RouteConfig: envoy.RouteConfigName}); err != nil {
		return nil, fmt.Errorf("compile options: %w", err)
	}
	for i, g := range o.ScopedRouteGroups {
		if slices.Contains(o.ProxylessGroups, g) {
			return nil, fmt.Errorf("compile options: scoped route groups[%d]: node group %q is also a proxyless group; proxyless gRPC clients do not support scoped routes", i, g)
		}
	}
	if _, err := envoy.Listener(envoy.ListenerOptions{Name: envoy.HTTPSListener, Address: o.HTTPSAddress, RouteConfig: envoy.RouteConfigName}); err != nil {
		return nil, fmt.Errorf("compile options: %w", err)
	}
	return &Compiler{
		opts:            o,
		policy:          specPolicy(o),
		log:             log.With("component", "compile"),
		sidecarClusters: sc,
		optsKey:         optsKey(o),
		files:           map[string]*fileEntry{},
		groups:          newGroupCache(),
	}, nil
}

// optsKey is the part of every version string that depends on options.
func optsKey(o Options) string {
	k := fmt.Sprintf("%+v|%s|%+v", o.Sidecars, o.HTTPAddress, o.Upstream)
	if o.CertDir != "" {
		k += "|https=" + o.HTTPSAddress
	}
	if len(o.ProxylessGroups) > 0 {
		k += fmt.Sprintf("|proxyless=%v", o.ProxylessGroups)
	}
	if len(o.ScopedRouteGroups) > 0 {
		k += fmt.Sprintf("|scoped=%v", o.ScopedRouteGroups)
	}
	if o.RateLimitFailureModeDeny {
		k += "|ratelimit-failure=deny"
	}
	// The upstream policy is not part of it: it decides only which specs
	// are published, which every version hashes anyway, and replicas with
	// different listen addresses must agree on version strings.
	return k
}

// Compile compiles a revision. It never fails as a whole: every spec ends
// up published or with an error, and the Result says which.
func (c *Compiler) Compile(rev source.Revision) *Result {
	keys := make([]string, len(rev.Specs))
	nextKeys := make(map[fileID]keyMemo, len(rev.Specs))
	next := make(map[string]*fileEntry, len(rev.Specs))
	var todo []int
	for i, src := range rev.Specs {
		keys[i] = c.fileKeyOf(src, nextKeys)
		if fe, ok := c.files[keys[i]]; ok {
			next[keys[i]] = fe
		} else if _, dup := next[keys[i]]; !dup {
			next[keys[i]] = nil
			todo = append(todo, i)
		}
	}
	// New or changed specs compile in parallel; each is independent of
	// the others until assemble.
	compiled := make([]*fileEntry, len(todo))
	parallel(len(todo), func(j int, w *worker) {
		compiled[j] = c.compileFile(rev.Specs[todo[j]], w)
	})
	for j, i := range todo {
		next[keys[i]] = compiled[j]
	}
	var all []*Spec
	for i := range rev.Specs {
		all = append(all, next[keys[i]].specs...)
	}
	c.files = next
	c.keys = nextKeys
	c.groups.rotate()
	return c.assemble(rev.ID, all)
}

// worker is what one compile goroutine keeps from one spec to the next.
type worker struct {
	// chk is the worker's CEL checker for the run: spec validation and
	// authz.Compile share it, and specs repeat rules, so each distinct
	// expression is compiled once per worker. (If building it fails, chk
	// is nil: validation and authz then build their own environment and
	// report the error.)
	chk *spec.CELChecker
	// wrap builds the sidecar resources; the TypedStructs it returns (to
	// validate them) live until the next spec's buildSpec.
	wrap contract.Wrapper
}

// parallel runs job(0) … job(n-1) on one worker per CPU.
func parallel(n int, job func(j int, w *worker)) {
	workers := min(runtime.GOMAXPROCS(0), n)
	var wg sync.WaitGroup
	var next atomic.Int64
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			w := &worker{}
			w.chk, _ = spec.NewCELChecker()
			for {
				j := int(next.Add(1)) - 1
				if j >= n {
					return
				}
				job(j, w)
			}
		}()
	}
	wg.Wait()
}
