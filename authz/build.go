package authz

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"time"

	"cel.dev/cel-go/cel"
	celast "cel.dev/cel-go/common/ast"

	"github.com/gatehouse-edge/gatehouse/authn"
	"github.com/gatehouse-edge/gatehouse/spec"
)

// policySet is one immutable set of compiled route policies: what an
// Engine swaps whole on every update.
type policySet struct {
	routes map[string]*route
}

type route struct {
	id        string
	mode      string
	providers []*provider
	rules     []*rule
	// metadataClaims are copied into Metadata.Claims.
	metadataClaims []string
	// forwardHeaders is every header any provider of the spec forwards a
	// claim in, on every route of the spec (public ones included): an
	// upstream trusts them whichever route the request took, so a request
	// never brings its own value for one.
	forwardHeaders []string
	// multiJWT: more than one JWT provider in anyOf; a bearer token then
	// goes to the one(s) whose issuer it names.
	multiJWT  bool
	challenge string // WWW-Authenticate without an error
	counters  *routeCounters
}

type provider struct {
	name    string
	kind    string
	jwt     *authn.JWT
	apiKey  *authn.APIKeys
	mtls    *authn.MTLS
	forward []forwardClaim
	// remove is what an allowed request authenticated by this provider
	// loses before it goes upstream: the spec's forward headers and, by
	// default, the credential header.
	remove      []string
	removeQuery []string
	// removeAllSet is remove without this provider's own forward headers:
	// what is removed when every forwarded claim is present.
	removeAllSet []string
}

type forwardClaim struct{ claim, header string }

type rule struct {
	name   string // "rules[<i>]"
	allow  bool
	scopes []string
	claims []claimMatch
	prg    cel.Program
	src    *celast.SourceInfo // of the `when`, for error positions
}

type claimMatch struct{ name, value string }

type builder struct {
	e        *Engine
	newJWKS  map[string]*authn.RemoteJWKS
	usedJWKS map[string]bool
}

func (b *builder) build(policies []*SpecPolicy) (*policySet, error) {
	s := &policySet{routes: map[string]*route{}}
	var problems []string
	specs := map[string]bool{}
	for i, p := range policies {
		if p == nil {
			problems = append(problems, fmt.Sprintf("policy %d is empty", i))
			continue
		}
		if specs[p.Spec] {
			problems = append(problems, fmt.Sprintf("spec %q: listed twice", p.Spec))
			continue
		}
		specs[p.Spec] = true
		if err := b.spec(s, p); err != nil {
			problems = append(problems, err.Error())
		}
	}
	if len(problems) > 0 {
		sort.Strings(problems)
		return nil, fmt.Errorf("authz policies rejected: %s", strings.Join(problems, "; "))
	}
	return s, nil
}

func (b *builder) spec(s *policySet, p *SpecPolicy) error {
	providers := map[string]*provider{}
	// forward is the union of every provider's forward headers, in
	// declaration order: what no route of the spec lets a client send.
	var forward []string
	for _, pp := range p.Providers {
		if _, dup := providers[pp.Name]; dup {
			return fmt.Errorf("spec %q: provider %q declared twice", p.Spec, pp.Name)
		}
		pr, err := b.provider(p.Spec, pp)
		if err != nil {
			return fmt.Errorf("spec %q: provider %q: %w", p.Spec, pp.Name, err)
		}
		providers[pp.Name] = pr
		for _, f := range pr.forward {
			forward = appendUnique(forward, f.header)
		}
	}
	for _, rp := range p.Routes {
		if !strings.HasPrefix(rp.ID, p.Spec+"/") {
			return fmt.Errorf("spec %q: route id %q is not \"%s/<route>\"", p.Spec, rp.ID, p.Spec)
		}
		if _, dup := s.routes[rp.ID]; dup {
			return fmt.Errorf("spec %q: route %q defined twice", p.Spec, rp.ID)
		}
		r, err := b.route(rp, providers, forward)
		if err != nil {
			return fmt.Errorf("route %q: %w", rp.ID, err)
		}
		s.routes[rp.ID] = r
	}
	return nil
}

