package broker_test

import (
	"bytes"
	"log/slog"
	"strings"
	"testing"

	"github.com/gatehouse-edge/gatehouse/broker"
)

// TestConfigLogValueHidesSecrets: a Config logged whole, as a start-up
// line or a debugging change might log it, prints neither the broker's
// password nor a presigned query string of a queue URL.
func TestConfigLogValueHidesSecrets(t *testing.T) {
	cfg := broker.Config{
		HTTPAddr: "127.0.0.1:0",
		StoreURL: "sqlite:/var/lib/gatehouse/broker.db",
		QueueURL: "sqs://https://sqs.example.test/1/q?X-Amz-Signature=sig-0123456789",
		Username: "platform",
		Password: "hunter2-very-secret",
	}
	for name, handler := range map[string]func(*bytes.Buffer) slog.Handler{
		"text": func(b *bytes.Buffer) slog.Handler { return slog.NewTextHandler(b, nil) },
		"json": func(b *bytes.Buffer) slog.Handler { return slog.NewJSONHandler(b, nil) },
	} {
		var buf bytes.Buffer
		slog.New(handler(&buf)).Info("broker starting", "config", cfg)
		out := buf.String()
		for _, secret := range []string{cfg.Password, "X-Amz-Signature", "sig-0123456789"} {
			if strings.Contains(out, secret) {
				t.Errorf("%s: logged config holds %q: %s", name, secret, out)
			}
		}
		if !strings.Contains(out, "platform") || !strings.Contains(out, "[redacted]") {
			t.Errorf("%s: logged config lacks the username or the redacted password: %s", name, out)
		}
	}
}
