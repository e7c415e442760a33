package testenv

import (
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"
	"time"
)

// S3 is an s3rver process (the S3 emulator from npm, installed by
// scripts/install-test-deps.sh under .tools/node) started for one test. Use
// it with path-style addressing (s3.Options.UsePathStyle = true), region
// Region and the static credentials AccessKey/SecretKey.
type S3 struct {
	Endpoint  string // http://127.0.0.1:PORT
	Region    string
	AccessKey string
	SecretKey string
	Dir       string // the emulator's data directory
	cmd       *exec.Cmd
}

// s3rver accepts these fixed credentials.
const (
	s3rverAccessKey = "S3RVER"
	s3rverSecretKey = "S3RVER"
)

// RepoRoot finds the module root (the directory holding go.mod) from the
// working directory of the test, or fails the test.
func RepoRoot(t testing.TB) string {
	t.Helper()
	dir, err := os.Getwd()
	if err != nil {
		t.Fatalf("testenv: %v", err)
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			t.Fatalf("testenv: no go.mod above the test's working directory")
		}
		dir = parent
	}
}

// StartS3 starts s3rver on a free 127.0.0.1 port with a fresh data
// directory and creates the given buckets at start-up. The process is
// killed when the test ends.
func StartS3(t testing.TB, buckets ...string) *S3 {
	t.Helper()
	node, err := exec.LookPath("node")
	if err != nil {
		t.Fatalf("testenv: node is not installed; run `make test` (it installs nodejs and s3rver) or apt-get install -y nodejs")
	}
	script := filepath.Join(RepoRoot(t), ".tools", "node", "node_modules", "s3rver", "bin", "s3rver.js")
	if _, err := os.Stat(script); err != nil {
		t.Fatalf("testenv: s3rver is not installed at %s; run `make test` or ./scripts/install-test-deps.sh", script)
	}
	s := &S3{Region: "us-east-1", AccessKey: s3rverAccessKey, SecretKey: s3rverSecretKey, Dir: t.TempDir()}
	port := FreePort(t)
	s.Endpoint = "http://127.0.0.1:" + strconv.Itoa(port)
	args := []string{script, "-d", filepath.Join(s.Dir, "data"), "-a", "127.0.0.1", "-p", strconv.Itoa(port), "--silent", "--no-vhost-buckets"}
	for _, b := range buckets {
		args = append(args, "--configure-bucket", b)
	}
	logf, err := os.Create(filepath.Join(s.Dir, "s3rver.log"))
	if err != nil {
		t.Fatalf("testenv: %v", err)
	}
	s.cmd = exec.Command(node, args...)
	s.cmd.Stdout, s.cmd.Stderr = logf, logf
	if err := s.cmd.Start(); err != nil {
		t.Fatalf("testenv: starting s3rver: %v", err)
	}
	exited := make(chan struct{})
	go func() { _ = s.cmd.Wait(); logf.Close(); close(exited) }()
	t.Cleanup(func() {
		_ = s.cmd.Process.Kill()
		select {
		case <-exited:
		case <-time.After(5 * time.Second):
		}
	})
	if err := waitHTTP(s.Endpoint, exited, 45*time.Second); err != nil {
		t.Fatalf("testenv: s3rver on %s did not answer: %v (log in %s)", s.Endpoint, err, logf.Name())
	}
	return s
}

// waitHTTP polls url until any HTTP response arrives, the process exits or
// the time is up.
func waitHTTP(url string, exited <-chan struct{}, within time.Duration) error {
	c := &http.Client{Timeout: 500 * time.Millisecond}
	deadline := time.Now().Add(within)
	var last error
	for time.Now().Before(deadline) {
		select {
		case <-exited:
			return fmt.Errorf("process exited")
		default:
		}
		resp, err := c.Get(url)
		if err == nil {
			resp.Body.Close()
			return nil
		}
		last = err
		time.Sleep(50 * time.Millisecond)
	}
	return fmt.Errorf("no answer within %s: %v", within, last)
}
