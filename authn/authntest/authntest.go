// Package authntest makes real credentials for tests and load generators:
// RSA/EC signing keys, JWKS documents, signed compact JWTs (and deliberately
// broken ones), and a real JWKS HTTP server on loopback that counts its
// fetches. It must not be imported by production code paths, and imports
// no Gatehouse package.
package authntest

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"

	"github.com/lestrrat-go/jwx/v2/jwa"
	"github.com/lestrrat-go/jwx/v2/jwk"
	"github.com/lestrrat-go/jwx/v2/jws"
)

// Key is a signing key with its kid and algorithm.
type Key struct {
	KID     string
	Alg     jwa.SignatureAlgorithm
	Private any // *rsa.PrivateKey or *ecdsa.PrivateKey
}

// NewRSA generates an RSA key of bits bits for RS256.
func NewRSA(kid string, bits int) *Key {
	k, err := rsa.GenerateKey(rand.Reader, bits)
	if err != nil {
		panic(err)
	}
	return &Key{KID: kid, Alg: jwa.RS256, Private: k}
}

// NewEC generates a P-256 key for ES256.
func NewEC(kid string) *Key {
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		panic(err)
	}
	return &Key{KID: kid, Alg: jwa.ES256, Private: k}
}

// Public is the public key.
func (k *Key) Public() any {
	switch p := k.Private.(type) {
	case *rsa.PrivateKey:
		return &p.PublicKey
	case *ecdsa.PrivateKey:
		return &p.PublicKey
	}
	panic("unknown key type")
}

// PublicJWK is the public JWK with kid (and no alg pin).
func (k *Key) PublicJWK() jwk.Key {
	j, err := jwk.FromRaw(k.Public())
	if err != nil {
		panic(err)
	}
	_ = j.Set(jwk.KeyIDKey, k.KID)
	_ = j.Set(jwk.KeyUsageKey, "sig")
	return j
}

// JWKS is a JWKS document holding the public keys.
func JWKS(keys ...*Key) []byte {
	set := jwk.NewSet()
	for _, k := range keys {
		_ = set.AddKey(k.PublicJWK())
	}
	b, err := json.Marshal(set)
	if err != nil {
		panic(err)
	}
	return b
}

// Sign signs claims as a compact JWS with the key's kid and alg; extra
// header fields (e.g. jku, jwk) are added to the protected header.
func (k *Key) Sign(claims map[string]any, extraHeader map[string]any) string {
	payload, err := json.Marshal(claims)
	if err != nil {
		panic(err)
	}
	hdr := jws.NewHeaders()
	_ = hdr.Set(jws.KeyIDKey, k.KID)
	_ = hdr.Set(jws.TypeKey, "JWT")
	for name, v := range extraHeader {
		if err := hdr.Set(name, v); err != nil {
			panic(fmt.Sprintf("header %s: %v", name, err))
		}
	}
	tok, err := jws.Sign(payload, jws.WithKey(k.Alg, k.Private, jws.WithProtectedHeaders(hdr)))
	if err != nil {
		panic(err)
	}
	return string(tok)
}

// Unsigned builds header.payload. with any header (e.g. alg none) and an
// empty or given signature, without signing.
func Unsigned(header, claims map[string]any, sig []byte) string {
	h, _ := json.Marshal(header)
	p, _ := json.Marshal(claims)
	enc := base64.RawURLEncoding
	return enc.EncodeToString(h) + "." + enc.EncodeToString(p) + "." + enc.EncodeToString(sig)
}

// HashKey is the hex SHA-256 of an API key, as specs store it.
func HashKey(key string) string {
	s := sha256.Sum256([]byte(key))
	return hex.EncodeToString(s[:])
}

// JWKSServer is a real HTTP server on 127.0.0.1 serving a JWKS document
// that tests can change, counting fetches.
type JWKSServer struct {
	*httptest.Server
	mu      sync.Mutex
	body    []byte
	status  int
	fetches atomic.Int64
}

// NewJWKSServer serves doc at /jwks.json. Close it when done.
func NewJWKSServer(doc []byte) *JWKSServer {
	s := &JWKSServer{body: doc, status: http.StatusOK}
	s.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.fetches.Add(1)
		s.mu.Lock()
		body, status := s.body, s.status
		s.mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(status)
		_, _ = w.Write(body)
	}))
	return s
}

// URI is the JWKS URL.
func (s *JWKSServer) URI() string { return s.URL + "/jwks.json" }

// Set replaces the served document and status.
func (s *JWKSServer) Set(doc []byte, status int) {
	s.mu.Lock()
	s.body, s.status = doc, status
	s.mu.Unlock()
}

// Fetches is the number of requests served.
func (s *JWKSServer) Fetches() int64 { return s.fetches.Load() }
