// Package testenv starts real servers for tests (redis-server, ClickHouse,
// dynalite, goaws, s3rver, an ADS server) on free loopback ports and stops
// them when the test ends, and holds the small helpers several packages'
// tests share. It is imported by tests only, and must not import a role
// package (broker, controlplane, sidecars, dev, cmd, frontdoor): the
// tests of those packages import it.
package testenv

import (
	"bufio"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// FreePort returns a TCP port on 127.0.0.1 that was free a moment ago and
// that no other caller in this process was given. Ports come from
// 20000-31999, below Linux's ephemeral range (32768-60999): a port the
// kernel hands out for :0 is also what every outgoing connection of every
// parallel test takes, so one picked there can be gone before the server
// that wanted it binds ("address already in use").
func FreePort(t testing.TB) int {
	t.Helper()
	portsMu.Lock()
	defer portsMu.Unlock()
	for range 500 {
		p := 20000 + rand.IntN(12000)
		if portsGiven[p] {
			continue
		}
		l, err := net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(p))
		if err != nil {
			continue
		}
		l.Close()
		portsGiven[p] = true
		return p
	}
	t.Fatalf("testenv: no free port in 20000-31999 after 500 tries")
	return 0
}

var (
	portsMu    sync.Mutex
	portsGiven = map[int]bool{}
)

// Redis is a redis-server process started for one test.
type Redis struct {
	Addr string // 127.0.0.1:PORT
	Port int
	Dir  string
	cmd  *exec.Cmd
	done chan struct{} // closed when cmd has exited
	args []string
}

// RedisBinary finds redis-server or fails the test with what to do.
func RedisBinary(t testing.TB) string {
	t.Helper()
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		t.Fatalf("testenv: redis-server is not installed; run `make test` (it installs it as root with apt-get install -y redis-server) or install it yourself")
	}
	return bin
}

// StartRedis starts a standalone redis-server on a free loopback port with
// persistence off; extra are additional "--name value" arguments. The
// server is killed when the test ends.
func StartRedis(t testing.TB, extra ...string) *Redis {
	t.Helper()
	r := &Redis{Dir: t.TempDir()}
	r.Port = FreePort(t)
	r.Addr = "127.0.0.1:" + strconv.Itoa(r.Port)
	r.args = append([]string{
		"--bind", "127.0.0.1", "--port", strconv.Itoa(r.Port),
		"--save", "", "--appendonly", "no", "--dir", r.Dir,
		"--protected-mode", "yes",
	}, extra...)
	r.start(t)
	t.Cleanup(r.kill)
	return r
}

func (r *Redis) start(t testing.TB) {
	t.Helper()
	bin := RedisBinary(t)
	logf, err := os.Create(filepath.Join(r.Dir, fmt.Sprintf("redis-%d.log", time.Now().UnixNano())))
	if err != nil {
		t.Fatalf("testenv: %v", err)
	}
	r.cmd = exec.Command(bin, r.args...)
	r.cmd.Stdout, r.cmd.Stderr = logf, logf
	if err := r.cmd.Start(); err != nil {
		t.Fatalf("testenv: starting redis-server: %v", err)
	}
	done := make(chan struct{})
	r.done = done
	go func(cmd *exec.Cmd) { _ = cmd.Wait(); logf.Close(); close(done) }(r.cmd)
	if err := waitPing(r.Addr, 10*time.Second); err != nil {
		r.kill()
		t.Fatalf("testenv: redis-server on %s did not answer PING: %v (log in %s)", r.Addr, err, logf.Name())
	}
}

// Stop kills the server (as a crash would: SIGKILL), keeping its port.
func (r *Redis) Stop() { r.kill() }

// Restart starts the server again on the same port after Stop.
func (r *Redis) Restart(t testing.TB) {
	t.Helper()
	r.start(t)
}

func (r *Redis) kill() {
	if r.cmd != nil && r.cmd.Process != nil {
		_ = r.cmd.Process.Kill()
		select {
		case <-r.done:
		case <-time.After(5 * time.Second):
		}
	}
}

// waitPing speaks just enough RESP to see the server answer PONG.
func waitPing(addr string, within time.Duration) error {
	deadline := time.Now().Add(within)
	var last error
	for time.Now().Before(deadline) {
		c, err := net.DialTimeout("tcp", addr, 200*time.Millisecond)
		if err == nil {
			_ = c.SetDeadline(time.Now().Add(time.Second))
			_, err = c.Write([]byte("*1\r\n$4\r\nPING\r\n"))
			if err == nil {
				var line string
				line, err = bufio.NewReader(c).ReadString('\n')
				if err == nil && strings.HasPrefix(line, "+PONG") {
					c.Close()
					return nil
				}
				if err == nil {
					err = fmt.Errorf("unexpected reply %q", line)
				}
			}
			c.Close()
		}
		last = err
		time.Sleep(20 * time.Millisecond)
	}
	return last
}
