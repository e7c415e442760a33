package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/yaml"

	"github.com/gatehouse-edge/gatehouse/internal/testenv"
	"github.com/gatehouse-edge/gatehouse/internal/tlsconfig"
)

// k8sDeployments decodes every Deployment of deploy/kubernetes strictly
// (unknown fields fail) into the Kubernetes API types.
func k8sDeployments(t *testing.T) []appsv1.Deployment {
	t.Helper()
	dir := "../deploy/kubernetes"
	if d := os.Getenv("GATEHOUSE_TEST_KUBERNETES_DIR"); d != "" {
		dir = d // a modified copy, to see the test fail on a broken manifest
	}
	files, _ := filepath.Glob(filepath.Join(dir, "*.yaml"))
	var out []appsv1.Deployment
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		for i, doc := range regexp.MustCompile(`(?m)^---\s*$`).Split(string(b), -1) {
			js, err := yaml.YAMLToJSON([]byte(doc))
			if err != nil {
				t.Fatalf("%s document %d: %v", f, i, err)
			}
			var meta struct{ Kind string }
			if err := json.Unmarshal(js, &meta); err != nil || meta.Kind != "Deployment" {
				continue
			}
			var d appsv1.Deployment
			dec := json.NewDecoder(bytes.NewReader(js))
			dec.DisallowUnknownFields()
			if err := dec.Decode(&d); err != nil {
				t.Fatalf("%s document %d: %v", f, i, err)
			}
			out = append(out, d)
		}
	}
	if len(out) < 4 {
		t.Fatalf("found %d Deployments in deploy/kubernetes", len(out))
	}
	return out
}

var k8sVarRE = regexp.MustCompile(`\$\(([A-Za-z_][A-Za-z0-9_]*)\)`)

