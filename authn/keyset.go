package authn

import (
	"context"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rsa"
	"fmt"
	"strings"
	"sync/atomic"

	"github.com/lestrrat-go/jwx/v2/jwk"
)

// MinRSABits is the smallest RSA modulus a key set accepts.
const MinRSABits = 2048

// maxKeys bounds the keys taken from one JWKS document.
const maxKeys = 100

var keySetGen atomic.Uint64

// KeySet is an immutable set of public verification keys parsed from one
// JWKS document. Keys the set refuses (RSA under MinRSABits, symmetric
// keys, encryption keys) are remembered by kid with the reason, so a token
// naming one is told why instead of triggering a refresh.
type KeySet struct {
	gen     uint64
	byKID   map[string]*verifyKey
	all     []*verifyKey
	refused map[string]string
}

type verifyKey struct {
	kid string
	alg string // from the JWK "alg"; "" when the JWK does not pin one
	raw any    // *rsa.PublicKey, *ecdsa.PublicKey or ed25519.PublicKey
}

// Generation identifies the set; a new document gives a new generation.
func (s *KeySet) Generation() uint64 { return s.gen }

// Len is the number of usable keys.
func (s *KeySet) Len() int { return len(s.all) }

// ParseKeySet parses a JWKS document. It fails when the document is not a
// JWKS or has no usable key; refused keys are kept out, with their reason.
func ParseKeySet(doc []byte) (*KeySet, error) {
	set, err := jwk.Parse(doc)
	if err != nil {
		return nil, fmt.Errorf("not a JWKS document: %w", err)
	}
	if set.Len() > maxKeys {
		return nil, fmt.Errorf("JWKS has %d keys, over the limit of %d", set.Len(), maxKeys)
	}
	ks := &KeySet{gen: keySetGen.Add(1), byKID: map[string]*verifyKey{}, refused: map[string]string{}}
	var reasons []string
	for i := 0; i < set.Len(); i++ {
		k, _ := set.Key(i)
		vk, why := usableKey(k)
		if why != "" {
			ks.refused[k.KeyID()] = why
			reasons = append(reasons, fmt.Sprintf("key %d (kid %q): %s", i, k.KeyID(), why))
			continue
		}
		if vk.kid != "" {
			if _, dup := ks.byKID[vk.kid]; dup {
				ks.refused[vk.kid] = "kid is used by more than one key in the JWKS"
				delete(ks.byKID, vk.kid)
				continue
			}
			ks.byKID[vk.kid] = vk
		}
		ks.all = append(ks.all, vk)
	}
	if len(ks.all) == 0 {
		if len(reasons) == 0 {
			return nil, fmt.Errorf("JWKS has no keys")
		}
		return nil, fmt.Errorf("JWKS has no usable key: %s", strings.Join(reasons, "; "))
	}
	return ks, nil
}

func usableKey(k jwk.Key) (*verifyKey, string) {
	if u := k.KeyUsage(); u != "" && u != "sig" {
		return nil, fmt.Sprintf("key use is %q, not sig", u)
	}
	if k.KeyType() == "oct" {
		return nil, "symmetric (oct) keys are never used: verification takes public keys only"
	}
	pub, err := k.PublicKey()
	if err != nil {
		return nil, "no public key: " + err.Error()
	}
	var raw any
	if err := pub.Raw(&raw); err != nil {
		return nil, "cannot use key: " + err.Error()
	}
	vk := &verifyKey{kid: k.KeyID(), alg: k.Algorithm().String()}
	switch p := raw.(type) {
	case *rsa.PublicKey:
		if n := p.N.BitLen(); n < MinRSABits {
			return nil, fmt.Sprintf("RSA key of %d bits is under the %d-bit minimum", n, MinRSABits)
		}
		vk.raw = p
	case *ecdsa.PublicKey:
		vk.raw = p
	case ed25519.PublicKey:
		vk.raw = p
	default:
		return nil, fmt.Sprintf("key type %T cannot verify signatures", raw)
	}
	return vk, ""
}

// fits reports whether the key can verify alg.
func (k *verifyKey) fits(alg string) bool {
	if k.alg != "" && k.alg != alg {
		return false
	}
	switch p := k.raw.(type) {
	case *rsa.PublicKey:
		return strings.HasPrefix(alg, "RS") || strings.HasPrefix(alg, "PS")
	case *ecdsa.PublicKey:
		switch alg {
		case "ES256":
			return p.Curve == elliptic.P256()
		case "ES384":
			return p.Curve == elliptic.P384()
		case "ES512":
			return p.Curve == elliptic.P521()
		}
	case ed25519.PublicKey:
		return alg == "EdDSA"
	}
	return false
}

// find returns the key for kid and alg. With an empty kid it returns the
// only key fitting alg, or nil when there is none or more than one.
func (s *KeySet) find(kid, alg string) (k *verifyKey, refusedWhy string) {
	if kid != "" {
		if why, ok := s.refused[kid]; ok {
			return nil, why
		}
		k := s.byKID[kid]
		if k != nil && !k.fits(alg) {
			return nil, fmt.Sprintf("key does not fit algorithm %s", alg)
		}
		return k, ""
	}
	var found *verifyKey
	for _, k := range s.all {
		if k.fits(alg) {
			if found != nil {
				return nil, "token has no kid and several keys fit its algorithm"
			}
			found = k
		}
	}
	return found, ""
}

// KeySource supplies the current key set of a JWT provider.
type KeySource interface {
	// Current is the key set to verify with, or nil when none is loaded.
	Current() *KeySet
	// RefreshForKID is called when a token names a kid the current set
	// lacks. It may refresh (at most once per interval, one fetch at a time)
	// and returns the set to use then, which may still be nil or lack kid.
	RefreshForKID(ctx context.Context, kid string) *KeySet
}

// StaticKeys is a KeySource of an inline JWKS.
type StaticKeys struct{ set *KeySet }

// NewStaticKeys parses an inline JWKS document.
func NewStaticKeys(doc []byte) (*StaticKeys, error) {
	s, err := ParseKeySet(doc)
	if err != nil {
		return nil, err
	}
	return &StaticKeys{set: s}, nil
}

// Current is the inline set.
func (s *StaticKeys) Current() *KeySet { return s.set }

// RefreshForKID cannot refresh an inline set.
func (s *StaticKeys) RefreshForKID(context.Context, string) *KeySet { return s.set }
