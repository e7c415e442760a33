package sealbox_test

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/gatehouse-edge/gatehouse/broker/sealbox"
)

func TestSealOpensOnlyInItsPlace(t *testing.T) {
	b := sealbox.Ephemeral()
	secret := []byte("gh_secret-key-value")
	s := b.Seal(secret, []byte("inst/bind/op"))
	if bytes.Contains(s, secret) {
		t.Fatal("the sealed value holds the plaintext")
	}
	if got, err := b.Open(s, []byte("inst/bind/op")); err != nil || string(got) != string(secret) {
		t.Fatalf("Open = %q, %v", got, err)
	}
	if _, err := b.Open(s, []byte("inst/other/op")); !errors.Is(err, sealbox.ErrOpen) {
		t.Fatalf("opened under another record: %v", err)
	}
	if _, err := sealbox.Ephemeral().Open(s, []byte("inst/bind/op")); !errors.Is(err, sealbox.ErrOpen) {
		t.Fatalf("opened with another key: %v", err)
	}
	s[len(s)-1] ^= 1
	if _, err := b.Open(s, []byte("inst/bind/op")); !errors.Is(err, sealbox.ErrOpen) {
		t.Fatalf("opened an altered value: %v", err)
	}
	if _, err := b.Open([]byte("short"), nil); !errors.Is(err, sealbox.ErrOpen) {
		t.Fatalf("opened a truncated value: %v", err)
	}
}

func TestKeyFiles(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "binding-key")
	b1, err := sealbox.EnsureKeyFile(p)
	if err != nil {
		t.Fatal(err)
	}
	if st, _ := os.Stat(p); st.Mode().Perm() != 0o600 {
		t.Fatalf("generated key file mode %04o, want 0600", st.Mode().Perm())
	}
	b2, err := sealbox.EnsureKeyFile(p) // the same key again
	if err != nil {
		t.Fatal(err)
	}
	if _, err := b2.Open(b1.Seal([]byte("x"), nil), nil); err != nil {
		t.Fatalf("a reloaded key file does not open what the first load sealed: %v", err)
	}
	// Group/other-readable key files are refused; bad contents name the
	// format but never echo the file.
	loose := filepath.Join(dir, "loose")
	os.WriteFile(loose, []byte(strings.Repeat("ab", 32)), 0o644)
	if _, err := sealbox.LoadKeyFile(loose); err == nil || !strings.Contains(err.Error(), "chmod 600") {
		t.Fatalf("a 0644 key file: %v", err)
	}
	bad := filepath.Join(dir, "bad")
	os.WriteFile(bad, []byte("not-a-key-but-a-secret"), 0o600)
	if _, err := sealbox.LoadKeyFile(bad); err == nil || strings.Contains(err.Error(), "not-a-key-but-a-secret") {
		t.Fatalf("a malformed key file: %v", err)
	}
	for _, text := range []string{strings.Repeat("0f", 32) + "\n", "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8="} {
		if _, err := sealbox.ParseKey([]byte(text)); err != nil {
			t.Errorf("ParseKey(%q): %v", text, err)
		}
	}
}
