package deploy

import (
	"bufio"
	"encoding/json"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"
)

// roleRun is one gatehouse role as an artifact starts it: its subcommand
// and its settings by flag name (from --flag[=value] arguments and the
// GATEHOUSE_<ROLE>_<FLAG> environment twins).
type roleRun struct {
	where string // artifact and container/service
	role  string
	flags map[string]string
}

var gatehouseRoles = map[string]bool{"broker": true, "worker": true, "controlplane": true, "authz": true, "ratelimit": true, "accesslog": true}

func newRoleRun(where string, args []string, env map[string]string) (roleRun, bool) {
	r := roleRun{where: where, flags: map[string]string{}}
	for i, a := range args {
		if r.role == "" && gatehouseRoles[a] {
			r.role = a
			continue
		}
		if name, ok := strings.CutPrefix(a, "--"); ok {
			if k, v, ok := strings.Cut(name, "="); ok {
				r.flags[k] = v
			} else if i+1 < len(args) && !strings.HasPrefix(args[i+1], "--") {
				r.flags[name] = args[i+1]
			} else {
				r.flags[name] = "true"
			}
		}
	}
	if r.role == "" {
		return r, false
	}
	prefix := "GATEHOUSE_" + strings.ToUpper(r.role) + "_"
	for k, v := range env {
		if f, ok := strings.CutPrefix(k, prefix); ok {
			f = strings.ToLower(strings.ReplaceAll(f, "_", "-"))
			if _, set := r.flags[f]; !set { // a flag on the command line wins
				r.flags[f] = v
			}
		}
	}
	return r, true
}

// shippedRoles reads every gatehouse role the Kubernetes manifests, the
// Compose file and the systemd units (with their environment files) start.
func shippedRoles(t *testing.T) []roleRun {
	t.Helper()
	var out []roleRun
	// Kubernetes: every container of every workload.
	files, _ := filepath.Glob("kubernetes/*.yaml")
	for _, f := range files {
		for _, doc := range decodeAll(t, f) {
			var obj struct {
				Kind     string
				Metadata struct{ Name string }
				Spec     struct {
					Template struct {
						Spec struct {
							Containers []struct {
								Name    string
								Image   string
								Command []string
								Args    []string
								Env     []struct{ Name, Value string }
							}
						}
					}
				}
			}
			if err := doc.Decode(&obj); err != nil {
				t.Fatalf("%s: %v", f, err)
			}
			for _, c := range obj.Spec.Template.Spec.Containers {
				if !strings.HasPrefix(c.Image, "gatehouse") {
					continue
				}
				env := map[string]string{}
				for _, e := range c.Env {
					env[e.Name] = e.Value
				}
				if r, ok := newRoleRun(f+" "+obj.Metadata.Name+"/"+c.Name, append(c.Command, c.Args...), env); ok {
					out = append(out, r)
				} else {
					t.Errorf("%s %s/%s: no gatehouse role in command and args", f, obj.Metadata.Name, c.Name)
				}
			}
		}
	}
	// Compose: every service from the gatehouse image.
	b, err := os.ReadFile("compose/compose.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var compose struct {
		Services map[string]struct {
			Image       string
			Entrypoint  []string
			Command     []string
			Environment map[string]string
		}
	}
	if err := yaml.Unmarshal(b, &compose); err != nil {
		t.Fatal(err)
	}
	for name, svc := range compose.Services {
		if !strings.Contains(svc.Image, "GATEHOUSE_IMAGE") {
			continue
		}
		args := append(append([]string{}, svc.Entrypoint...), svc.Command...)
		if len(svc.Entrypoint) == 3 && svc.Entrypoint[0] == "/bin/sh" { // a shell line: its words
			args = append(strings.Fields(svc.Entrypoint[2]), svc.Command...)
		}
		if r, ok := newRoleRun("compose/compose.yaml "+name, args, svc.Environment); ok {
			out = append(out, r)
		} else {
			t.Errorf("compose service %s: no gatehouse role in entrypoint and command", name)
		}
	}
	// systemd: ExecStart with the unit's environment file.
	units, _ := filepath.Glob("systemd/gatehouse-*.service")
	for _, u := range units {
		role := strings.TrimSuffix(strings.TrimPrefix(filepath.Base(u), "gatehouse-"), ".service")
		var args []string
		for _, line := range readLines(t, u) {
			if v, ok := strings.CutPrefix(line, "ExecStart="); ok {
				args = strings.Fields(v)
			}
		}
		env := map[string]string{}
		for _, line := range readLines(t, filepath.Join("systemd/env", role+".env")) {
			if k, v, ok := strings.Cut(line, "="); ok && !strings.HasPrefix(line, "#") {
				env[k] = v
			}
		}
		if r, ok := newRoleRun(u, args, env); ok {
			out = append(out, r)
		} else {
			t.Errorf("%s: no gatehouse role in ExecStart", u)
		}
	}
	return out
}

