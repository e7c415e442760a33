package authn

import (
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"fmt"
	"log/slog"
	"unsafe"
)

// APIKey is one accepted key, known only by the SHA-256 of its value.
type APIKey struct {
	ID     string
	SHA256 string // 64 lower-case hex digits
	Labels map[string]string
}

// APIKeyConfig is one API-key provider: keys arrive in Header or in the
// Query parameter (exactly one is set).
type APIKeyConfig struct {
	Name   string
	Header string
	Query  string
	Keys   []APIKey
}

// APIKeys checks API keys by hash lookup (no scan over the keys) and a
// constant-time comparison of the stored and computed hashes.
type APIKeys struct {
	cfg    APIKeyConfig
	byHash map[[32]byte]*apiKeyEntry
}

type apiKeyEntry struct {
	hash [32]byte
	id   *Identity
}

// NewAPIKeys indexes the keys of a provider.
func NewAPIKeys(cfg APIKeyConfig) (*APIKeys, error) {
	if (cfg.Header == "") == (cfg.Query == "") {
		return nil, fmt.Errorf("api key provider %q: set exactly one of header or query", cfg.Name)
	}
	p := &APIKeys{cfg: cfg, byHash: make(map[[32]byte]*apiKeyEntry, len(cfg.Keys))}
	for i, k := range cfg.Keys {
		var h [32]byte
		if n, err := hex.Decode(h[:], []byte(k.SHA256)); err != nil || n != 32 || len(k.SHA256) != 64 {
			return nil, fmt.Errorf("api key provider %q: keys[%d] (id %q): sha256 must be 64 hex digits", cfg.Name, i, k.ID)
		}
		if _, dup := p.byHash[h]; dup {
			return nil, fmt.Errorf("api key provider %q: keys[%d] (id %q): the same hash is listed twice", cfg.Name, i, k.ID)
		}
		p.byHash[h] = &apiKeyEntry{hash: h, id: &Identity{
			Provider: cfg.Name, Kind: KindAPIKey, Subject: k.ID, APIKeyID: k.ID, Labels: k.Labels,
		}}
	}
	return p, nil
}

// Name is the provider name.
func (p *APIKeys) Name() string { return p.cfg.Name }

// Header is the header the key arrives in ("" when it comes in the query).
func (p *APIKeys) Header() string { return p.cfg.Header }

// Query is the query parameter the key arrives in ("" for a header).
func (p *APIKeys) Query() string { return p.cfg.Query }

// Authenticate looks the key up by its SHA-256.
func (p *APIKeys) Authenticate(key string) (*Identity, error) {
	h := sha256.Sum256(unsafe.Slice(unsafe.StringData(key), len(key)))
	e, ok := p.byHash[h]
	if !ok || subtle.ConstantTimeCompare(e.hash[:], h[:]) != 1 {
		return nil, refuse(p.cfg.Name, CodeUnknownAPIKey, "API key is not known (or was revoked)")
	}
	return e.id, nil
}

// LogValue prints the provider without its key hashes.
func (p *APIKeys) LogValue() slog.Value {
	return slog.GroupValue(slog.String("provider", p.cfg.Name), slog.Int("keys", len(p.byHash)))
}