// TestKubernetesManifestsRun runs every container of every Deployment in
// deploy/kubernetes as a process, as the kubelet would start it: the
// image's binary with the container's command and args, exactly its
// environment (values, $(VAR) references, fieldRef and secretKeyRef),
// its Secret/ConfigMap/emptyDir volumes as directories, every address
// remapped to a loopback port. Envoy is the test's stand-in node; Redis is
// redis-server run with the manifest's args; DynamoDB and SQS are dynalite
// and goaws; ClickHouse is a real clickhouse-server. Every readiness and
// liveness probe is called without credentials until it passes, then the
// end-to-end flow runs against the pods.
func TestKubernetesManifestsRun(t *testing.T) {
	if testing.Short() {
		t.Skip("starts every role of the manifests")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 6*time.Minute)
	defer cancel()
	bin := gatehouseBinary(t)
	fx := demoFixtures(t)
	testenv.RedisBinary(t)
	ports := newPortMap(t)
	ch := testenv.StartClickHouse(t)
	chPort, _ := strconv.Atoi(strings.TrimPrefix(ch.TCPAddr, "127.0.0.1:"))
	ports.set(9000, chPort)
	dyn := testenv.StartDynalite(t)
	sqs := testenv.StartGoAWS(t)

	// What `kubectl create secret/configmap` would hold (the manifests'
	// comments name them).
	brokerPassword, queryToken, redisPassword := "broker-pw-"+strconv.Itoa(os.Getpid()), "query-token-of-the-deploy-test-"+strconv.Itoa(os.Getpid()), "redis-pw-"+strconv.Itoa(os.Getpid())
	bootstrap, err := os.ReadFile("../deploy/envoy/us-east-1.json")
	if err != nil {
		t.Fatal(err)
	}
	// The internal CA and certificates, minted with `gatehouse certs` as the
	// manifests' comments say. Every Service name is remapped to loopback
	// here, so each server certificate also names 127.0.0.1.
	pki := mintPKI(t, bin)
	cpCrt, cpKey := pki.server("controlplane", "gatehouse-controlplane.gatehouse.svc", "gatehouse-controlplane.gatehouse.svc.cluster.local", "127.0.0.1")
	brCrt, brKey := pki.server("broker", "gatehouse-broker.gatehouse.svc", "gatehouse-broker.gatehouse.svc.cluster.local", "127.0.0.1")
	rdCrt, rdKey := pki.server("redis", "redis.gatehouse.svc", "redis.gatehouse.svc.cluster.local", "127.0.0.1")
	scCrt, scKey := pki.server("sidecar", "127.0.0.1", "localhost")
	ndCrt, ndKey := pki.node("node-us-east-1", "us-east-1")
	ca := pki.read(pki.CAFile)
	objects := map[string]map[string]string{
		"secret/gatehouse-broker":             {"password": brokerPassword},
		"secret/gatehouse-accesslog":          {"tokens": queryToken + "\n"},
		"secret/gatehouse-redis":              {"password": redisPassword},
		"configmap/envoy-bootstrap-us-east-1": {"bootstrap.json": string(bootstrap)},
		"secret/gatehouse-controlplane-tls":   {"ca.crt": ca, "tls.crt": pki.read(cpCrt), "tls.key": pki.read(cpKey)},
		"secret/gatehouse-broker-tls":         {"tls.crt": pki.read(brCrt), "tls.key": pki.read(brKey)},
		"secret/gatehouse-redis-tls":          {"ca.crt": ca, "tls.crt": pki.read(rdCrt), "tls.key": pki.read(rdKey)},
		"secret/gatehouse-edge-tls-us-east-1": {"ca.crt": ca, "node.crt": pki.read(ndCrt), "node.key": pki.read(ndKey),
			"sidecar.crt": pki.read(scCrt), "sidecar.key": pki.read(scKey)},
	}
	var envoyTLSDir string // where the Envoy container's /etc/gatehouse/tls lands
	// The cloud the cluster runs in: AWS endpoints and credentials. Tables
	// and queues are created by the roles (--aws-create), which production
	// leaves to infrastructure code.
	cloud := []string{
		"AWS_ACCESS_KEY_ID=test", "AWS_SECRET_ACCESS_KEY=test", "AWS_EC2_METADATA_DISABLED=true",
		"AWS_ENDPOINT_URL_DYNAMODB=" + dyn.Endpoint, "AWS_ENDPOINT_URL_SQS=" + sqs.Endpoint,
		"GATEHOUSE_BROKER_AWS_CREATE=true", "GATEHOUSE_WORKER_AWS_CREATE=true",
	}

	var roles []role
	listens := map[int]string{}
	var nodeGroups []string
	for _, d := range k8sDeployments(t) {
		pod := d.Name + "-test-0"
		vols := map[string]string{}
		for _, v := range d.Spec.Template.Spec.Volumes {
			dir := filepath.Join(t.TempDir(), v.Name)
			if err := os.MkdirAll(dir, 0o755); err != nil {
				t.Fatal(err)
			}
			var data map[string]string
			switch {
			case v.Secret != nil:
				data = objects["secret/"+v.Secret.SecretName]
			case v.ConfigMap != nil:
				data = objects["configmap/"+v.ConfigMap.Name]
			case v.EmptyDir != nil:
				data = map[string]string{}
			default:
				t.Fatalf("%s: volume %s: kind not supported by this test", d.Name, v.Name)
			}
			if data == nil {
				t.Fatalf("%s: volume %s names an object the manifests' comments do not create", d.Name, v.Name)
			}
			mode := os.FileMode(0o600)
			if v.Secret != nil && v.Secret.DefaultMode != nil {
				mode = os.FileMode(*v.Secret.DefaultMode) // as the kubelet writes it (fsGroup makes it the pod's group)
			}
			for k, val := range data {
				if err := os.WriteFile(filepath.Join(dir, k), []byte(val), mode); err != nil {
					t.Fatal(err)
				}
			}
			vols[v.Name] = dir
		}
		for _, c := range d.Spec.Template.Spec.Containers {
			name := d.Name + "/" + c.Name
			for _, p := range c.Ports {
				if prev, dup := listens[int(p.ContainerPort)]; dup {
					t.Fatalf("%s and %s both use port %d; the test maps one role per port", prev, name, p.ContainerPort)
				}
				listens[int(p.ContainerPort)] = name
			}
			// Mounts: the container path becomes the volume's directory.
			paths := map[string]string{}
			for _, m := range c.VolumeMounts {
				dir, ok := vols[m.Name]
				if !ok {
					t.Fatalf("%s: mount of unknown volume %s", name, m.Name)
				}
				paths[m.MountPath] = dir
			}
			if strings.HasPrefix(c.Image, "envoyproxy/") {
				envoyTLSDir = paths["/etc/gatehouse/tls"]
				continue // the test's Envoy stand-in attaches to the control plane instead
			}
			local := func(s string) string {
				for mp, dir := range paths {
					s = strings.ReplaceAll(s, mp, dir)
				}
				return ports.remap(s)
			}
			env := map[string]string{}
			var order []string
			for _, e := range c.Env {
				var v string
				switch {
				case e.ValueFrom == nil:
					v = k8sVarRE.ReplaceAllStringFunc(e.Value, func(ref string) string {
						if val, ok := env[ref[2:len(ref)-1]]; ok {
							return val
						}
						return ref
					})
				case e.ValueFrom.FieldRef != nil && e.ValueFrom.FieldRef.FieldPath == "metadata.name":
					v = pod
				case e.ValueFrom.SecretKeyRef != nil:
					data, ok := objects["secret/"+e.ValueFrom.SecretKeyRef.Name][e.ValueFrom.SecretKeyRef.Key]
					if !ok {
						t.Fatalf("%s: env %s: secret %s key %s is not created by the manifests' comments", name, e.Name, e.ValueFrom.SecretKeyRef.Name, e.ValueFrom.SecretKeyRef.Key)
					}
					v = data
				default:
					t.Fatalf("%s: env %s: valueFrom kind not supported by this test", name, e.Name)
				}
				if _, seen := env[e.Name]; !seen {
					order = append(order, e.Name)
				}
				env[e.Name] = v
				if strings.HasSuffix(e.Name, "_NODE_CLUSTER") {
					nodeGroups = append(nodeGroups, v)
				}
			}
			expand := func(s string) string {
				return k8sVarRE.ReplaceAllStringFunc(s, func(ref string) string {
					if val, ok := env[ref[2:len(ref)-1]]; ok {
						return val
					}
					return ref
				})
			}
			home := t.TempDir()
			procEnv := baseEnv(home)
			for _, k := range order {
				procEnv = append(procEnv, k+"="+local(env[k]))
			}
			var argv []string
			var probeBin func(string) string
			switch {
			case strings.HasPrefix(c.Image, "gatehouse:"):
				procEnv = append(procEnv, cloud...)
				procEnv = append(procEnv, fx.env...)
				argv = append([]string{bin}, c.Command...) // the image's entrypoint is the binary
				if len(c.Command) > 0 {
					argv = append([]string{bin}, c.Command[1:]...)
				}
				for _, a := range c.Args {
					argv = append(argv, local(expand(a)))
				}
				probeBin = func(s string) string {
					if s == "/usr/local/bin/gatehouse" {
						return bin
					}
					return s
				}
			case strings.HasPrefix(c.Image, "redis:"):
				if len(c.Ports) != 1 {
					t.Fatalf("%s: want one Redis port", name)
				}
				rp := ports.port(int(c.Ports[0].ContainerPort))
				// The manifest's args with its port (plaintext or TLS) on loopback.
				argv = []string{testenv.RedisBinary(t)}
				hasPort := false
				for i, a := range c.Args {
					a = expand(a)
					if i > 0 && (c.Args[i-1] == "--port" || c.Args[i-1] == "--tls-port") && a == strconv.Itoa(int(c.Ports[0].ContainerPort)) {
						a, hasPort = strconv.Itoa(rp), true
					}
					for mp, dir := range paths {
						a = strings.ReplaceAll(a, mp, dir)
					}
					argv = append(argv, a)
				}
				if !hasPort {
					argv = append(argv, "--port", strconv.Itoa(rp))
				}
				argv = append(argv, "--bind", "127.0.0.1", "--dir", home)
				probeBin = func(s string) string {
					for mp, dir := range paths {
						s = strings.ReplaceAll(s, mp, dir)
					}
					return s
				}
				if c.ReadinessProbe != nil && c.ReadinessProbe.Exec != nil && c.ReadinessProbe.Exec.Command[0] == "redis-cli" {
					cmd := c.ReadinessProbe.Exec.Command
					c.ReadinessProbe.Exec.Command = append([]string{cmd[0], "-p", strconv.Itoa(rp)}, cmd[1:]...)
				}
			default:
				t.Fatalf("%s: image %s: no local stand-in", name, c.Image)
			}
			r := role{name: name, argv: argv, env: procEnv, dir: home}
			for what, p := range map[string]*corev1.Probe{"readiness": c.ReadinessProbe, "liveness": c.LivenessProbe, "startup": c.StartupProbe} {
				if p == nil {
					continue
				}
				switch {
				case p.Exec != nil:
					cmd := []string{probeBin(p.Exec.Command[0])}
					for _, a := range p.Exec.Command[1:] {
						cmd = append(cmd, probeBin(local(a)))
					}
					r.probe = append(r.probe, probe{what: what, argv: cmd, env: procEnv})
				case p.HTTPGet != nil:
					port := p.HTTPGet.Port.IntValue()
					for _, cp := range c.Ports {
						if cp.Name == p.HTTPGet.Port.String() {
							port = int(cp.ContainerPort)
						}
					}
					r.probe = append(r.probe, probe{what: what, url: "http://" + ports.addr(port) + p.HTTPGet.Path})
				default:
					t.Fatalf("%s: %s probe kind not supported by this test", name, what)
				}
			}
			if c.ReadinessProbe == nil {
				t.Errorf("%s has no readiness probe", name)
			}
			roles = append(roles, r)
		}
	}
	for _, g := range nodeGroups {
		if g != "us-east-1" {
			t.Fatalf("a sidecar's node group is %q, the bootstrap's node.cluster is us-east-1", g)
		}
	}
	if len(nodeGroups) != 3 {
		t.Fatalf("%d sidecars set their node group, want authz, ratelimit and accesslog", len(nodeGroups))
	}

	// The platform calls the broker first; the rest is probed meanwhile (the
	// control plane is Ready once it has published a version, i.e. after
	// the first spec is provisioned).
	probed := superviseAll(t, ctx, roles, func(r role) bool { return strings.HasPrefix(r.name, "gatehouse-broker/") }, 4*time.Minute)
	defer probed()

	if envoyTLSDir == "" {
		t.Fatal("the Envoy container mounts no /etc/gatehouse/tls (its node certificate)")
	}
	redisAddr := ports.addr(6379)
	redisTLS := []string{"--tls", "--cacert", pki.CAFile} // the manifests' Redis speaks TLS only
	driveFlow(t, ctx, deployed{
		broker: "https://" + ports.addr(8080), brokerUser: "platform", brokerPassword: brokerPassword,
		xds:      ports.addr(18000),
		queryAPI: "https://" + ports.addr(9003), queryToken: queryToken,
		nodeGroup: "us-east-1",
		sidecar:   ports.remap,
		pki:       pki,
		fx:        fx,
		envoy: tlsconfig.Client{CAFile: filepath.Join(envoyTLSDir, "ca.crt"),
			CertFile: filepath.Join(envoyTLSDir, "node.crt"), KeyFile: filepath.Join(envoyTLSDir, "node.key")},
		counters: func() int {
			out, err := exec.Command("redis-cli", append(redisTLS, "-h", "127.0.0.1", "-p", strings.TrimPrefix(redisAddr, "127.0.0.1:"), "--no-auth-warning", "-a", redisPassword, "DBSIZE")...).CombinedOutput()
			if err != nil {
				t.Fatalf("redis-cli DBSIZE: %v %s", err, out)
			}
			n, _ := strconv.Atoi(strings.TrimSpace(string(out)))
			return n
		},
	})
	// The manifests' Redis requires its password.
	if out, _ := exec.Command("redis-cli", append(redisTLS, "-h", "127.0.0.1", "-p", strings.TrimPrefix(redisAddr, "127.0.0.1:"), "DBSIZE")...).CombinedOutput(); !strings.Contains(string(out), "NOAUTH") {
		t.Errorf("Redis answered without AUTH: %s", out)
	}
	// ... and has no plaintext port.
	pctx, pcancel := context.WithTimeout(ctx, 5*time.Second)
	defer pcancel()
	out, _ := exec.CommandContext(pctx, "redis-cli", "-h", "127.0.0.1", "-p", strings.TrimPrefix(redisAddr, "127.0.0.1:"), "--no-auth-warning", "-a", redisPassword, "DBSIZE").CombinedOutput()
	if _, err := strconv.Atoi(strings.TrimSpace(string(out))); err == nil {
		t.Errorf("Redis answered a plaintext client: %s", out)
	}
}
