package e2e

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/gatehouse-edge/gatehouse/internal/testenv"
	"github.com/gatehouse-edge/gatehouse/internal/tlsconfig"
)

// TestComposeServicesRun runs every Gatehouse service of
// deploy/compose/compose.yaml as a process (no container engine needed, so
// it runs in `make test`): the image's entrypoint or the service's own,
// its command and exactly its environment, its secrets as files in place
// of /run/secrets, the shared volume as a directory, Compose service names
// and ports remapped to loopback. Redis is redis-server run with the
// service's requirepass. Each service's healthcheck command must pass, and
// the end-to-end flow runs against them. TestComposeStack runs the same
// file with podman-compose.
func TestComposeServicesRun(t *testing.T) {
	if testing.Short() {
		t.Skip("starts every service of the Compose file")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	bin := gatehouseBinary(t)
	fx := demoFixtures(t)
	composeFile := "../deploy/compose/compose.yaml"
	if f := os.Getenv("GATEHOUSE_TEST_COMPOSE_FILE"); f != "" {
		composeFile = f // a modified copy, to see the test fail on a broken file
	}
	b, err := os.ReadFile(composeFile)
	if err != nil {
		t.Fatal(err)
	}
	var file struct {
		Services map[string]struct {
			Image       string            `yaml:"image"`
			Entrypoint  []string          `yaml:"entrypoint"`
			Command     []string          `yaml:"command"`
			Environment map[string]string `yaml:"environment"`
			Secrets     []string          `yaml:"secrets"`
			Volumes     []string          `yaml:"volumes"`
			Healthcheck struct {
				Test []string `yaml:"test"`
			} `yaml:"healthcheck"`
		} `yaml:"services"`
		Secrets map[string]struct {
			File string `yaml:"file"`
		} `yaml:"secrets"`
	}
	if err := yaml.Unmarshal(b, &file); err != nil {
		t.Fatal(err)
	}
	ports := newPortMap(t)
	for name := range file.Services {
		ports.hosts[name] = true // Compose service names resolve to the service
	}
	secrets, data := t.TempDir(), t.TempDir()
	brokerPassword, queryToken, redisPassword := "broker-pw-"+strconv.Itoa(os.Getpid()), "query-token-of-the-deploy-test-"+strconv.Itoa(os.Getpid()), "redis-pw-"+strconv.Itoa(os.Getpid())
	// GATEHOUSE_SECRETS_DIR as the file's comment says to fill it: the
	// passwords, and the internal TLS minted with `gatehouse certs` (every
	// service name is remapped to loopback here, so each server
	// certificate also names 127.0.0.1).
	pki := mintPKI(t, bin)
	srcDir := pki.dir
	for name, v := range map[string]string{"broker_password.txt": brokerPassword, "accesslog_tokens.txt": queryToken + "\n", "redis_password.txt": redisPassword} {
		if err := os.WriteFile(filepath.Join(srcDir, name), []byte(v), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	pki.server("controlplane", "controlplane", "127.0.0.1")
	pki.server("broker", "broker", "localhost", "127.0.0.1")
	pki.server("sidecar", "authz", "ratelimit", "accesslog", "localhost", "127.0.0.1")
	pki.server("redis", "redis", "127.0.0.1")
	pki.node("node-dev", "dev")
	// The engine mounts each secret's file at /run/secrets/<name>.
	for name, sec := range file.Secrets {
		src := strings.ReplaceAll(sec.File, "${GATEHOUSE_SECRETS_DIR:-.}", srcDir)
		if err := os.WriteFile(filepath.Join(secrets, name), []byte(pki.read(src)), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	// What the Envoy service mounts at /etc/gatehouse/tls.
	envoyTLS := map[string]string{}
	for _, svc := range file.Services {
		if !strings.HasPrefix(svc.Image, "envoyproxy/") {
			continue
		}
		for _, v := range svc.Volumes {
			f := strings.Split(strings.ReplaceAll(v, "${GATEHOUSE_SECRETS_DIR:-.}", srcDir), ":")
			if len(f) >= 2 && strings.HasPrefix(f[1], "/etc/gatehouse/tls/") {
				envoyTLS[strings.TrimPrefix(f[1], "/etc/gatehouse/tls/")] = f[0]
			}
		}
	}
	if envoyTLS["ca.crt"] == "" || envoyTLS["node.crt"] == "" || envoyTLS["node.key"] == "" {
		t.Fatalf("the Envoy service mounts no ca.crt, node.crt and node.key under /etc/gatehouse/tls: %v", envoyTLS)
	}
	local := func(s string) string {
		s = strings.ReplaceAll(s, "/run/secrets", secrets)
		s = strings.ReplaceAll(s, "/var/lib/gatehouse", data)
		s = strings.ReplaceAll(s, "/usr/local/bin/gatehouse", bin)
		s = strings.ReplaceAll(s, "$$", "$") // Compose's escape of a literal $
		return ports.remap(s)
	}

	var roles []role
	var group string
	for name, svc := range file.Services {
		switch {
		case strings.HasPrefix(svc.Image, "envoyproxy/"):
			continue // the test's Envoy stand-in
		case strings.HasPrefix(svc.Image, "redis:"):
			// The service's own command line, on a loopback port.
			if len(svc.Entrypoint) != 3 || svc.Entrypoint[0] != "/bin/sh" {
				t.Fatalf("redis: entrypoint %v, want [/bin/sh, -c, ...]", svc.Entrypoint)
			}
			script := local(svc.Entrypoint[2])
			if strings.Contains(script, "--tls-port 6379") {
				script = strings.Replace(script, "--tls-port 6379", "--tls-port "+strconv.Itoa(ports.port(6379)), 1)
			} else {
				script += " --port " + strconv.Itoa(ports.port(6379))
			}
			script += " --bind 127.0.0.1 --dir " + t.TempDir()
			script = strings.Replace(script, "exec redis-server", "exec "+testenv.RedisBinary(t), 1)
			roles = append(roles, role{name: name, argv: []string{"/bin/sh", "-c", script}, env: baseEnv(t.TempDir()), dir: t.TempDir()})
			continue
		case !strings.HasPrefix(svc.Image, "${GATEHOUSE_IMAGE"):
			t.Fatalf("service %s: image %q: no local stand-in", name, svc.Image)
		}
		env := append(baseEnv(t.TempDir()), fx.env...)
		for k, v := range svc.Environment {
			env = append(env, k+"="+local(v))
			if strings.HasSuffix(k, "_NODE_CLUSTER") {
				group = v
			}
		}
		argv := []string{bin}
		if len(svc.Entrypoint) > 0 {
			argv = nil
			for _, a := range svc.Entrypoint {
				argv = append(argv, local(a))
			}
		}
		for _, a := range svc.Command {
			argv = append(argv, local(a))
		}
		hc := svc.Healthcheck.Test
		if len(hc) < 2 || hc[0] != "CMD" {
			t.Fatalf("service %s: healthcheck %v, want [CMD, ...]", name, hc)
		}
		var check []string
		for _, a := range hc[1:] {
			check = append(check, local(a))
		}
		roles = append(roles, role{name: name, argv: argv, env: env, dir: t.TempDir(),
			probe: []probe{{what: "healthcheck", argv: check, env: env}}})
	}
	if group == "" {
		t.Fatal("no Compose service sets a node group")
	}
	probed := superviseAll(t, ctx, roles, func(r role) bool { return r.name == "broker" || r.name == "worker" }, 3*time.Minute)
	defer probed()

	redisTLS := []string{"--tls", "--cacert", pki.CAFile}
	driveFlow(t, ctx, deployed{
		broker: "https://" + ports.addr(8080), brokerUser: "platform", brokerPassword: brokerPassword,
		xds:      ports.addr(18000),
		queryAPI: "https://" + ports.addr(9003), queryToken: queryToken,
		nodeGroup: group,
		sidecar:   ports.remap,
		pki:       pki,
		fx:        fx,
		envoy:     tlsconfig.Client{CAFile: envoyTLS["ca.crt"], CertFile: envoyTLS["node.crt"], KeyFile: envoyTLS["node.key"]},
		counters: func() int {
			out, err := exec.Command("redis-cli", append(redisTLS, "-h", "127.0.0.1", "-p", strconv.Itoa(ports.port(6379)), "--no-auth-warning", "-a", redisPassword, "DBSIZE")...).CombinedOutput()
			if err != nil {
				t.Fatalf("redis-cli DBSIZE: %v %s", err, out)
			}
			n, _ := strconv.Atoi(strings.TrimSpace(string(out)))
			return n
		},
	})
	// Redis answers only with its password.
	if out, _ := exec.Command("redis-cli", append(redisTLS, "-h", "127.0.0.1", "-p", strconv.Itoa(ports.port(6379)), "DBSIZE")...).CombinedOutput(); !strings.Contains(string(out), "NOAUTH") {
		t.Errorf("Redis answered without AUTH: %s", out)
	}
	// ... and only over TLS.
	pctx, pcancel := context.WithTimeout(ctx, 5*time.Second)
	defer pcancel()
	out, _ := exec.CommandContext(pctx, "redis-cli", "-h", "127.0.0.1", "-p", strconv.Itoa(ports.port(6379)), "--no-auth-warning", "-a", redisPassword, "DBSIZE").CombinedOutput()
	if _, err := strconv.Atoi(strings.TrimSpace(string(out))); err == nil {
		t.Errorf("Redis answered a plaintext client: %s", out)
	}
}
