package authz

import (
	"fmt"
	"sort"
	"strings"

	"github.com/gatehouse-edge/gatehouse/authn"
	"github.com/gatehouse-edge/gatehouse/spec"
)

// SpecPolicy is the compiled auth policy of one EdgeRoute: its identity
// providers and, per route, the mode, the providers tried and the rules.
// It is plain data (JSON), so the control plane can ship it as an xDS
// resource (contract.AuthzPolicyType) and a sidecar can rebuild the same
// Engine from it.
type SpecPolicy struct {
	Spec      string        `json:"spec"`
	Providers []Provider    `json:"providers,omitempty"`
	Routes    []RoutePolicy `json:"routes"`
}

// Provider is one identity provider of a spec; exactly one of JWT, APIKey
// and MTLS is set, matching Kind.
type Provider struct {
	Name   string          `json:"name"`
	Kind   string          `json:"kind"` // jwt | apiKey | mtls
	JWT    *JWTProvider    `json:"jwt,omitempty"`
	APIKey *APIKeyProvider `json:"apiKey,omitempty"`
	MTLS   *MTLSProvider   `json:"mtls,omitempty"`
}

// JWTProvider verifies bearer JWTs; exactly one of JWKSURI and JWKS is set.
type JWTProvider struct {
	Issuer        string            `json:"issuer"`
	Audiences     []string          `json:"audiences"`
	JWKSURI       string            `json:"jwksUri,omitempty"`
	JWKS          string            `json:"jwks,omitempty"` // inline JWKS JSON
	Algorithms    []string          `json:"algorithms"`
	ClockSkew     string            `json:"clockSkew"` // Go duration
	ForwardClaims map[string]string `json:"forwardClaims,omitempty"`
}

// APIKeyProvider takes keys from Header or Query.
type APIKeyProvider struct {
	Header string   `json:"header,omitempty"`
	Query  string   `json:"query,omitempty"`
	Keys   []APIKey `json:"keys,omitempty"`
}

// APIKey is a key known by the SHA-256 of its value.
type APIKey struct {
	ID     string            `json:"id"`
	SHA256 string            `json:"sha256"`
	Labels map[string]string `json:"labels,omitempty"`
}

// MTLSProvider accepts peers whose URI SAN matches a glob.
type MTLSProvider struct {
	Principals []string `json:"principals"`
}

// RoutePolicy is the policy of one route, by its id "<spec>/<route>".
type RoutePolicy struct {
	ID    string   `json:"id"`
	Mode  string   `json:"mode"` // enforce | shadow | public
	AnyOf []string `json:"anyOf,omitempty"`
	Rules []Rule   `json:"rules,omitempty"`
	// MetadataClaims are the claims the route's rate limits read
	// (identity.claim.<name>); their values go into the dynamic metadata
	// under claims.<name>.
	MetadataClaims []string `json:"metadataClaims,omitempty"`
}

// Rule allows or denies when all of its conditions hold.
type Rule struct {
	Allow  bool              `json:"allow"`
	Scopes []string          `json:"scopes,omitempty"`
	Claims map[string]string `json:"claims,omitempty"`
	When   string            `json:"when,omitempty"`
}

// Compile builds the SpecPolicy of a spec. It is pure. It checks what the
// engine relies on (provider references, CEL compiling to bool, modes); a
// spec that passed spec.Validate always compiles.
func Compile(r *spec.EdgeRoute) (*SpecPolicy, error) { return CompileWith(r, nil) }

