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
	"crypto/sha256"
	"crypto/tls"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"sort"
	"strings"
	"sync"
	"sync/atomic"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	extauthzv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/ext_authz/v3"
	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"

	"github.com/gatehouse-edge/gatehouse/accesslog"
	"github.com/gatehouse-edge/gatehouse/authz"
	"github.com/gatehouse-edge/gatehouse/contract"
	"github.com/gatehouse-edge/gatehouse/controlplane/envoy"
	"github.com/gatehouse-edge/gatehouse/controlplane/source"
	"github.com/gatehouse-edge/gatehouse/internal/tenancy"
	"github.com/gatehouse-edge/gatehouse/ratelimit"
	"github.com/gatehouse-edge/gatehouse/spec"
)

// DefaultHTTPAddress is where the Envoy HTTP listener binds unless
// Options.HTTPAddress says otherwise. Not 8080: that is the broker's
// default (127.0.0.1:8080), and both may run on one host.
const DefaultHTTPAddress = contract.DefaultEnvoyHTTPAddr

// DefaultHTTPSAddress is where the Envoy HTTPS listener binds unless
// Options.HTTPSAddress says otherwise. There is an HTTPS listener only
// when a published spec names a certificate (spec.tls.certificate).
const DefaultHTTPSAddress = contract.DefaultEnvoyHTTPSAddr

// Options shape the compiled config of every node group.
type Options struct {
	// Sidecars are the sidecar addresses in the CDS sidecar clusters;
	// default envoy.DefaultSidecars.
	Sidecars envoy.Sidecars
	// HTTPAddress is the address the HTTP listener binds; default
	// DefaultHTTPAddress.
	HTTPAddress string
	// HTTPSAddress is the address the HTTPS listener binds; default
	// DefaultHTTPSAddress.
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
	// Envoy admin (default DefaultEnvoyAdmin): see upstreams.go.
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
	groups          *groupCache
}

