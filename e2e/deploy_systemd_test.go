package e2e

import (
	"bufio"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/gatehouse-edge/gatehouse/internal/testenv"
	"github.com/gatehouse-edge/gatehouse/internal/tlsconfig"
)

// unit is what the test reads from a systemd unit file.
type unit struct {
	file      string
	execStart []string
	envFile   string // without systemd's "-" prefix
	workDir   string
	stateDirs []string
}

func readUnit(t *testing.T, file string) unit {
	t.Helper()
	f, err := os.Open(file)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	u := unit{file: file}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		k, v, ok := strings.Cut(strings.TrimSpace(sc.Text()), "=")
		if !ok || strings.HasPrefix(k, "#") {
			continue
		}
		switch k {
		case "ExecStart":
			u.execStart = strings.Fields(v)
		case "EnvironmentFile":
			u.envFile = strings.TrimPrefix(v, "-")
		case "WorkingDirectory":
			u.workDir = v
		case "StateDirectory":
			u.stateDirs = strings.Fields(v)
		}
	}
	return u
}

// TestSystemdUnitsVerify runs `systemd-analyze verify` on every unit,
// installed into a scratch root with the binaries they start.
func TestSystemdUnitsVerify(t *testing.T) {
	if _, err := exec.LookPath("systemd-analyze"); err != nil {
		t.Fatal("systemd-analyze is not installed; `make test` installs systemd (scripts/install-test-deps.sh)")
	}
	root := t.TempDir()
	for _, d := range []string{"usr/local/bin", "etc/systemd/system", "usr/lib/systemd"} {
		if err := os.MkdirAll(filepath.Join(root, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	// The system's own units (sysinit.target, network-online.target, ...).
	if out, err := exec.Command("cp", "-r", "/lib/systemd/system", filepath.Join(root, "usr/lib/systemd/")).CombinedOutput(); err != nil {
		t.Fatalf("copying the system units: %v %s", err, out)
	}
	if out, err := exec.Command("cp", gatehouseBinary(t), filepath.Join(root, "usr/local/bin/gatehouse")).CombinedOutput(); err != nil {
		t.Fatalf("%v %s", err, out)
	}
	// Envoy is not installed here; verify checks only that the command is
	// an executable.
	if err := os.WriteFile(filepath.Join(root, "usr/local/bin/envoy"), []byte("#!/bin/sh\nexit 0\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	units, _ := filepath.Glob("../deploy/systemd/*.service")
	if len(units) < 7 {
		t.Fatalf("found %d units", len(units))
	}
	for _, u := range units {
		b, err := os.ReadFile(u)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(root, "etc/systemd/system", filepath.Base(u)), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	for _, u := range units {
		name := filepath.Base(u)
		out, err := exec.Command("systemd-analyze", "verify", "--root="+root, "/etc/systemd/system/"+name).CombinedOutput()
		if err != nil || len(strings.TrimSpace(string(out))) > 0 {
			t.Errorf("systemd-analyze verify %s: %v\n%s", name, err, out)
		}
	}
}

// TestSystemdUnitsRun starts every gatehouse unit of deploy/systemd as a
// process the way systemd would: its ExecStart with exactly the variables
// of its EnvironmentFile (the shipped examples under deploy/systemd/env/,
// installed as /etc/gatehouse/<role>.env), its StateDirectory and
// WorkingDirectory created, /etc/gatehouse and /var/lib/gatehouse under a
// scratch directory and every address on a free loopback port. Redis is a
// real redis-server. Then each role's admin /readyz must answer, and the
// end-to-end flow runs against them.
func TestSystemdUnitsRun(t *testing.T) {
	if testing.Short() {
		t.Skip("starts every role of the units")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	bin := gatehouseBinary(t)
	fx := demoFixtures(t)
	ports := newPortMap(t)
	redisPassword := "redis-pw-" + strconv.Itoa(os.Getpid())
	redis := testenv.StartRedis(t)
	ports.set(6379, redis.Port)
	// The host's Redis requires a password (ratelimit.env's password file).
	if out, err := exec.Command("redis-cli", "-h", "127.0.0.1", "-p", strconv.Itoa(redis.Port), "CONFIG", "SET", "requirepass", redisPassword).CombinedOutput(); err != nil || !strings.Contains(string(out), "OK") {
		t.Fatalf("redis-cli CONFIG SET requirepass: %v %s", err, out)
	}

	scratch := t.TempDir()
	etc, state := filepath.Join(scratch, "etc/gatehouse"), filepath.Join(scratch, "var/lib/gatehouse")
	if err := os.MkdirAll(etc, 0o750); err != nil {
		t.Fatal(err)
	}
	brokerPassword, queryToken := "broker-pw-"+strconv.Itoa(os.Getpid()), "query-token-of-the-deploy-test-"+strconv.Itoa(os.Getpid())
	for name, content := range map[string]string{"broker-password": brokerPassword, "accesslog-tokens": queryToken + "\n", "redis-password": redisPassword} {
		if err := os.WriteFile(filepath.Join(etc, name), []byte(content), 0o640); err != nil {
			t.Fatal(err)
		}
	}
	// /etc/gatehouse/tls as docs/DEPLOY.md mints it with `gatehouse certs`
	// (keys 0640 root:gatehouse, certificates 0644). The host's name is
	// 127.0.0.1 here.
	pki := mintPKI(t, bin)
	tlsDir := filepath.Join(etc, "tls")
	if err := os.MkdirAll(tlsDir, 0o755); err != nil {
		t.Fatal(err)
	}
	install := func(name, crt, key string) {
		for dst, src := range map[string]string{name + ".crt": crt, name + ".key": key} {
			if src == "" {
				continue
			}
			mode := os.FileMode(0o644)
			if strings.HasSuffix(dst, ".key") {
				mode = 0o640
			}
			if err := os.WriteFile(filepath.Join(tlsDir, dst), []byte(pki.read(src)), mode); err != nil {
				t.Fatal(err)
			}
		}
	}
	install("ca", pki.CAFile, "")
	c, k := pki.server("controlplane", "127.0.0.1", "localhost")
	install("controlplane", c, k)
	c, k = pki.server("broker", "127.0.0.1", "localhost")
	install("broker", c, k)
	c, k = pki.server("sidecar", "127.0.0.1", "localhost")
	install("sidecar", c, k)
	local := func(s string) string {
		s = strings.ReplaceAll(s, "/etc/gatehouse", etc)
		s = strings.ReplaceAll(s, "/var/lib/gatehouse", state)
		return ports.remap(s)
	}

	var roles []role
	var groups []string
	for _, r := range []string{"controlplane", "broker", "worker", "authz", "ratelimit", "accesslog"} {
		u := readUnit(t, "../deploy/systemd/gatehouse-"+r+".service")
		if len(u.execStart) < 2 || u.execStart[0] != "/usr/local/bin/gatehouse" || u.envFile != "/etc/gatehouse/"+r+".env" {
			t.Fatalf("%s: ExecStart %v, EnvironmentFile %q", u.file, u.execStart, u.envFile)
		}
		for _, d := range u.stateDirs {
			if err := os.MkdirAll(filepath.Join(state, strings.TrimPrefix(d, "gatehouse/")), 0o750); err != nil {
				t.Fatal(err)
			}
		}
		env := append(baseEnv(t.TempDir()), fx.env...)
		var adminAddr string
		f, err := os.Open(filepath.Join("../deploy/systemd/env", r+".env"))
		if err != nil {
			t.Fatalf("no example environment file for %s: %v", r, err)
		}
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			line := strings.TrimSpace(sc.Text())
			if line == "" || strings.HasPrefix(line, "#") {
				continue
			}
			k, v, ok := strings.Cut(line, "=")
			if !ok {
				t.Fatalf("%s.env: %q is not KEY=VALUE", r, line)
			}
			if strings.HasSuffix(k, "_ADMIN_ADDR") || k == "GATEHOUSE_ACCESSLOG_HTTP_ADDR" {
				adminAddr = local(v)
			}
			if strings.HasSuffix(k, "_NODE_CLUSTER") {
				groups = append(groups, v)
			}
			env = append(env, k+"="+local(v))
		}
		f.Close()
		if adminAddr == "" {
			t.Fatalf("%s.env sets no admin address", r)
		}
		argv := append([]string{bin}, u.execStart[1:]...)
		dir := local(u.workDir)
		if dir == "" {
			dir = t.TempDir()
		}
		check := []string{bin, "healthcheck", "http://" + adminAddr + "/readyz"}
		if r == "accesslog" { // its /readyz is on the query API, HTTPS
			check = []string{bin, "healthcheck", "--ca-file", filepath.Join(tlsDir, "ca.crt"), "https://" + adminAddr + "/readyz"}
		}
		roles = append(roles, role{name: r, argv: argv, env: env, dir: dir,
			probe: []probe{{what: "readiness", argv: check, env: env}}})
	}
	if len(groups) != 3 {
		t.Fatalf("%d sidecar environment files set a node group (%v), want authz, ratelimit and accesslog", len(groups), groups)
	}
	c, k = pki.node("node", groups[0])
	install("node", c, k)

	probed := superviseAll(t, ctx, roles, func(r role) bool { return r.name == "broker" || r.name == "worker" }, 3*time.Minute)
	defer probed()

	driveFlow(t, ctx, deployed{
		broker: "https://" + ports.addr(8080), brokerUser: "platform", brokerPassword: brokerPassword,
		xds:      ports.addr(18000),
		queryAPI: "https://" + ports.addr(9003), queryToken: queryToken,
		nodeGroup: groups[0],
		sidecar:   ports.remap,
		pki:       pki,
		fx:        fx,
		// Envoy's bootstrap names the same files (gatehouse bootstrap --xds-*-file).
		envoy: tlsconfig.Client{CAFile: filepath.Join(tlsDir, "ca.crt"), CertFile: filepath.Join(tlsDir, "node.crt"), KeyFile: filepath.Join(tlsDir, "node.key")},
		counters: func() int {
			out, err := exec.Command("redis-cli", "-h", "127.0.0.1", "-p", strconv.Itoa(redis.Port), "--no-auth-warning", "-a", redisPassword, "DBSIZE").CombinedOutput()
			if err != nil {
				t.Fatalf("redis-cli DBSIZE: %v %s", err, out)
			}
			n, _ := strconv.Atoi(strings.TrimSpace(string(out)))
			return n
		},
	})
}
