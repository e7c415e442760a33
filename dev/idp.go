// Package dev runs the whole Gatehouse suite in one process for development
// (`gatehouse dev`): every role on embedded stores under one data
// directory, plus two demo helpers that exist only here — an identity
// provider serving the JWKS the example petstore spec trusts, and an echo
// upstream. Nothing in the production roles imports this package: the
// broker, the control plane, the sidecars and frontdoor must not import
// dev. Like cmd/, it must not import the test-support packages.
package dev

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/lestrrat-go/jwx/v2/jwa"
	"github.com/lestrrat-go/jwx/v2/jwk"
	"github.com/lestrrat-go/jwx/v2/jwt"
)

// The demo identity provider's names, as the example petstore spec expects.
const (
	DemoIssuer   = "https://idp.example.com/"
	DemoAudience = "petstore"
	demoKeyFile  = "demo-idp-key.json"
	demoKeyID    = "gatehouse-dev-1"
)

// IdP is the demo identity provider: one ES256 key, kept in the data
// directory so tokens minted by `gatehouse dev token` verify across restarts.
type IdP struct {
	key jwk.Key // private
	pub jwk.Set
}

// LoadIdP reads the demo key from dataDir, creating it on first use.
func LoadIdP(dataDir string) (*IdP, error) {
	path := filepath.Join(dataDir, demoKeyFile)
	raw, err := os.ReadFile(path)
	var key jwk.Key
	switch {
	case err == nil:
		if key, err = jwk.ParseKey(raw); err != nil {
			return nil, fmt.Errorf("demo idp key %s: %w", path, err)
		}
	case errors.Is(err, os.ErrNotExist):
		pk, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			return nil, err
		}
		if key, err = jwk.FromRaw(pk); err != nil {
			return nil, err
		}
		_ = key.Set(jwk.KeyIDKey, demoKeyID)
		_ = key.Set(jwk.AlgorithmKey, jwa.ES256)
		b, err := json.Marshal(key)
		if err != nil {
			return nil, err
		}
		if err := os.MkdirAll(dataDir, 0o700); err != nil {
			return nil, err
		}
		if err := os.WriteFile(path, b, 0o600); err != nil {
			return nil, fmt.Errorf("writing demo idp key: %w", err)
		}
	default:
		return nil, fmt.Errorf("demo idp key %s: %w", path, err)
	}
	pub, err := key.PublicKey()
	if err != nil {
		return nil, err
	}
	set := jwk.NewSet()
	if err := set.AddKey(pub); err != nil {
		return nil, err
	}
	return &IdP{key: key, pub: set}, nil
}

// TokenRequest describes a demo token.
type TokenRequest struct {
	Subject string
	Scopes  []string
	Groups  []string
	TTL     time.Duration
}

// Mint signs a token for the example petstore spec's corp provider.
func (p *IdP) Mint(r TokenRequest, now time.Time) (string, error) {
	if r.Subject == "" {
		return "", errors.New("token needs a subject (--sub)")
	}
	if r.TTL <= 0 {
		r.TTL = time.Hour
	}
	b := jwt.NewBuilder().
		Issuer(DemoIssuer).
		Audience([]string{DemoAudience}).
		Subject(r.Subject).
		IssuedAt(now).
		NotBefore(now).
		Expiration(now.Add(r.TTL))
	if len(r.Scopes) > 0 {
		b = b.Claim("scope", strings.Join(r.Scopes, " "))
	}
	if len(r.Groups) > 0 {
		b = b.Claim("groups", r.Groups)
	}
	tok, err := b.Build()
	if err != nil {
		return "", err
	}
	signed, err := jwt.Sign(tok, jwt.WithKey(jwa.ES256, p.key))
	if err != nil {
		return "", err
	}
	return string(signed), nil
}

// Handler serves the public JWKS at /.well-known/jwks.json.
func (p *IdP) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /.well-known/jwks.json", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Cache-Control", "max-age=300")
		_ = json.NewEncoder(w).Encode(p.pub)
	})
	return mux
}

// EchoHandler is the demo upstream: it answers every request with what it
// received (method, path, the headers Gatehouse forwarded), as JSON.
func EchoHandler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		headers := map[string]string{}
		for k, v := range r.Header {
			headers[strings.ToLower(k)] = strings.Join(v, ", ")
		}
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(map[string]any{
			"upstream": "gatehouse-dev-echo",
			"method":   r.Method,
			"path":     r.URL.RequestURI(),
			"host":     r.Host,
			"headers":  headers,
		})
	})
}