func readLines(t *testing.T, file string) []string {
	t.Helper()
	f, err := os.Open(file)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var lines []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		lines = append(lines, strings.TrimSpace(sc.Text()))
	}
	return lines
}

// listenFlags are the server ports of each role (the defaults are
// loopback addresses).
var listenFlags = map[string][]string{
	"broker":       {"http-addr"},
	"controlplane": {"xds-addr"},
	"authz":        {"grpc-addr"},
	"ratelimit":    {"grpc-addr"},
	"accesslog":    {"grpc-addr", "http-addr"},
}

func isLoopback(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		host = addr
	}
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// TestShippedArtifactsRunTLS: every role a shipped artifact starts runs the
// secure path. No role passes --insecure; a server role listening on a
// non-loopback address has --tls-cert-file; the control plane's xDS and the
// sidecars' gRPC ports always serve mutual TLS (--tls-cert-file and
// --tls-client-ca-file); a sidecar subscribing to a control plane verifies
// it and presents a node certificate (--xds-ca-file, --xds-cert-file,
// --xds-key-file); Redis is reached with a password file, never a password
// in the URL.
func TestShippedArtifactsRunTLS(t *testing.T) {
	runs := shippedRoles(t)
	if len(runs) < 15 {
		t.Fatalf("found %d gatehouse roles in the artifacts", len(runs))
	}
	for _, r := range runs {
		if v, ok := r.flags["insecure"]; ok && v != "false" {
			t.Errorf("%s: %s runs with --insecure", r.where, r.role)
		}
		for _, lf := range listenFlags[r.role] {
			if addr, ok := r.flags[lf]; ok && !isLoopback(addr) && r.flags["tls-cert-file"] == "" {
				t.Errorf("%s: %s listens on %s (--%s) without --tls-cert-file", r.where, r.role, addr, lf)
			}
		}
		switch r.role {
		case "controlplane", "authz", "ratelimit", "accesslog":
			if r.flags["tls-cert-file"] == "" || r.flags["tls-key-file"] == "" || r.flags["tls-client-ca-file"] == "" {
				t.Errorf("%s: %s serves gRPC without mutual TLS (--tls-cert-file, --tls-key-file, --tls-client-ca-file)", r.where, r.role)
			}
		}
		switch r.role {
		case "authz", "ratelimit", "accesslog":
			if r.flags["spec-dir"] == "" && (r.flags["xds-ca-file"] == "" || r.flags["xds-cert-file"] == "" || r.flags["xds-key-file"] == "") {
				t.Errorf("%s: %s subscribes to %q without --xds-ca-file, --xds-cert-file and --xds-key-file", r.where, r.role, r.flags["xds-server"])
			}
		}
		if r.role == "ratelimit" && r.flags["backend"] == "redis" {
			if u := r.flags["redis-url"]; strings.Contains(u, "@") || r.flags["redis-password-file"] == "" {
				t.Errorf("%s: Redis %q without --redis-password-file (or with a password in the URL)", r.where, u)
			}
		}
	}
}

var insecureRE = regexp.MustCompile(`(?i)--insecure\b|GATEHOUSE_[A-Z]+_INSECURE\b`)

