// Package sealbox keeps a short-lived secret encrypted at rest: AES-256-GCM
// under one broker key (a key file, or a key generated for dev), with the
// record it belongs to as additional data, so a sealed value only opens in
// its own place. The broker uses it for an API key issued by an
// asynchronous bind until the platform fetches it once. It must not import
// any other broker package.
package sealbox

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strings"
)

// KeySize is the size of a broker key: 32 bytes (AES-256).
const KeySize = 32

// Box seals and opens values with one key. It is safe for concurrent use.
type Box struct {
	aead cipher.AEAD
}

// New builds a box from a 32-byte key.
func New(key []byte) (*Box, error) {
	if len(key) != KeySize {
		return nil, fmt.Errorf("sealbox: the key is %d bytes, want %d", len(key), KeySize)
	}
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, fmt.Errorf("sealbox: %w", err)
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		return nil, fmt.Errorf("sealbox: %w", err)
	}
	return &Box{aead: aead}, nil
}

// Ephemeral builds a box with a random key that lives as long as the
// process: sealed values do not survive a restart.
func Ephemeral() *Box {
	key := make([]byte, KeySize)
	_, _ = rand.Read(key)
	b, _ := New(key)
	return b
}

// Seal encrypts plaintext bound to aad (nonce || ciphertext || tag).
func (b *Box) Seal(plaintext, aad []byte) []byte {
	nonce := make([]byte, b.aead.NonceSize(), b.aead.NonceSize()+len(plaintext)+b.aead.Overhead())
	_, _ = rand.Read(nonce)
	return b.aead.Seal(nonce, nonce, plaintext, aad)
}

// ErrOpen: the value was not sealed by this key for this aad, or was
// altered.
var ErrOpen = errors.New("sealbox: cannot open the sealed value (another key, another record, or altered)")

// Open decrypts a value Seal returned for the same aad.
func (b *Box) Open(sealed, aad []byte) ([]byte, error) {
	n := b.aead.NonceSize()
	if len(sealed) < n+b.aead.Overhead() {
		return nil, ErrOpen
	}
	out, err := b.aead.Open(nil, sealed[:n], sealed[n:], aad)
	if err != nil {
		return nil, ErrOpen
	}
	return out, nil
}

// LogValue prints nothing of the key.
func (b *Box) LogValue() slog.Value { return slog.StringValue("[sealbox]") }

// ParseKey reads a key written as 64 hex digits or as standard or
// URL-safe base64 of 32 bytes (surrounding space ignored).
func ParseKey(text []byte) ([]byte, error) {
	s := strings.TrimSpace(string(text))
	if k, err := hex.DecodeString(s); err == nil && len(k) == KeySize {
		return k, nil
	}
	for _, enc := range []*base64.Encoding{base64.StdEncoding, base64.RawStdEncoding, base64.URLEncoding, base64.RawURLEncoding} {
		if k, err := enc.DecodeString(s); err == nil && len(k) == KeySize {
			return k, nil
		}
	}
	return nil, fmt.Errorf("want %d bytes as 64 hex digits or base64 (e.g. `openssl rand -hex 32`)", KeySize)
}

// LoadKeyFile reads a key file (see ParseKey). It refuses a file that
// group or others may read or write. The error never quotes the file.
func LoadKeyFile(path string) (*Box, error) {
	st, err := os.Stat(path)
	if err != nil {
		return nil, fmt.Errorf("binding key file: %w", err)
	}
	if st.Mode().Perm()&0o077 != 0 {
		return nil, fmt.Errorf("binding key file %s: mode %04o lets others read it; chmod 600 it", path, st.Mode().Perm())
	}
	text, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("binding key file: %w", err)
	}
	key, err := ParseKey(text)
	if err != nil {
		return nil, fmt.Errorf("binding key file %s: %w", path, err)
	}
	return New(key)
}

// EnsureKeyFile loads path, writing a new random key (mode 0600) first if
// it does not exist (`gatehouse dev`).
func EnsureKeyFile(path string) (*Box, error) {
	if _, err := os.Stat(path); errors.Is(err, os.ErrNotExist) {
		key := make([]byte, KeySize)
		if _, err := rand.Read(key); err != nil {
			return nil, err
		}
		if err := os.WriteFile(path, []byte(hex.EncodeToString(key)+"\n"), 0o600); err != nil {
			return nil, fmt.Errorf("binding key file: %w", err)
		}
	}
	return LoadKeyFile(path)
}
