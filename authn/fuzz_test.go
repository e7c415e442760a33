package authn

import (
	"context"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rsa"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/gatehouse-edge/gatehouse/authn/authntest"
)

// FuzzJWTAuthenticate feeds arbitrary tokens to a provider: it must never
// panic, must refuse with an *Error that does not quote the token, and may
// accept only tokens that carry the provider's issuer, an accepted audience
// and an unexpired exp.
func FuzzJWTAuthenticate(f *testing.F) {
	keys()
	clk := newClock(t0)
	p := staticProvider(f, clk, NewTokenCache(64, time.Minute, nil), authntest.JWKS(rsaKey, ec, rsa1024))
	for _, s := range []string{
		rsaKey.Sign(claims(nil), nil),
		ec.Sign(claims(nil), nil),
		rsa1024.Sign(claims(nil), nil),
		rsaKey.Sign(claims(func(c map[string]any) { delete(c, "exp") }), nil),
		rsaKey.Sign(claims(nil), map[string]any{"jku": "https://evil.test/"}),
		authntest.Unsigned(map[string]any{"alg": "none"}, claims(nil), nil),
		authntest.Unsigned(map[string]any{"alg": "RS256", "kid": "k1", "crit": []string{"b64"}, "b64": false}, claims(nil), []byte("sig")),
		"eyJhbGciOiJSUzI1NiJ9.e30.c2ln",
		"a.b.c.d.e",
		"..",
		"",
		strings.Repeat("A", 100) + "." + strings.Repeat("B", 100) + "." + strings.Repeat("C", 100),
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, tok string) {
		id, err := p.Authenticate(context.Background(), tok)
		if err != nil {
			var e *Error
			if !errors.As(err, &e) || e.Code == "" {
				t.Fatalf("refusal is not a coded *Error: %v", err)
			}
			if len(tok) >= 16 && strings.Contains(err.Error(), tok) {
				t.Fatalf("error quotes the token")
			}
			return
		}
		if id == nil || id.Kind != KindJWT || id.Claims()["iss"] != testIssuer || !p.audienceOK(id.Claims()["aud"]) {
			t.Fatalf("accepted a token without issuer/audience: %+v", id)
		}
		if !clk.Now().Before(id.ExpiresAt.Add(30 * time.Second)) {
			t.Fatalf("accepted an expired token: exp %v", id.ExpiresAt)
		}
	})
}

// FuzzParseKeySet: arbitrary JWKS documents never panic, and a parsed set
// never holds an RSA key under 2048 bits.
func FuzzParseKeySet(f *testing.F) {
	keys()
	f.Add(authntest.JWKS(rsaKey, ec))
	f.Add(authntest.JWKS(rsa1024))
	f.Add([]byte(`{"keys":[{"kty":"oct","k":"c2VjcmV0"}]}`))
	f.Add([]byte(`{"keys":[]}`))
	f.Add([]byte(`not json`))
	f.Fuzz(func(t *testing.T, doc []byte) {
		s, err := ParseKeySet(doc)
		if err != nil {
			return
		}
		for _, k := range s.all {
			switch p := k.raw.(type) {
			case *rsa.PublicKey:
				if p.N.BitLen() < MinRSABits {
					t.Fatalf("kept an RSA key of %d bits", p.N.BitLen())
				}
			case *ecdsa.PublicKey, ed25519.PublicKey:
			default:
				t.Fatalf("kept a key of type %T", k.raw)
			}
		}
	})
}
