package testenv

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"
	"time"
)

// ClickHouse is a clickhouse-server process (the Debian package, 18.16 on
// Debian 12) started for one test with its own data directory, listening
// on 127.0.0.1 only. Use the native protocol on TCPAddr.
type ClickHouse struct {
	TCPAddr  string // 127.0.0.1:PORT, native protocol
	HTTPAddr string // 127.0.0.1:PORT
	Dir      string
	cmd      *exec.Cmd
	exited   chan struct{}
	config   string
	logPath  string
}

// ClickHouseBinary finds clickhouse-server. When it is missing the test is
// skipped with a loud message (the package cannot be installed everywhere);
// `make test` installs it on Debian.
func ClickHouseBinary(t testing.TB) string {
	t.Helper()
	for _, p := range []string{"clickhouse-server", "/usr/sbin/clickhouse-server", "/usr/bin/clickhouse-server"} {
		if bin, err := exec.LookPath(p); err == nil {
			return bin
		}
	}
	t.Skip("SKIPPED LOUDLY: clickhouse-server is not installed, so the ClickHouse backend is NOT tested here; " +
		"run `make test` as root on Debian (it runs apt-get install -y clickhouse-server) to test it")
	return ""
}

// StartClickHouse starts a server on free loopback ports and stops it when
// the test ends.
func StartClickHouse(t testing.TB) *ClickHouse {
	t.Helper()
	bin := ClickHouseBinary(t)
	c := &ClickHouse{Dir: t.TempDir()}
	tcp, httpPort, inter := FreePort(t), FreePort(t), FreePort(t)
	c.TCPAddr = "127.0.0.1:" + strconv.Itoa(tcp)
	c.HTTPAddr = "127.0.0.1:" + strconv.Itoa(httpPort)
	for _, d := range []string{"data", "tmp", "user_files", "format_schemas"} {
		if err := os.MkdirAll(filepath.Join(c.Dir, d), 0o755); err != nil {
			t.Fatalf("testenv: %v", err)
		}
	}
	c.logPath = filepath.Join(c.Dir, "server.log")
	config := fmt.Sprintf(`<?xml version="1.0"?>
<yandex>
  <logger><level>warning</level><log>%[1]s/server.log</log><errorlog>%[1]s/server.err.log</errorlog><size>10M</size><count>1</count></logger>
  <listen_host>127.0.0.1</listen_host>
  <tcp_port>%[2]d</tcp_port>
  <http_port>%[3]d</http_port>
  <interserver_http_port>%[4]d</interserver_http_port>
  <interserver_http_host>127.0.0.1</interserver_http_host>
  <path>%[1]s/data/</path>
  <tmp_path>%[1]s/tmp/</tmp_path>
  <user_files_path>%[1]s/user_files/</user_files_path>
  <format_schema_path>%[1]s/format_schemas/</format_schema_path>
  <max_connections>64</max_connections>
  <max_concurrent_queries>32</max_concurrent_queries>
  <mark_cache_size>268435456</mark_cache_size>
  <uncompressed_cache_size>268435456</uncompressed_cache_size>
  <timezone>UTC</timezone>
  <mlock_executable>false</mlock_executable>
  <users_config>%[1]s/users.xml</users_config>
  <default_profile>default</default_profile>
  <default_database>default</default_database>
</yandex>
`, c.Dir, tcp, httpPort, inter)
	users := `<?xml version="1.0"?>
<yandex>
  <profiles><default><max_memory_usage>2000000000</max_memory_usage><max_threads>2</max_threads></default></profiles>
  <users><default><password></password><networks><ip>127.0.0.1</ip></networks><profile>default</profile><quota>default</quota></default></users>
  <quotas><default><interval><duration>3600</duration><queries>0</queries><errors>0</errors><result_rows>0</result_rows><read_rows>0</read_rows><execution_time>0</execution_time></interval></default></quotas>
</yandex>
`
	c.config = filepath.Join(c.Dir, "config.xml")
	if err := os.WriteFile(c.config, []byte(config), 0o644); err != nil {
		t.Fatalf("testenv: %v", err)
	}
	if err := os.WriteFile(filepath.Join(c.Dir, "users.xml"), []byte(users), 0o644); err != nil {
		t.Fatalf("testenv: %v", err)
	}
	c.start(t, bin)
	t.Cleanup(c.Stop)
	return c
}

func (c *ClickHouse) start(t testing.TB, bin string) {
	t.Helper()
	out, err := os.OpenFile(filepath.Join(c.Dir, "stdout.log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		t.Fatalf("testenv: %v", err)
	}
	c.cmd = exec.Command(bin, "--config-file="+c.config)
	c.cmd.Dir = c.Dir
	c.cmd.Stdout, c.cmd.Stderr = out, out
	if err := c.cmd.Start(); err != nil {
		t.Fatalf("testenv: starting clickhouse-server: %v", err)
	}
	c.exited = make(chan struct{})
	go func(cmd *exec.Cmd, exited chan struct{}) { _ = cmd.Wait(); out.Close(); close(exited) }(c.cmd, c.exited)
	deadline := time.Now().Add(60 * time.Second)
	for {
		conn, err := net.DialTimeout("tcp", c.TCPAddr, 200*time.Millisecond)
		if err == nil {
			conn.Close()
			return
		}
		select {
		case <-c.exited:
			b, _ := os.ReadFile(filepath.Join(c.Dir, "server.err.log"))
			o, _ := os.ReadFile(filepath.Join(c.Dir, "stdout.log"))
			t.Fatalf("testenv: clickhouse-server exited at start-up:\n%s\n%s", tail(o), tail(b))
		default:
		}
		if time.Now().After(deadline) {
			c.Stop()
			t.Fatalf("testenv: clickhouse-server did not listen on %s within 60s (logs in %s)", c.TCPAddr, c.Dir)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func tail(b []byte) string {
	if len(b) > 4000 {
		b = b[len(b)-4000:]
	}
	return string(b)
}

// Stop kills the server (SIGKILL, as a crash would) and waits for it.
func (c *ClickHouse) Stop() {
	if c.cmd == nil || c.cmd.Process == nil {
		return
	}
	_ = c.cmd.Process.Kill()
	select {
	case <-c.exited:
	case <-time.After(10 * time.Second):
	}
}

// Restart starts the server again with the same data and ports after Stop.
func (c *ClickHouse) Restart(t testing.TB) {
	t.Helper()
	c.start(t, ClickHouseBinary(t))
}
