package compile

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"sort"
	"strings"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"

	"github.com/gatehouse-edge/gatehouse/accesslog"
	"github.com/gatehouse-edge/gatehouse/authz"
	"github.com/gatehouse-edge/gatehouse/contract"
	"github.com/gatehouse-edge/gatehouse/controlplane/envoy"
	"github.com/gatehouse-edge/gatehouse/controlplane/source"
	"github.com/gatehouse-edge/gatehouse/ratelimit"
	"github.com/gatehouse-edge/gatehouse/spec"
)

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

// fileID is what fileKey hashes besides the bytes.
type fileID struct {
	origin, name string
	revision     int64
}

// keyMemo is a file key and (a copy of) the bytes it hashes.
type keyMemo struct {
	data []byte
	key  string
}

// fileKeyOf is fileKey(src), taken from the last Compile when src's bytes
// are equal to the ones it hashed then (comparing is much cheaper than
// hashing). It records the key in next. The bytes are copied: a source
// may reuse its buffers.
func (c *Compiler) fileKeyOf(src source.Spec, next map[fileID]keyMemo) string {
	id := fileID{origin: src.Origin, name: src.Name, revision: src.Revision}
	if m, ok := c.keys[id]; ok && bytes.Equal(m.data, src.Data) {
		next[id] = m
		return m.key
	}
	m := keyMemo{data: bytes.Clone(src.Data), key: fileKey(src)}
	next[id] = m
	return m.key
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
		cl, cla, err := envoy.UpstreamClusterPacked(r.Metadata.Name, u, c.opts.Upstream, packed)
		if err != nil {
			return fmt.Errorf("spec.upstreams[%d]: %w", i, err)
		}
		if err := validateAllKnown(cl, packed); err != nil {
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

	// Sidecar resources, each from its domain library's compiler. The
	// TypedStructs validation looks at carry no Struct (the NoStruct
	// wrappers): a Struct has no rules and cannot hold an Any.
	pol, err := authz.CompileWith(r, w.chk)
	if err != nil {
		return fmt.Errorf("auth: %w", err)
	}
	s.policy = pol
	az, azTS, err := w.wrap.WrapTypedNoStruct(contract.AuthzPrefix+r.Metadata.Name, contract.AuthzPolicyType, pol)
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
	rl, rlTS, err := w.wrap.WrapTypedJSONNoStruct(contract.RateLimitPrefix+r.Metadata.Name, contract.RateLimitRulesType, rulesJSON)
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
	al, alTS, err := w.wrap.WrapTypedNoStruct(contract.AccessLogPrefix+r.Metadata.Name, contract.AccessLogSettingType, logs)
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