func (b *builder) provider(specName string, pp Provider) (*provider, error) {
	pr := &provider{name: pp.Name, kind: pp.Kind}
	o := b.e.opts
	switch pp.Kind {
	case authn.KindJWT:
		j := pp.JWT
		if j == nil {
			return nil, fmt.Errorf("kind jwt without jwt settings")
		}
		skew := spec.DefaultClockSkew
		if j.ClockSkew != "" {
			d, err := time.ParseDuration(j.ClockSkew)
			if err != nil || d < 0 || d > spec.MaxClockSkew {
				return nil, fmt.Errorf("clockSkew %q: want a duration between 0s and 5m", j.ClockSkew)
			}
			skew = d
		}
		var keys authn.KeySource
		switch {
		case j.JWKS != "" && j.JWKSURI != "":
			return nil, fmt.Errorf("set either jwksUri or jwks, not both")
		case j.JWKS != "":
			ks, err := authn.NewStaticKeys([]byte(j.JWKS))
			if err != nil {
				return nil, fmt.Errorf("inline jwks: %w", err)
			}
			keys = ks
		case j.JWKSURI != "":
			src, err := b.remote(j.JWKSURI)
			if err != nil {
				return nil, err
			}
			keys = src
		default:
			return nil, fmt.Errorf("no keys: set jwksUri or jwks")
		}
		var cache *authn.TokenCache
		if b.e.cache != nil {
			cache = b.e.cache
		}
		// Providers share cached tokens only when everything that decides
		// a token's fate is equal, keys included.
		fp, _ := json.Marshal(struct {
			Name string
			JWT  *JWTProvider
			Max  int
		}{pp.Name, j, o.MaxTokenSize})
		sum := sha256.Sum256(fp)
		jwt, err := authn.NewJWT(authn.JWTConfig{
			Name: pp.Name, Issuer: j.Issuer, Audiences: j.Audiences, Algorithms: j.Algorithms,
			ClockSkew: skew, MaxTokenSize: o.MaxTokenSize, Fingerprint: hex.EncodeToString(sum[:12]),
		}, keys, cache, o.Clock)
		if err != nil {
			return nil, err
		}
		pr.jwt = jwt
		claims := make([]string, 0, len(j.ForwardClaims))
		for c := range j.ForwardClaims {
			claims = append(claims, c)
		}
		sort.Strings(claims)
		for _, c := range claims {
			pr.forward = append(pr.forward, forwardClaim{claim: c, header: strings.ToLower(j.ForwardClaims[c])})
		}
	case authn.KindAPIKey:
		a := pp.APIKey
		if a == nil {
			return nil, fmt.Errorf("kind apiKey without apiKey settings")
		}
		keys := make([]authn.APIKey, 0, len(a.Keys))
		for _, k := range a.Keys {
			keys = append(keys, authn.APIKey{ID: k.ID, SHA256: k.SHA256, Labels: k.Labels})
		}
		ak, err := authn.NewAPIKeys(authn.APIKeyConfig{Name: pp.Name, Header: strings.ToLower(a.Header), Query: a.Query, Keys: keys})
		if err != nil {
			return nil, err
		}
		pr.apiKey = ak
	case authn.KindMTLS:
		if pp.MTLS == nil {
			return nil, fmt.Errorf("kind mtls without mtls settings")
		}
		m, err := authn.NewMTLS(authn.MTLSConfig{Name: pp.Name, Principals: pp.MTLS.Principals})
		if err != nil {
			return nil, err
		}
		pr.mtls = m
	default:
		return nil, fmt.Errorf("unknown kind %q: want jwt, apiKey or mtls", pp.Kind)
	}
	return pr, nil
}

// remote returns the running source for uri, or a new one to start.
// Sources are shared by URI across specs and kept across updates, so an
// update does not refetch keys.
func (b *builder) remote(uri string) (*authn.RemoteJWKS, error) {
	b.usedJWKS[uri] = true
	if r, ok := b.e.jwks[uri]; ok {
		return r.src, nil
	}
	if src, ok := b.newJWKS[uri]; ok {
		return src, nil
	}
	o := b.e.opts
	src, err := authn.NewRemoteJWKS(authn.RemoteJWKSConfig{
		URI: uri, Client: o.HTTPClient, RefreshInterval: o.JWKSRefreshInterval,
		MinRefreshInterval: o.JWKSMinRefreshInterval, MaxStaleness: o.JWKSMaxStaleness,
		Clock: o.Clock, Log: b.e.log, Metrics: b.e.authnM,
	})
	if err != nil {
		return nil, err
	}
	b.newJWKS[uri] = src
	return src, nil
}

