package api

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestTokens(t *testing.T) {
	dir := t.TempDir()
	f := filepath.Join(dir, "tokens")
	os.WriteFile(f, []byte("# comment\n\n  first-token-0123456789  \nsecond-token-0123456789\n"), 0o600)
	tk, err := LoadTokens(f)
	if err != nil {
		t.Fatal(err)
	}
	for tok, want := range map[string]bool{
		"first-token-0123456789":  true,
		"second-token-0123456789": true,
		"first-token-012345678":   false,
		"":                        false,
		"# comment":               false,
	} {
		if tk.Valid(tok) != want {
			t.Errorf("Valid(%q) = %v", tok, !want)
		}
	}
	if v := tk.LogValue().String(); strings.Contains(v, "token") {
		t.Fatalf("LogValue leaks: %s", v)
	}
	os.WriteFile(f, []byte("short\n"), 0o600)
	if _, err := LoadTokens(f); err == nil || !strings.Contains(err.Error(), "16 bytes") {
		t.Fatalf("short token: %v", err)
	}
	os.WriteFile(f, []byte("# only comments\n"), 0o600)
	if _, err := LoadTokens(f); err == nil {
		t.Fatal("empty token file accepted")
	}
	if _, err := LoadTokens(filepath.Join(dir, "missing")); err == nil {
		t.Fatal("missing file accepted")
	}
	var nilTokens *Tokens
	if nilTokens.Valid("first-token-0123456789") {
		t.Fatal("nil set accepts")
	}
}
