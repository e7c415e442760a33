package accesslogsidecar

import (
	"fmt"
	"log/slog"
	"os"
	"strings"

	"github.com/gatehouse-edge/gatehouse/accesslog"
)

// readSecretFile reads a file holding secrets (API tokens, the redaction
// HMAC key, the chain key ring, the ClickHouse password). A file that
// other users may read, or that anyone but its owner may change, is
// refused at start-up; one its group may read is accepted with a warning
// (a Kubernetes secret volume with fsGroup and defaultMode 0440). Errors
// and logs name the file, never its content.
func readSecretFile(path, what string, log *slog.Logger) ([]byte, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", what, err)
	}
	if !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("%s %s: not a regular file", what, path)
	}
	perm := fi.Mode().Perm()
	if perm&0o027 != 0 {
		return nil, fmt.Errorf("%s %s: mode %04o lets other users read or change it: chmod 600 %s (640 when a group must read it)", what, path, perm, path)
	}
	if perm&0o040 != 0 && log != nil {
		log.Warn("secret file is readable by its group", "file", path, "what", what, "mode", fmt.Sprintf("%04o", perm))
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", what, err)
	}
	return b, nil
}

// LoadChainKeys reads the chain key ring file ("<key id> <secret>" per
// line, the last key active), refusing a file other users may read.
func LoadChainKeys(path string, log *slog.Logger) (*accesslog.KeyRing, error) {
	b, err := readSecretFile(path, "chain key file", log)
	if err != nil {
		return nil, err
	}
	k, err := accesslog.ParseKeyRing(b)
	if err != nil {
		return nil, fmt.Errorf("chain key file %s: %w", path, err)
	}
	return k, nil
}

// loadHMACKey reads the redaction HMAC key.
func loadHMACKey(path string, log *slog.Logger) ([]byte, error) {
	b, err := readSecretFile(path, "redact HMAC key file", log)
	if err != nil {
		return nil, fmt.Errorf("accesslog: %w", err)
	}
	key := []byte(strings.TrimSpace(string(b)))
	if len(key) < 16 {
		return nil, fmt.Errorf("accesslog: redact HMAC key in %s is shorter than 16 bytes", path)
	}
	return key, nil
}
