package main

import (
	"path/filepath"
	"strings"
	"testing"
)

// TestWorkerCDNNeedsACertificate: the CDN step without an ACM certificate
// would create distributions CloudFront cannot serve the hosts on; the
// worker refuses to start instead.
func TestWorkerCDNNeedsACertificate(t *testing.T) {
	dir := t.TempDir()
	_, errOut, code := run(t, "worker", "--store", "sqlite:"+filepath.Join(dir, "s.db"), "--queue", "sqlite:"+filepath.Join(dir, "q.db"),
		"--admin-addr", "-", "--cdn-origin", "fleet-lb.example.net", "--log-level", "error")
	if code == 0 || !strings.Contains(errOut, "--cdn-certificate-arn") {
		t.Fatalf("worker with --cdn-origin and no certificate: exit %d\n%s", code, errOut)
	}
}