// CompileWith is Compile with the `when` expressions checked by chk (nil:
// a fresh checker), which may have seen them before: the control plane
// shares one per compile run and goroutine between spec validation and
// this, so each expression is compiled once.
func CompileWith(r *spec.EdgeRoute, chk *spec.CELChecker) (*SpecPolicy, error) {
	if r == nil {
		return nil, fmt.Errorf("authz compile: nil spec")
	}
	name := r.Metadata.Name
	p := &SpecPolicy{Spec: name, Routes: []RoutePolicy{}}
	var problems []string
	fail := func(format string, args ...any) { problems = append(problems, fmt.Sprintf(format, args...)) }
	kinds := map[string]string{}
	if id := r.Spec.Identity; id != nil {
		for i, j := range id.JWT {
			if j.JWKSURI == "" && j.JWKS == "" {
				fail("spec.identity.jwt[%d]: keys are required: set jwksUri or jwks", i)
			}
			if j.JWKS != "" {
				// Caught here, before the policy ships, rather than as a
				// NACK from every sidecar.
				if _, err := authn.ParseKeySet([]byte(j.JWKS)); err != nil {
					fail("spec.identity.jwt[%d].jwks: %v", i, err)
				}
			}
			kinds[j.Name] = "jwt"
			p.Providers = append(p.Providers, Provider{Name: j.Name, Kind: "jwt", JWT: &JWTProvider{
				Issuer: j.Issuer, Audiences: append([]string(nil), j.Audiences...), JWKSURI: j.JWKSURI, JWKS: string(j.JWKS),
				Algorithms: j.EffectiveAlgorithms(), ClockSkew: j.EffectiveClockSkew().String(), ForwardClaims: copyMap(j.ForwardClaims),
			}})
		}
		for _, k := range id.APIKeys {
			kinds[k.Name] = "apiKey"
			ap := &APIKeyProvider{Header: strings.ToLower(k.Header), Query: k.Query}
			for _, key := range k.Keys {
				ap.Keys = append(ap.Keys, APIKey{ID: key.ID, SHA256: strings.ToLower(key.SHA256), Labels: copyMap(key.Labels)})
			}
			p.Providers = append(p.Providers, Provider{Name: k.Name, Kind: "apiKey", APIKey: ap})
		}
		for _, m := range id.MTLS {
			kinds[m.Name] = "mtls"
			p.Providers = append(p.Providers, Provider{Name: m.Name, Kind: "mtls", MTLS: &MTLSProvider{Principals: append([]string(nil), m.Principals...)}})
		}
	}
	if chk == nil {
		var err error
		if chk, err = spec.NewCELChecker(); err != nil {
			return nil, err
		}
	}
	for ri, rt := range r.Spec.Routes {
		rp := RoutePolicy{ID: spec.RouteID(name, rt.Name), Mode: rt.AuthMode()}
		if a := rt.Auth; a != nil && rp.Mode != spec.ModePublic {
			if len(a.AnyOf) == 0 {
				fail("spec.routes[%d].auth.anyOf: mode %s needs at least one identity provider", ri, rp.Mode)
			}
			for i, n := range a.AnyOf {
				if kinds[n] == "" {
					fail("spec.routes[%d].auth.anyOf[%d]: unknown identity provider %q", ri, i, n)
				}
			}
			rp.AnyOf = append([]string(nil), a.AnyOf...)
			for i, rule := range a.Rules {
				if rule.When != "" {
					if err := chk.Check(rule.When); err != nil {
						fail("spec.routes[%d].auth.rules[%d].when: %v", ri, i, err)
					}
				}
				rp.Rules = append(rp.Rules, Rule{Allow: rule.Allow, Scopes: append([]string(nil), rule.Scopes...), Claims: copyMap(rule.Claims), When: rule.When})
			}
		}
		switch rp.Mode {
		case spec.ModeEnforce, spec.ModeShadow, spec.ModePublic:
		default:
			fail("spec.routes[%d].auth.mode: unknown mode %q", ri, rp.Mode)
		}
		seen := map[string]bool{}
		for _, l := range rt.RateLimits {
			for _, b := range l.By {
				src, err := spec.ParseSource(b)
				if err == nil && src.Kind == spec.SourceIdentityClaim && !seen[src.Arg] {
					seen[src.Arg] = true
					rp.MetadataClaims = append(rp.MetadataClaims, src.Arg)
				}
			}
		}
		sort.Strings(rp.MetadataClaims)
		p.Routes = append(p.Routes, rp)
	}
	if len(problems) > 0 {
		return nil, fmt.Errorf("authz compile of spec %q: %s", name, strings.Join(problems, "; "))
	}
	return p, nil
}

func copyMap(m map[string]string) map[string]string {
	if len(m) == 0 {
		return nil
	}
	out := make(map[string]string, len(m))
	for k, v := range m {
		out[k] = v
	}
	return out
}