func (b *builder) route(rp RoutePolicy, providers map[string]*provider, forward []string) (*route, error) {
	r := &route{id: rp.ID, mode: rp.Mode, metadataClaims: rp.MetadataClaims, forwardHeaders: forward, counters: newRouteCounters(b.e.metrics, rp.ID)}
	r.challenge = `Bearer realm="` + quoteSafe(rp.ID) + `"`
	switch rp.Mode {
	case spec.ModePublic:
		return r, nil
	case spec.ModeEnforce, spec.ModeShadow:
	default:
		return nil, fmt.Errorf("unknown mode %q: want enforce, shadow or public", rp.Mode)
	}
	if len(rp.AnyOf) == 0 {
		return nil, fmt.Errorf("mode %s needs at least one provider in anyOf", rp.Mode)
	}
	for _, n := range rp.AnyOf {
		p, ok := providers[n]
		if !ok {
			return nil, fmt.Errorf("anyOf names unknown provider %q", n)
		}
		r.providers = append(r.providers, p)
	}
	jwts := 0
	for _, p := range r.providers {
		if p.jwt != nil {
			jwts++
		}
	}
	r.multiJWT = jwts > 1
	// Per route and provider, the headers and query parameters an allowed
	// request loses. Providers are per spec, routes share them: copy.
	for i, p := range r.providers {
		cp := *p
		cp.remove = append([]string(nil), r.forwardHeaders...)
		if !b.e.opts.KeepCredential {
			switch {
			case p.jwt != nil:
				cp.remove = appendUnique(cp.remove, "authorization")
			case p.apiKey != nil && p.apiKey.Header() != "":
				cp.remove = appendUnique(cp.remove, p.apiKey.Header())
			case p.apiKey != nil:
				cp.removeQuery = []string{p.apiKey.Query()}
			}
		}
		own := map[string]bool{}
		for _, f := range p.forward {
			own[f.header] = true
		}
		for _, h := range cp.remove {
			if !own[h] {
				cp.removeAllSet = append(cp.removeAllSet, h)
			}
		}
		r.providers[i] = &cp
	}
	for i, rr := range rp.Rules {
		ru := &rule{name: "rules[" + strconv.Itoa(i) + "]", allow: rr.Allow, scopes: rr.Scopes}
		names := make([]string, 0, len(rr.Claims))
		for n := range rr.Claims {
			names = append(names, n)
		}
		sort.Strings(names)
		for _, n := range names {
			ru.claims = append(ru.claims, claimMatch{name: n, value: rr.Claims[n]})
		}
		if rr.When != "" {
			ast, err := spec.CompileWhen(b.e.env, rr.When)
			if err != nil {
				return nil, fmt.Errorf("rules[%d].when: %w", i, err)
			}
			prg, err := b.e.env.Program(ast, cel.CostLimit(b.e.opts.CELCostLimit), cel.EvalOptions(cel.OptOptimize),
				cel.CustomDecoratorV2(checkRequestPatterns))
			if err != nil {
				return nil, fmt.Errorf("rules[%d].when: %w", i, err)
			}
			ru.prg, ru.src = prg, ast.NativeRep().SourceInfo()
		}
		r.rules = append(r.rules, ru)
	}
	return r, nil
}

func appendUnique(l []string, s string) []string {
	for _, x := range l {
		if x == s {
			return l
		}
	}
	return append(l, s)
}

// quoteSafe makes s safe inside a quoted-string of an HTTP header: no
// quotes, backslashes or control characters.
func quoteSafe(s string) string {
	ok := true
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c == 0x7f || c == '"' || c == '\\' || c >= 0x80 {
			ok = false
			break
		}
	}
	if ok {
		return s
	}
	var sb strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == '"' || c == '\\':
			sb.WriteByte('\'')
		case c < 0x20 || c == 0x7f || c >= 0x80:
			sb.WriteByte('?')
		default:
			sb.WriteByte(c)
		}
	}
	return sb.String()
}
