package authn

import (
	"encoding/base64"
	"testing"
)

func TestUnverifiedIssuer(t *testing.T) {
	enc := func(s string) string { return base64.RawURLEncoding.EncodeToString([]byte(s)) }
	for tok, want := range map[string]string{
		enc(`{"alg":"ES256"}`) + "." + enc(`{"iss":"https://idp.test/"}`) + ".sig": "https://idp.test/",
		enc(`{}`) + "." + enc(`{"iss":42}`) + ".sig":                               "",
		enc(`{}`) + "." + enc(`not json`) + ".sig":                                 "",
		"a.!!!.c": "", "no-dots": "", "": "",
	} {
		if got := UnverifiedIssuer(tok); got != want {
			t.Errorf("UnverifiedIssuer(%q) = %q, want %q", tok, got, want)
		}
	}
}

func FuzzUnverifiedIssuer(f *testing.F) {
	f.Add("eyJhbGciOiJFUzI1NiJ9.eyJpc3MiOiJodHRwczovL2lkcC50ZXN0LyJ9.sig")
	f.Add("a.b.c")
	f.Add("")
	f.Fuzz(func(t *testing.T, tok string) {
		_ = UnverifiedIssuer(tok) // never panics; the result is only a hint
	})
}
