package e2e

import (
	"context"
	"fmt"
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

// TestComposeStack brings deploy/compose/compose.yaml up with
// podman-compose from the image of `make image` (every service but Envoy:
// the test's Envoy stand-in attaches as a node of group dev), waits until
// each service's own healthcheck command passes inside its container, and
// drives the end-to-end flow. `make test-deploy` runs it (root, podman;
// scripts/deploy-test-setup.sh prepares the machine). The test adds only a
// Compose override that publishes the xDS and sidecar ports on 127.0.0.1
// (Envoy would reach them inside the Compose network) and swaps the Redis
// image for Debian's redis-server (no registry here).
func TestComposeStack(t *testing.T) {
	image := os.Getenv("GATEHOUSE_TEST_COMPOSE_IMAGE")
	if image == "" {
		t.Skip("needs podman and the image: run `make test-deploy` (as root)")
	}
	if _, err := exec.LookPath("podman-compose"); err != nil {
		t.Fatal("podman-compose is not installed: run scripts/deploy-test-setup.sh (make test-deploy does)")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()

	// The image: non-root, CA certificates, a health check using the binary.
	out, err := exec.Command("podman", "image", "inspect", "--format", "{{.Config.User}}|{{json .Config.Healthcheck}}|{{json .Config.Entrypoint}}", image).CombinedOutput()
	if err != nil {
		t.Fatalf("podman image inspect %s: %v %s", image, err, out)
	}
	if f := strings.SplitN(strings.TrimSpace(string(out)), "|", 3); len(f) != 3 || f[0] != "65532:65532" ||
		!strings.Contains(f[1], "gatehouse") || !strings.Contains(f[1], "healthcheck") || !strings.Contains(f[2], "/usr/local/bin/gatehouse") {
		t.Errorf("image %s: user|healthcheck|entrypoint = %s; want 65532:65532, a gatehouse healthcheck, the binary", image, out)
	}
	if out, err := exec.Command("podman", "run", "--rm", "--entrypoint", "/bin/sh", image, "-c", "test -s /etc/ssl/certs/ca-certificates.crt && id -u").Output(); err != nil || strings.TrimSpace(string(out)) != "65532" {
		t.Errorf("image %s: CA bundle and uid: %v %s", image, err, out)
	}

	b, err := os.ReadFile("../deploy/compose/compose.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var file struct {
		Services map[string]struct {
			Image       string `yaml:"image"`
			Healthcheck struct {
				Test []string `yaml:"test"`
			} `yaml:"healthcheck"`
			Environment map[string]string `yaml:"environment"`
		} `yaml:"services"`
	}
	if err := yaml.Unmarshal(b, &file); err != nil {
		t.Fatal(err)
	}

	// GATEHOUSE_SECRETS_DIR as the Compose file's comment says to fill it:
	// passwords and the internal TLS minted with `gatehouse certs` (server
	// certificates also name 127.0.0.1, where the test reaches the published
	// ports), every file owned by the image's user, mode 0600.
	bin := gatehouseBinary(t)
	fx := demoFixtures(t)
	pki := mintPKI(t, bin)
	secrets := pki.dir
	brokerPassword, queryToken, redisPassword := "broker-pw-"+strconv.Itoa(os.Getpid()), "query-token-of-the-deploy-test-"+strconv.Itoa(os.Getpid()), "redis-pw-"+strconv.Itoa(os.Getpid())
	for name, v := range map[string]string{"broker_password.txt": brokerPassword, "accesslog_tokens.txt": queryToken + "\n", "redis_password.txt": redisPassword} {
		if err := os.WriteFile(filepath.Join(secrets, name), []byte(v), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	pki.server("controlplane", "controlplane", "127.0.0.1")
	pki.server("broker", "broker", "localhost", "127.0.0.1")
	pki.server("sidecar", "authz", "ratelimit", "accesslog", "localhost", "127.0.0.1")
	pki.server("redis", "redis", "127.0.0.1")
	nodeCrt, nodeKey := pki.node("node-dev", "dev")
	entries, _ := os.ReadDir(secrets)
	for _, e := range entries {
		if err := os.Chown(filepath.Join(secrets, e.Name()), 65532, 65532); err != nil {
			t.Fatal(err)
		}
	}
	// The test's own fixtures (IdP, echo upstream on the host) are allowed
	// by test-only variables in the override below.
	allow := map[string]string{}
	for _, kv := range fx.env {
		k, v, _ := strings.Cut(kv, "=")
		allow[k] = v
	}
	port := map[string]int{}
	for _, s := range []string{"broker", "query", "controlplane", "authz", "ratelimit", "accesslog", "redis"} {
		port[s] = testenv.FreePort(t)
	}
	override := fmt.Sprintf(`services:
  broker: {environment: {GATEHOUSE_BROKER_UPSTREAM_ALLOW: %q}}
  worker: {environment: {GATEHOUSE_WORKER_UPSTREAM_ALLOW: %q}}
  controlplane: {ports: ["127.0.0.1:%d:18000"], environment: {GATEHOUSE_CONTROLPLANE_UPSTREAM_ALLOW: %q}}
  authz: {ports: ["127.0.0.1:%d:9001"]}
  ratelimit: {ports: ["127.0.0.1:%d:8081"]}
  accesslog: {ports: ["127.0.0.1:%d:9002"]}
  redis: {image: "gatehouse-test-redis:7", ports: ["127.0.0.1:%d:6379"]}
`, allow["GATEHOUSE_BROKER_UPSTREAM_ALLOW"], allow["GATEHOUSE_WORKER_UPSTREAM_ALLOW"],
		port["controlplane"], allow["GATEHOUSE_CONTROLPLANE_UPSTREAM_ALLOW"], port["authz"], port["ratelimit"], port["accesslog"], port["redis"])
	overrideFile := filepath.Join(t.TempDir(), "compose.test.yaml")
	if err := os.WriteFile(overrideFile, []byte(override), 0o644); err != nil {
		t.Fatal(err)
	}
	project := "gatehouse-test-" + strconv.Itoa(os.Getpid())
	env := append(os.Environ(), "GATEHOUSE_IMAGE="+image, "GATEHOUSE_SECRETS_DIR="+secrets,
		"GATEHOUSE_BROKER_PORT="+strconv.Itoa(port["broker"]), "GATEHOUSE_QUERY_PORT="+strconv.Itoa(port["query"]))
	compose := func(args ...string) (string, error) {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute) // also at cleanup, after the test's ctx ended
		defer cancel()
		cmd := exec.CommandContext(ctx, "podman-compose", append([]string{"-p", project, "-f", "../deploy/compose/compose.yaml", "-f", overrideFile}, args...)...)
		cmd.Env = env
		out, err := cmd.CombinedOutput()
		return string(out), err
	}
	services := []string{"redis", "broker", "worker", "controlplane", "authz", "ratelimit", "accesslog"}
	start := time.Now()
	t.Cleanup(func() {
		if t.Failed() {
			for _, s := range services {
				out, _ := exec.Command("podman", "logs", "--tail", "40", project+"_"+s+"_1").CombinedOutput()
				t.Logf("--- %s:\n%s", s, out)
			}
		}
		if out, err := compose("down", "-v"); err != nil {
			t.Logf("podman-compose down: %v\n%s", err, out)
		}
	})
	if out, err := compose(append([]string{"up", "-d"}, services...)...); err != nil {
		t.Fatalf("podman-compose up: %v\n%s", err, out)
	}

	// Each service's healthcheck, run in its container as the engine does.
	// The sidecars are healthy once they have config, i.e. after the
	// first spec is provisioned: they are checked after the flow.
	healthy := func(s string) {
		t.Helper()
		hc := file.Services[s].Healthcheck.Test
		if len(hc) < 2 || hc[0] != "CMD" {
			t.Fatalf("service %s: healthcheck test %v, want [CMD, ...]", s, hc)
		}
		waitUntil(t, 3*time.Minute, "healthcheck of "+s, func() bool {
			return exec.Command("podman", append([]string{"exec", project + "_" + s + "_1"}, hc[1:]...)...).Run() == nil
		})
	}
	for _, s := range []string{"broker", "worker", "controlplane"} {
		healthy(s)
	}
	t.Logf("broker, worker and control plane healthy %s after podman-compose up", time.Since(start).Round(time.Second))

	byHost := map[string]string{
		"authz:9001":     "127.0.0.1:" + strconv.Itoa(port["authz"]),
		"ratelimit:8081": "127.0.0.1:" + strconv.Itoa(port["ratelimit"]),
		"accesslog:9002": "127.0.0.1:" + strconv.Itoa(port["accesslog"]),
	}
	redisTLS := []string{"--tls", "--cacert", pki.CAFile}
	driveFlow(t, ctx, deployed{
		broker: "https://127.0.0.1:" + strconv.Itoa(port["broker"]), brokerUser: "platform", brokerPassword: brokerPassword,
		xds:      "127.0.0.1:" + strconv.Itoa(port["controlplane"]),
		queryAPI: "https://127.0.0.1:" + strconv.Itoa(port["query"]), queryToken: queryToken,
		pki:       pki,
		fx:        fx,
		envoy:     tlsconfig.Client{CAFile: pki.CAFile, CertFile: nodeCrt, KeyFile: nodeKey}, // what the Envoy service mounts
		nodeGroup: file.Services["authz"].Environment["GATEHOUSE_AUTHZ_NODE_CLUSTER"],
		noJWKS:    true, // the demo IdP listens on the host's loopback, out of the containers' reach
		sidecar: func(a string) string {
			if m, ok := byHost[a]; ok {
				return m
			}
			t.Fatalf("Envoy would dial %s, which is no Compose service", a)
			return ""
		},
		counters: func() int {
			out, err := exec.Command("redis-cli", append(redisTLS, "-h", "127.0.0.1", "-p", strconv.Itoa(port["redis"]), "--no-auth-warning", "-a", redisPassword, "DBSIZE")...).CombinedOutput()
			if err != nil {
				t.Fatalf("redis-cli DBSIZE: %v %s", err, out)
			}
			n, _ := strconv.Atoi(strings.TrimSpace(string(out)))
			return n
		},
	})
	// Redis answers only with its password.
	if out, _ := exec.Command("redis-cli", append(redisTLS, "-h", "127.0.0.1", "-p", strconv.Itoa(port["redis"]), "DBSIZE")...).CombinedOutput(); !strings.Contains(string(out), "NOAUTH") {
		t.Errorf("Redis answered without AUTH: %s", out)
	}
	for _, s := range []string{"authz", "ratelimit", "accesslog"} {
		healthy(s)
	}
	t.Logf("podman-compose up to end of flow: %s", time.Since(start).Round(time.Second))
}
