package osbclient_test

import (
	"bytes"
	"log/slog"
	"strings"
	"testing"

	"github.com/gatehouse-edge/gatehouse/broker/osbclient"
)

func TestClientLogRedacted(t *testing.T) {
	var buf bytes.Buffer
	slog.New(slog.NewTextHandler(&buf, nil)).Info("client", "broker", &osbclient.Client{BaseURL: "http://127.0.0.1:8080", Username: "u", Password: "hunter2"})
	if out := buf.String(); strings.Contains(out, "hunter2") || !strings.Contains(out, "password=[redacted]") {
		t.Fatalf("log line: %s", out)
	}
}
