package api_test

import (
	"bytes"
	"log/slog"
	"strings"
	"testing"

	"github.com/gatehouse-edge/gatehouse/broker/api"
)

func TestCredentialsLogRedacted(t *testing.T) {
	var buf bytes.Buffer
	log := slog.New(slog.NewJSONHandler(&buf, nil))
	c := api.Credentials{APIKey: api.KeyPrefix + "very-secret", APIKeyID: "k1", Provider: "partners", Hosts: []string{"a.example.com"}}
	log.Info("issued", "credentials", c)
	out := buf.String()
	if strings.Contains(out, "very-secret") || !strings.Contains(out, `"api_key":"[redacted]"`) || !strings.Contains(out, `"api_key_id":"k1"`) {
		t.Fatalf("log line: %s", out)
	}
}
