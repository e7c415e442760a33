package accesslogsidecar

import (
	"bytes"
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestSecretFilesOthersCanReadAreRefused: the API token file, the
// redaction HMAC key, the chain key ring and the ClickHouse password file
// are refused when other users may read them (or anyone but the owner
// may write them), accepted with a warning when only the group may read
// them, and the error never shows the secret.
func TestSecretFilesOthersCanReadAreRefused(t *testing.T) {
	const secret = "s3cr3t-0123456789abcdef0123456789abcdef"
	dir := t.TempDir()
	loaders := map[string]func(path string, log *slog.Logger) error{
		"api token file": func(path string, log *slog.Logger) error {
			_, err := loadTokens(Config{APITokenFile: path}, log)
			return err
		},
		"redact HMAC key file": func(path string, log *slog.Logger) error {
			_, err := loadHMACKey(path, log)
			return err
		},
		"chain key file": func(path string, log *slog.Logger) error {
			_, err := LoadChainKeys(path, log)
			return err
		},
		"clickhouse password file": func(path string, log *slog.Logger) error {
			_, err := openClickHouse(context.Background(), "clickhouse://default@127.0.0.1:1/db?password_file="+path, log)
			if err != nil && strings.Contains(err.Error(), "127.0.0.1:1") {
				return nil // the file was accepted; only the dial failed
			}
			return err
		},
	}
	for what, load := range loaders {
		content := secret
		if what == "chain key file" {
			content = "k1 " + secret
		}
		for _, tc := range []struct {
			mode        os.FileMode
			ok, warning bool
		}{{mode: 0o600, ok: true}, {mode: 0o400, ok: true}, {mode: 0o640, ok: true, warning: true}, {mode: 0o644}, {mode: 0o604}, {mode: 0o620}, {mode: 0o666}} {
			path := filepath.Join(dir, strings.ReplaceAll(what, " ", "-"))
			os.Remove(path)
			if err := os.WriteFile(path, []byte(content+"\n"), 0o600); err != nil {
				t.Fatal(err)
			}
			if err := os.Chmod(path, tc.mode); err != nil {
				t.Fatal(err)
			}
			var logs bytes.Buffer
			err := load(path, slog.New(slog.NewTextHandler(&logs, nil)))
			if (err == nil) != tc.ok {
				t.Fatalf("%s mode %04o: err %v, want ok=%v", what, tc.mode, err, tc.ok)
			}
			if err != nil && (!strings.Contains(err.Error(), "chmod 600") || !strings.Contains(err.Error(), path) || strings.Contains(err.Error(), secret)) {
				t.Fatalf("%s mode %04o: unclear error %q", what, tc.mode, err)
			}
			if warned := strings.Contains(logs.String(), "readable by its group"); warned != tc.warning {
				t.Fatalf("%s mode %04o: warning=%v, want %v: %s", what, tc.mode, warned, tc.warning, logs.String())
			}
			if strings.Contains(logs.String(), secret) {
				t.Fatalf("%s: secret logged", what)
			}
		}
	}
	// The role refuses to start with such a file.
	tok := filepath.Join(dir, "tokens")
	os.WriteFile(tok, []byte(secret+"\n"), 0o644)
	os.Chmod(tok, 0o644)
	err := Run(context.Background(), Config{APITokenFile: tok, Store: "duckdb:" + filepath.Join(dir, "x.duckdb")})
	if err == nil || !strings.Contains(err.Error(), "chmod 600") {
		t.Fatalf("Run with a 0644 token file: %v", err)
	}
}
