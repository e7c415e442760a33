package testenv

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"testing"
	"time"
)

// Dynalite is a dynalite 4.0.0 process (a DynamoDB emulator on Node.js)
// started for one test, in memory, on a loopback port.
type Dynalite struct {
	Endpoint string // http://127.0.0.1:PORT
	Port     int
	cmd      *exec.Cmd
	logPath  string
}

// dynaliteCLI finds .tools/node/node_modules/dynalite/cli.js at the module
// root (installed by scripts/install-test-deps.sh).
func dynaliteCLI(t testing.TB) string {
	t.Helper()
	_, file, _, _ := runtime.Caller(0)
	root := filepath.Join(filepath.Dir(file), "..", "..")
	cli := filepath.Join(root, ".tools", "node", "node_modules", "dynalite", "cli.js")
	if _, err := os.Stat(cli); err != nil {
		t.Fatalf("testenv: dynalite is not installed at %s; run `make test-deps` (npm install dynalite@4.0.0 into .tools/node)", cli)
	}
	return cli
}

// StartDynalite starts dynalite on a free 127.0.0.1 port and kills it when
// the test ends.
func StartDynalite(t testing.TB) *Dynalite {
	t.Helper()
	node, err := exec.LookPath("node")
	if err != nil {
		t.Fatalf("testenv: node is not installed; run `make test-deps` (apt-get install -y nodejs)")
	}
	d := &Dynalite{Port: FreePort(t)}
	d.Endpoint = "http://127.0.0.1:" + strconv.Itoa(d.Port)
	d.logPath = filepath.Join(t.TempDir(), "dynalite.log")
	logf, err := os.Create(d.logPath)
	if err != nil {
		t.Fatalf("testenv: %v", err)
	}
	d.cmd = exec.Command(node, dynaliteCLI(t), "--host", "127.0.0.1", "--port", strconv.Itoa(d.Port))
	d.cmd.Stdout, d.cmd.Stderr = logf, logf
	if err := d.cmd.Start(); err != nil {
		logf.Close()
		t.Fatalf("testenv: starting dynalite: %v", err)
	}
	exited := make(chan struct{})
	go func() { _ = d.cmd.Wait(); logf.Close(); close(exited) }()
	t.Cleanup(func() {
		_ = d.cmd.Process.Kill()
		select {
		case <-exited:
		case <-time.After(5 * time.Second):
		}
	})
	if err := waitTCP(d.Port, exited, 20*time.Second); err != nil {
		b, _ := os.ReadFile(d.logPath)
		t.Fatalf("testenv: dynalite on %s did not start: %v\n%s", d.Endpoint, err, b)
	}
	return d
}

func waitTCP(port int, exited <-chan struct{}, within time.Duration) error {
	deadline := time.Now().Add(within)
	addr := "127.0.0.1:" + strconv.Itoa(port)
	for time.Now().Before(deadline) {
		select {
		case <-exited:
			return fmt.Errorf("process exited")
		default:
		}
		c, err := net.DialTimeout("tcp", addr, 200*time.Millisecond)
		if err == nil {
			c.Close()
			return nil
		}
		time.Sleep(50 * time.Millisecond)
	}
	return fmt.Errorf("nothing listening on %s after %s", addr, within)
}
