package dev

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/lestrrat-go/jwx/v2/jwk"
	"github.com/lestrrat-go/jwx/v2/jwt"
)

func TestIdPMintVerifiesAgainstServedJWKS(t *testing.T) {
	dir := t.TempDir()
	idp, err := LoadIdP(dir)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(idp.Handler())
	defer srv.Close()

	now := time.Now()
	tok, err := idp.Mint(TokenRequest{Subject: "alice", Scopes: []string{"pets:read"}, Groups: []string{"adopters"}}, now)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.Get(srv.URL + "/.well-known/jwks.json")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if strings.Contains(string(body), `"d"`) {
		t.Fatal("served JWKS contains private key material")
	}
	set, err := jwk.Parse(body)
	if err != nil {
		t.Fatal(err)
	}
	parsed, err := jwt.Parse([]byte(tok), jwt.WithKeySet(set), jwt.WithIssuer(DemoIssuer), jwt.WithAudience(DemoAudience), jwt.WithValidate(true))
	if err != nil {
		t.Fatalf("minted token does not verify against the served JWKS: %v", err)
	}
	if parsed.Subject() != "alice" {
		t.Fatalf("sub = %q", parsed.Subject())
	}
	scope, _ := parsed.Get("scope")
	if scope != "pets:read" {
		t.Fatalf("scope = %v", scope)
	}

	// A second start reuses the key: old tokens still verify.
	again, err := LoadIdP(dir)
	if err != nil {
		t.Fatal(err)
	}
	b1, _ := json.Marshal(idp.pub)
	b2, _ := json.Marshal(again.pub)
	if string(b1) != string(b2) {
		t.Fatal("restart generated a new key")
	}
	if _, err := idp.Mint(TokenRequest{}, now); err == nil {
		t.Fatal("token without subject minted")
	}
}

func TestEcho(t *testing.T) {
	srv := httptest.NewServer(EchoHandler())
	defer srv.Close()
	req, _ := http.NewRequest("POST", srv.URL+"/pets/adopt?x=1", nil)
	req.Header.Set("X-User-Id", "alice")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var got struct {
		Method, Path string
		Headers      map[string]string
	}
	if err := json.NewDecoder(resp.Body).Decode(&got); err != nil {
		t.Fatal(err)
	}
	if got.Method != "POST" || got.Path != "/pets/adopt?x=1" || got.Headers["x-user-id"] != "alice" {
		t.Fatalf("echo = %+v", got)
	}
}