// New checks the options and builds a Compiler.
func New(o Options) (*Compiler, error) {
	if o.Sidecars == (envoy.Sidecars{}) {
		o.Sidecars = envoy.DefaultSidecars
	}
	if o.HTTPAddress == "" {
		o.HTTPAddress = DefaultHTTPAddress
	}
	if o.HTTPSAddress == "" {
		o.HTTPSAddress = DefaultHTTPSAddress
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
	if o.RateLimitFailureModeDeny {
		k += "|ratelimit-failure=deny"
	}
	// The upstream policy is not part of it: it decides only which specs
	// are published, which every version hashes anyway, and replicas with
	// different listen addresses must agree on version strings.
	return k
}

// fileEntry is one source spec (one file's bytes), parsed and compiled.
type fileEntry struct {
	specs []*Spec
}

// Spec is one EdgeRoute of a revision, compiled or failed.
type Spec struct {
	Name     string // metadata.name ("" when the document has none)
	Origin   string // where it came from (source.Spec.Origin)
	Revision int64  // source.Spec.Revision
	// Err is why the spec is left out of the published config; nil when
	// it is published.
	Err error
	// NodeGroups are the groups serving the spec; empty means all.
	NodeGroups []string
	// Tenant claims the spec's hosts: source.Spec.Tenant, else (when
	// empty) metadata.team.
	Tenant string
	// crossErr: Err came from a cross-spec check in assemble (a name or
	// host another spec holds), so the next revision checks again.
	crossErr bool

	doc        *spec.Document
	key        string // content hash of the document
	vhost      *routev3.VirtualHost
	clusters   []*clusterv3.Cluster
	clas       []*endpointv3.ClusterLoadAssignment
	sidecar    []*corev3.TypedExtensionConfig
	rules      *ratelimit.SpecRules
	rulesKey   string // content hash of rules, with the spec name
	policy     *authz.SpecPolicy
	alsHeaders []string
	secret     *tlsv3.Secret // the certificate spec.tls names, if any
}

// Document is the parsed spec (nil when it did not parse).
func (s *Spec) Document() *spec.Document { return s.doc }

// AuthzPolicy is the spec's compiled authz policy (nil when it failed).
func (s *Spec) AuthzPolicy() *authz.SpecPolicy { return s.policy }

// RateLimitRules are the spec's compiled rate-limit rules (nil when it
// failed).
func (s *Spec) RateLimitRules() *ratelimit.SpecRules { return s.rules }

// Published reports whether the spec made it into the config.
func (s *Spec) Published() bool { return s.Err == nil }

// servesGroup reports whether the spec belongs in a node group.
func (s *Spec) servesGroup(g string) bool {
	return len(s.NodeGroups) == 0 || slices.Contains(s.NodeGroups, g)
}

// Compile compiles a revision. It never fails as a whole: every spec ends
// up published or with an error, and the Result says which.
func (c *Compiler) Compile(rev source.Revision) *Result {
	keys := make([]string, len(rev.Specs))
	next := make(map[string]*fileEntry, len(rev.Specs))
	var todo []int
	for i, src := range rev.Specs {
		keys[i] = fileKey(src)
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

func fileKey(s source.Spec) string {
	h := sha256.New()
	h.Write([]byte(s.Origin))
	h.Write([]byte{0})
	h.Write([]byte(s.Name))
	// The store revision is part of the key: a Spec is immutable once
	// compiled (Results share them), so a new revision with the same bytes
	// is a new Spec (cheap, and rare).
	fmt.Fprintf(h, "\x00%d\x00", s.Revision)
	h.Write(s.Data)
	return hex.EncodeToString(h.Sum(nil))
}

// compileFile parses one source spec and compiles each document in it.
func (c *Compiler) compileFile(src source.Spec, w *worker) *fileEntry {
	docs, err := spec.Parse(src.Origin, src.Data)
	var problems spec.ErrorList
	if err != nil && !errors.As(err, &problems) {
		problems = spec.ErrorList{{File: src.Origin, Reason: err.Error()}}
	}
	fe := &fileEntry{}
	if len(docs) == 0 {
		fe.specs = []*Spec{{Name: src.Name, Origin: src.Origin, Revision: src.Revision, Err: problems}}
		return fe
	}
	// Structural problems that cannot be pinned on one document fail the
	// whole file: a syntax error may have hidden documents after it.
	byName := problems.BySpec()
	names := map[string]bool{}
	for _, d := range docs {
		names[d.Name()] = true
	}
	var fileWide spec.ErrorList
	for name, errs := range byName {
		if name == "" || !names[name] {
			fileWide = append(fileWide, errs...)
		}
	}
	for _, d := range docs {
		s := &Spec{Name: d.Name(), Origin: src.Origin, Revision: src.Revision, Tenant: src.Tenant, doc: d}
		if s.Name == "" {
			s.Name = src.Name
		}
		if src.Name != "" && d.Name() != "" && d.Name() != src.Name {
			s.Err = fmt.Errorf("%s: metadata.name is %q but the store holds it as %q", src.Origin, d.Name(), src.Name)
		} else if errs := append(append(spec.ErrorList(nil), fileWide...), byName[d.Name()]...); d.Name() != "" && len(errs) > 0 {
			s.Err = errs
		} else if len(fileWide) > 0 {
			s.Err = fileWide
		} else {
			c.compileSpec(s, w)
		}
		fe.specs = append(fe.specs, s)
	}
	return fe
}

// compileSpec validates one document on its own and builds and validates
// all of its resources. On failure s.Err says what, where and why.
func (c *Compiler) compileSpec(s *Spec, w *worker) {
	if err := c.policy.ValidateOne(s.doc, w.chk); err != nil {
		s.Err = err
		return
	}
	if err := c.checkHostNames(s); err != nil {
		s.Err = err
		return
	}
	r := &s.doc.EdgeRoute
	s.NodeGroups = slices.Clone(r.Spec.NodeGroups)
	if err := c.buildSpec(s, r, w); err != nil {
		s.Err = fmt.Errorf("%s: spec %s: %w", s.Origin, s.Name, err)
		return
	}
	// The canonical JSON form (r.CanonicalJSON, which is json.Marshal),
	// written into the worker's memory: it is only hashed.
	raw, _ := w.wrap.Encode(r)
	h := sha256.New()
	h.Write(raw)
	if s.secret != nil {
		// A renewed certificate is new content for the spec.
		tc := s.secret.GetTlsCertificate()
		h.Write([]byte{0})
		h.Write(tc.GetCertificateChain().GetInlineBytes())
		h.Write([]byte{0})
		h.Write(tc.GetPrivateKey().GetInlineBytes())
	}
	s.key = hex.EncodeToString(h.Sum(nil)[:8])
}

// loadCertificate reads NAME.crt and NAME.key from the cert dir and checks
// that they parse as a matching certificate and key. Its errors never
// carry the key bytes.
func (c *Compiler) loadCertificate(name string) (*tlsv3.Secret, error) {
	if c.opts.CertDir == "" {
		return nil, fmt.Errorf("certificate %q: the control plane has no certificate directory (--cert-dir)", name)
	}
	certFile := filepath.Join(c.opts.CertDir, name+".crt")
	keyFile := filepath.Join(c.opts.CertDir, name+".key")
	certPEM, err := os.ReadFile(certFile)
	if err != nil {
		return nil, fmt.Errorf("certificate %q: %w", name, err)
	}
	keyPEM, err := os.ReadFile(keyFile)
	if err != nil {
		return nil, fmt.Errorf("certificate %q: %w", name, err)
	}
	if _, err := tls.X509KeyPair(certPEM, keyPEM); err != nil {
		return nil, fmt.Errorf("certificate %q: %s and %s are not a matching PEM certificate and private key: %w", name, certFile, keyFile, err)
	}
	return envoy.Secret(name, certPEM, keyPEM), nil
}

func (c *Compiler) buildSpec(s *Spec, r *spec.EdgeRoute, w *worker) error {
	// The TypedStructs of the previous spec's sidecar resources were
	// validated and dropped: their memory is free again.
	w.wrap.Reset()
	if t := r.Spec.TLS; t != nil {
		sec, err := c.loadCertificate(t.Certificate)
		if err != nil {
			return fmt.Errorf("spec.tls.certificate: %w", err)
		}
		if err := ValidateAll(sec); err != nil {
			return fmt.Errorf("spec.tls.certificate: secret %s: %w", sec.GetName(), err)
		}
		s.secret = sec
		if err := c.checkCertificate(s); err != nil {
			return err
		}
	}
	// What each Any built here carries, so validating it (and the
	// referential checks) need no decoding of the bytes just encoded.
	packed := envoy.Packed{}
	vh, err := envoy.VirtualHostPacked(r, packed)
	if err != nil {
		return err
	}
	if err := validateAllKnown(vh, packed); err != nil {
		return fmt.Errorf("virtual host: %w", err)
	}
	s.vhost = vh
	for i, u := range r.Spec.Upstreams {
		cl, cla, err := envoy.UpstreamCluster(r.Metadata.Name, u, c.opts.Upstream)
		if err != nil {
			return fmt.Errorf("spec.upstreams[%d]: %w", i, err)
		}
		if err := ValidateAll(cl); err != nil {
			return fmt.Errorf("spec.upstreams[%d]: cluster %s: %w", i, cl.GetName(), err)
		}
		s.clusters = append(s.clusters, cl)
		if cla != nil {
			if err := ValidateAll(cla); err != nil {
				return fmt.Errorf("spec.upstreams[%d]: endpoints of %s: %w", i, cl.GetName(), err)
			}
			s.clas = append(s.clas, cla)
		}
	}

	routeIDs := map[string]bool{}
	for _, rt := range r.Spec.Routes {
		routeIDs[spec.RouteID(r.Metadata.Name, rt.Name)] = true
	}

	// Sidecar resources, each from its domain library's compiler.
	pol, err := authz.CompileWith(r, w.chk)
	if err != nil {
		return fmt.Errorf("auth: %w", err)
	}
	s.policy = pol
	az, azTS, err := w.wrap.WrapTyped(contract.AuthzPrefix+r.Metadata.Name, contract.AuthzPolicyType, pol)
	if err != nil {
		return err
	}
	packed[az.GetTypedConfig()] = azTS
	s.sidecar = append(s.sidecar, az)
	rules, err := ratelimit.Compile(r)
	if err != nil {
		return fmt.Errorf("rate limits: %w", err)
	}
	s.rules = rules
	rulesJSON, err := w.wrap.Encode(rules)
	if err != nil {
		return fmt.Errorf("rate limits: %w", err)
	}
	rl, rlTS, err := w.wrap.WrapTypedJSON(contract.RateLimitPrefix+r.Metadata.Name, contract.RateLimitRulesType, rulesJSON)
	if err != nil {
		return err
	}
	packed[rl.GetTypedConfig()] = rlTS
	sum := sha256.Sum256(rulesJSON)
	s.rulesKey = hex.EncodeToString(sum[:12])
	s.sidecar = append(s.sidecar, rl)
	logs, err := accesslog.Compile(r)
	if err != nil {
		return fmt.Errorf("access log: %w", err)
	}
	al, alTS, err := w.wrap.WrapTyped(contract.AccessLogPrefix+r.Metadata.Name, contract.AccessLogSettingType, logs)
	if err != nil {
		return err
	}
	packed[al.GetTypedConfig()] = alTS
	s.sidecar = append(s.sidecar, al)
	// Envoy must send the headers the accesslog sidecar keeps.
	headers := map[string]bool{}
	for id, rs := range logs.Routes {
		if !routeIDs[id] {
			return fmt.Errorf("access-log settings name route %s, which the spec does not have", id)
		}
		for _, h := range rs.Headers {
			headers[strings.ToLower(h)] = true
		}
	}
	for h := range headers {
		s.alsHeaders = append(s.alsHeaders, h)
	}
	sort.Strings(s.alsHeaders)
	for _, tec := range s.sidecar {
		if err := validateAllKnown(tec, packed); err != nil {
			return fmt.Errorf("sidecar resource %s: %w", tec.GetName(), err)
		}
	}
	return checkSpecReferences(s, packed)
}

// checkSpecReferences are the referential checks within one spec: every
// route's cluster is one of the spec's, every EDS cluster has endpoints,
// and the rate-limit rules the sidecar gets are exactly the limits Envoy
// asks about, with the same descriptor keys in the same order.
func checkSpecReferences(s *Spec, packed envoy.Packed) error {
	clusters := map[string]*clusterv3.Cluster{}
	for _, cl := range s.clusters {
		clusters[cl.GetName()] = cl
	}
	clas := map[string]bool{}
	for _, cla := range s.clas {
		clas[cla.GetClusterName()] = true
	}
	for name, cl := range clusters {
		if cl.GetType() == clusterv3.Cluster_EDS && !clas[cl.GetEdsClusterConfig().GetServiceName()] {
			return fmt.Errorf("cluster %s is EDS but has no endpoints", name)
		}
	}
	type limitKey struct{ route, name string }
	want := map[limitKey][]string{}
	for _, rt := range s.vhost.GetRoutes() {
		cl := rt.GetRoute().GetCluster()
		if _, ok := clusters[cl]; !ok {
			return fmt.Errorf("route %s: cluster %q does not exist", rt.GetName(), cl)
		}
		for i, rl := range rt.GetRoute().GetRateLimits() {
			acts := rl.GetActions()
			if len(acts) < 2 || acts[0].GetGenericKey().GetDescriptorKey() != "route" || acts[1].GetGenericKey().GetDescriptorKey() != "limit" {
				return fmt.Errorf("route %s: rate_limits[%d] does not start with the route and limit entries", rt.GetName(), i)
			}
			want[limitKey{acts[0].GetGenericKey().GetDescriptorValue(), acts[1].GetGenericKey().GetDescriptorValue()}] = descriptorKeys(acts)
		}
	}
	if err := checkAuthzReferences(s, packed); err != nil {
		return err
	}
	if s.rules != nil {
		got := map[limitKey]bool{}
		for _, l := range s.rules.Limits {
			k := limitKey{l.Route, l.Name}
			keys, ok := want[k]
			if !ok {
				return fmt.Errorf("rate-limit rule %s/%s has no Envoy rate_limits entry", l.Route, l.Name)
			}
			var ruleKeys []string
			for _, d := range l.Descriptor {
				ruleKeys = append(ruleKeys, d.Key)
			}
			if !slices.Equal(keys, ruleKeys) {
				return fmt.Errorf("rate limit %s/%s: Envoy sends descriptor keys %v but the sidecar rule expects %v", l.Route, l.Name, keys, ruleKeys)
			}
			got[k] = true
		}
		for k := range want {
			if !got[k] {
				return fmt.Errorf("route %s: limit %s has no rate-limit rule for the sidecar", k.route, k.name)
			}
		}
	}
	return nil
}

// descriptorKeys are the descriptor keys a rate_limits entry produces.
func descriptorKeys(acts []*routev3.RateLimit_Action) []string {
	keys := make([]string, 0, len(acts))
	for _, a := range acts {
		switch {
		case a.GetGenericKey() != nil:
			keys = append(keys, a.GetGenericKey().GetDescriptorKey())
		case a.GetRemoteAddress() != nil:
			keys = append(keys, "remote_address")
		case a.GetMaskedRemoteAddress() != nil:
			keys = append(keys, "masked_remote_address")
		case a.GetRequestHeaders() != nil:
			keys = append(keys, a.GetRequestHeaders().GetDescriptorKey())
		case a.GetMetadata() != nil:
			keys = append(keys, a.GetMetadata().GetDescriptorKey())
		default:
			keys = append(keys, "?")
		}
	}
	return keys
}

// checkAuthzReferences: the authz policy and the Envoy routes agree. Every
// route Envoy sends to ext_authz has a policy (or the sidecar would deny
// it), public routes have ext_authz disabled, the policy names no route
// Envoy lacks, and every identity.claim.<name> a rate limit reads is a
// claim the sidecar puts into the dynamic metadata.
func checkAuthzReferences(s *Spec, packed envoy.Packed) error {
	if s.policy == nil {
		return fmt.Errorf("no authz policy was compiled")
	}
	pols := map[string]authz.RoutePolicy{}
	for _, rp := range s.policy.Routes {
		pols[rp.ID] = rp
	}
	seen := map[string]bool{}
	for _, rt := range s.vhost.GetRoutes() {
		id := rt.GetName()
		seen[id] = true
		rp, ok := pols[id]
		a := rt.GetTypedPerFilterConfig()[envoy.ExtAuthzFilter]
		per, known := packed[a].(*extauthzv3.ExtAuthzPerRoute)
		if !known || !a.MessageIs(per) {
			per = &extauthzv3.ExtAuthzPerRoute{}
			if err := a.UnmarshalTo(per); err != nil {
				return fmt.Errorf("route %s: ext_authz per-route config: %w", id, err)
			}
		}
		disabled := per.GetDisabled()
		switch {
		case !ok && !disabled:
			return fmt.Errorf("route %s: Envoy checks it with ext_authz but the authz policy has no entry for it", id)
		case ok && (rp.Mode == spec.ModePublic) != disabled:
			return fmt.Errorf("route %s: authz mode %s but ext_authz disabled=%v", id, rp.Mode, disabled)
		case !disabled && per.GetCheckSettings().GetContextExtensions()[contract.ContextRoute] != id:
			return fmt.Errorf("route %s: context extension %s is %q", id, contract.ContextRoute, per.GetCheckSettings().GetContextExtensions()[contract.ContextRoute])
		}
		claims := map[string]bool{}
		for _, c := range rp.MetadataClaims {
			claims[c] = true
		}
		for _, rl := range rt.GetRoute().GetRateLimits() {
			for _, a := range rl.GetActions() {
				md := a.GetMetadata()
				if md == nil {
					continue
				}
				path := md.GetMetadataKey().GetPath()
				if len(path) == 2 && path[0].GetKey() == "claims" && !claims[path[1].GetKey()] {
					return fmt.Errorf("route %s: a rate limit reads claim %q from the ext_authz metadata, but the authz policy does not put it there", id, path[1].GetKey())
				}
			}
		}
	}
	for id := range pols {
		if !seen[id] {
			return fmt.Errorf("authz policy names route %s, which Envoy does not have", id)
		}
	}
	return nil
}
