package authzsidecar

import (
	"context"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/gatehouse-edge/gatehouse/authn/authntest"
)

// TestRunJWKSAllow: a jwksUri on loopback is not fetched unless
// --jwks-allow names it; then its tokens verify. A bad entry stops Run
// with the flag's name.
func TestRunJWKSAllow(t *testing.T) {
	var hits atomic.Int64
	doc := authntest.JWKS(key())
	idp := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		hits.Add(1)
		_, _ = w.Write(doc)
	}))
	defer idp.Close()
	spec := strings.Replace(specYAML("petstore", "x"), "jwks: 'x'", "jwksUri: "+idp.URL+"/jwks.json", 1)
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "petstore.yaml"), []byte(spec), 0o644); err != nil {
		t.Fatal(err)
	}
	req := checkRequest("petstore/read", map[string]string{"authorization": "Bearer " + token("petstore", nil)}, "")

	t.Run("not allowed", func(t *testing.T) {
		r := startRun(t, Config{SpecDir: dir, SpecPoll: -1})
		resp, err := dial(t, r.grpcAddr).Check(ctxT(t), req)
		if err != nil || resp.GetDeniedResponse().GetStatus().GetCode() != 401 {
			t.Fatalf("token from an internal JWKS that is not allowed: %v %v", resp, err)
		}
		if hits.Load() != 0 {
			t.Fatalf("the internal JWKS endpoint saw %d requests", hits.Load())
		}
	})
	t.Run("allowed", func(t *testing.T) {
		r := startRun(t, Config{SpecDir: dir, SpecPoll: -1, JWKSAllow: []string{strings.TrimPrefix(idp.URL, "http://")}})
		resp, err := dial(t, r.grpcAddr).Check(ctxT(t), req)
		if err != nil || resp.GetOkResponse() == nil {
			t.Fatalf("token from an allowed JWKS: %v %v", resp, err)
		}
	})
	t.Run("bad entry", func(t *testing.T) {
		err := Run(context.Background(), Config{SpecDir: dir, GRPCAddr: "127.0.0.1:0", AdminAddr: "127.0.0.1:0", JWKSAllow: []string{"10.0.0.0/99"}})
		if err == nil || !strings.Contains(err.Error(), "--jwks-allow") || !strings.Contains(err.Error(), "10.0.0.0/99") {
			t.Fatalf("Run with a bad --jwks-allow: %v", err)
		}
	})
}
