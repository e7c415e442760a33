package authz

import (
	"bytes"
	"context"
	"log/slog"
	"strings"
	"testing"

	"github.com/gatehouse-edge/gatehouse/authn/authntest"
)

// Debug logs of decisions never carry a token, an API key or a claim value.
func TestDecisionLogsAreRedacted(t *testing.T) {
	var buf bytes.Buffer
	log := slog.New(slog.NewJSONHandler(&buf, &slog.HandlerOptions{Level: slog.LevelDebug}))
	tok := token(nil)
	e2, _ := newEngine(t, Options{Log: log}, compile(t, string(authntest.JWKS(key()))))
	for _, req := range []Request{
		{RouteID: "petstore/read", Headers: bearer(tok), RequestID: "r1"},
		{RouteID: "petstore/read", Headers: map[string]string{"x-api-key": "acme-key"}},
		{RouteID: "petstore/open", Query: "api_key=old-key"},
		{RouteID: "petstore/read", Headers: bearer(tok + "x")},
	} {
		e2.Decide(context.Background(), req)
	}
	out := buf.String()
	if !strings.Contains(out, `"request_id":"r1"`) || !strings.Contains(out, `"authorization"`) {
		t.Fatalf("decision log lacks the request: %s", out)
	}
	for _, secret := range []string{tok[20:60], "acme-key", "old-key", "alice@example.com"} {
		if strings.Contains(out, secret) {
			t.Fatalf("log carries a secret %q:\n%s", secret, out)
		}
	}
}