// TestNoArtifactPassesInsecure: no shipped file (manifests, units,
// environment files, Compose, AWS scripts and templates, Makefile-made
// bootstraps) turns --insecure on, whatever form it takes.
func TestNoArtifactPassesInsecure(t *testing.T) {
	err := filepath.WalkDir(".", func(p string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() || strings.HasSuffix(p, "_test.go") {
			return err
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		for i, line := range strings.Split(string(b), "\n") {
			if insecureRE.MatchString(line) {
				t.Errorf("%s:%d: %s", p, i+1, strings.TrimSpace(line))
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

// TestAWSNodeRunsTLS: configure-node gives every sidecar mutual TLS and
// its node certificate from SSM, and Envoy's bootstrap uses the same
// node certificate.
func TestAWSNodeRunsTLS(t *testing.T) {
	b, err := os.ReadFile("aws/configure-node")
	if err != nil {
		t.Fatal(err)
	}
	s := string(b)
	for _, want := range []string{
		`ssm_get "tls/$p"`, "ca.crt node.crt node.key sidecar.crt sidecar.key",
		"GATEHOUSE_${ROLE}_TLS_CERT_FILE=", "GATEHOUSE_${ROLE}_TLS_KEY_FILE=", "GATEHOUSE_${ROLE}_TLS_CLIENT_CA_FILE=",
		"GATEHOUSE_${ROLE}_XDS_CA_FILE=", "GATEHOUSE_${ROLE}_XDS_CERT_FILE=", "GATEHOUSE_${ROLE}_XDS_KEY_FILE=",
		"--xds-ca-file /etc/gatehouse/tls/ca.crt", "--xds-cert-file /etc/gatehouse/tls/node.crt", "--xds-key-file /etc/gatehouse/tls/node.key",
		"GATEHOUSE_RATELIMIT_REDIS_PASSWORD_FILE=",
	} {
		if !strings.Contains(s, want) {
			t.Errorf("configure-node lacks %q", want)
		}
	}
	if strings.Contains(s, "redis://:$") {
		t.Error("configure-node puts the Redis password into the URL")
	}
}

// TestEnvoyBootstrapsRunTLS: every checked-in bootstrap speaks mutual TLS
// to xDS and to the three sidecars (a node certificate and the CA).
func TestEnvoyBootstrapsRunTLS(t *testing.T) {
	files, _ := filepath.Glob("envoy/*.json")
	if len(files) < 3 {
		t.Fatalf("found %d bootstraps", len(files))
	}
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		var bs struct {
			StaticResources struct {
				Clusters []struct {
					Name            string
					TransportSocket *struct {
						TypedConfig struct {
							CommonTLSContext struct {
								TLSCertificates []struct {
									CertificateChain struct{ Filename string }
									PrivateKey       struct{ Filename string }
								} `json:"tlsCertificates"`
								ValidationContext struct {
									TrustedCA struct{ Filename string } `json:"trustedCa"`
								}
							} `json:"commonTlsContext"`
						}
					}
				}
			}
		}
		if err := json.Unmarshal(b, &bs); err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		seen := map[string]bool{}
		for _, c := range bs.StaticResources.Clusters {
			seen[c.Name] = true
			ts := c.TransportSocket
			if ts == nil || len(ts.TypedConfig.CommonTLSContext.TLSCertificates) != 1 ||
				ts.TypedConfig.CommonTLSContext.TLSCertificates[0].CertificateChain.Filename == "" ||
				ts.TypedConfig.CommonTLSContext.TLSCertificates[0].PrivateKey.Filename == "" ||
				ts.TypedConfig.CommonTLSContext.ValidationContext.TrustedCA.Filename == "" {
				t.Errorf("%s: cluster %s has no mutual TLS (node certificate, key and CA)", f, c.Name)
			}
		}
		for _, want := range []string{"gatehouse_xds", "gatehouse_authz", "gatehouse_ratelimit", "gatehouse_accesslog"} {
			if !seen[want] {
				t.Errorf("%s: no cluster %s", f, want)
			}
		}
	}
}
