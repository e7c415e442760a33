package deploy

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/gatehouse-edge/gatehouse/internal/testenv"
)

// TestAWSConfigureNodeRuns runs deploy/aws/configure-node as the instance
// runs it at first boot, in a private mount and UTS namespace (root; /etc
// and /usr/local/bin are scratch copies, so the machine is untouched):
// `aws ssm get-parameter` is a stand-in that answers from a directory laid
// out as the fleet's SSM prefix, systemctl records what it is asked, and
// /usr/local/bin/gatehouse is the real binary. The script must read every
// secret it claims to, write them with owner-only or group modes, give
// each sidecar its node group, identity and TLS files, write an Envoy
// bootstrap with mutual TLS toward xDS and admin on loopback, and restart
// the edge services; a missing secret stops it with the parameter's name
// and never a secret's value.
func TestAWSConfigureNodeRuns(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Fatal("needs root (a private mount namespace); make test runs as root")
	}
	for _, tool := range []string{"unshare", "mount", "hostname"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Fatalf("%s: %v (util-linux)", tool, err)
		}
	}
	dir := t.TempDir()
	bin := filepath.Join(dir, "gatehouse")
	if out, err := exec.Command("go", "build", "-o", bin, "../cmd/gatehouse").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	pki := testenv.NewPKI(t)
	nodeCrt, nodeKey := pki.Node(t, "node", "edge-eu")
	sideCrt, sideKey := pki.Server(t, "sidecar")
	const prefix = "/gatehouse/prod"
	const token = "tok-3f9c2a7e5b1d4c8a9e0f"
	const redisPassword = "redis-pw-7d1e9b3c"
	ssm := map[string]string{
		"accesslog-tokens": token + "\n",
		"redis-password":   redisPassword,
		"tls/ca.crt":       read(t, pki.CAFile),
		"tls/node.crt":     read(t, nodeCrt),
		"tls/node.key":     read(t, nodeKey),
		"tls/sidecar.crt":  read(t, sideCrt),
		"tls/sidecar.key":  read(t, sideKey),
	}
	for name, v := range ssm {
		write(t, filepath.Join(dir, "ssm", prefix, name), v, 0o600)
	}
	// The stand-ins: aws answers get-parameter from dir/ssm as the real
	// CLI prints --query Parameter.Value --output text; systemctl records.
	write(t, filepath.Join(dir, "stubs", "aws"), `#!/bin/sh
echo "$*" >> "`+dir+`/aws.log"
[ "$1 $2" = "ssm get-parameter" ] || { echo "unexpected: $*" >&2; exit 2; }
shift 2
name=; decrypt=
while [ $# -gt 0 ]; do
  case $1 in --name) name=$2; shift;; --with-decryption) decrypt=1;; esac; shift
done
[ -n "$decrypt" ] || { echo "SecureString read without --with-decryption" >&2; exit 2; }
f="`+dir+`/ssm$name"
[ -f "$f" ] || { echo "An error occurred (ParameterNotFound)" >&2; exit 254; }
cat "$f"; echo
`, 0o755)
	write(t, filepath.Join(dir, "stubs", "systemctl"), "#!/bin/sh\necho \"$*\" >> \""+dir+"/systemctl.log\"\n", 0o755)
	write(t, filepath.Join(dir, "fleet.env"), "NODE_GROUP=edge-eu\nGATEHOUSE_SECRETS_PREFIX="+prefix+"\nAWS_REGION=eu-west-1\n"+
		"GATEHOUSE_AUTHZ_XDS_SERVER=xds.internal.example:18000\nGATEHOUSE_RATELIMIT_XDS_SERVER=xds.internal.example:18000\n"+
		"GATEHOUSE_ACCESSLOG_XDS_SERVER=xds.internal.example:18000\n", 0o644)
	script, err := filepath.Abs("aws/configure-node")
	if err != nil {
		t.Fatal(err)
	}
	// In the namespace: scratch /etc (with the gatehouse group the AMI
	// creates) and /usr/local/bin, and the instance's host name.
	write(t, filepath.Join(dir, "boot.sh"), `set -eu
D=$1
cp -a /etc "$D/etc"
grep -q '^gatehouse:' "$D/etc/group" || echo 'gatehouse:x:64999:' >> "$D/etc/group"
mkdir -p "$D/localbin" && cp "$D/gatehouse" "$D/localbin/gatehouse"
mount --make-rprivate /
mount --bind "$D/etc" /etc
mount --bind "$D/localbin" /usr/local/bin
hostname i-0123456789abcdef0
PATH="$D/stubs:$PATH" exec sh "$2" "$D/fleet.env"
`, 0o755)
	boot := func() ([]byte, error) {
		os.RemoveAll(filepath.Join(dir, "etc"))
		return exec.Command("unshare", "--mount", "--uts", "sh", filepath.Join(dir, "boot.sh"), dir, script).CombinedOutput()
	}
	out, err := boot()
	if err != nil {
		t.Fatalf("configure-node: %v\n%s", err, out)
	}
	if strings.Contains(string(out), token) || strings.Contains(string(out), redisPassword) {
		t.Errorf("configure-node printed a secret:\n%s", out)
	}

	// Every secret read from the prefix, decrypted.
	awsLog := read(t, filepath.Join(dir, "aws.log"))
	for name := range ssm {
		if !strings.Contains(awsLog, "--name "+prefix+"/"+name+" ") {
			t.Errorf("configure-node never read SSM %s/%s; calls:\n%s", prefix, name, awsLog)
		}
	}
	etc := filepath.Join(dir, "etc", "gatehouse")
	checkFile := func(rel, want string, mode os.FileMode) {
		t.Helper()
		p := filepath.Join(etc, rel)
		fi, err := os.Stat(p)
		if err != nil {
			t.Errorf("%s: %v", rel, err)
			return
		}
		if got := fi.Mode().Perm(); got != mode {
			t.Errorf("%s: mode %o, want %o", rel, got, mode)
		}
		if want != "" && strings.TrimSpace(read(t, p)) != strings.TrimSpace(want) {
			t.Errorf("%s: content differs from the SSM parameter", rel)
		}
	}
	checkFile("accesslog-tokens", ssm["accesslog-tokens"], 0o640)
	checkFile("redis-password", redisPassword, 0o640)
	checkFile("tls/node.key", ssm["tls/node.key"], 0o640)
	checkFile("tls/sidecar.key", ssm["tls/sidecar.key"], 0o640)
	checkFile("tls/ca.crt", ssm["tls/ca.crt"], 0o644)

	// Each sidecar: its node group and id, mutual TLS both ways.
	for _, role := range []string{"authz", "ratelimit", "accesslog"} {
		env := read(t, filepath.Join(etc, role+".env"))
		R := "GATEHOUSE_" + strings.ToUpper(role) + "_"
		for _, want := range []string{
			R + "NODE_CLUSTER=edge-eu", R + "NODE_ID=i-0123456789abcdef0", R + "XDS_SERVER=xds.internal.example:18000",
			R + "TLS_CERT_FILE=/etc/gatehouse/tls/sidecar.crt", R + "TLS_CLIENT_CA_FILE=/etc/gatehouse/tls/ca.crt",
			R + "XDS_CA_FILE=/etc/gatehouse/tls/ca.crt", R + "XDS_CERT_FILE=/etc/gatehouse/tls/node.crt",
		} {
			if !strings.Contains(env, want+"\n") {
				t.Errorf("%s.env lacks %s:\n%s", role, want, env)
			}
		}
	}
	if env := read(t, filepath.Join(etc, "accesslog.env")); !strings.Contains(env, "GATEHOUSE_ACCESSLOG_API_TOKEN_FILE=/etc/gatehouse/accesslog-tokens") {
		t.Errorf("accesslog.env has no token file:\n%s", env)
	}
	if env := read(t, filepath.Join(etc, "ratelimit.env")); !strings.Contains(env, "GATEHOUSE_RATELIMIT_REDIS_PASSWORD_FILE=/etc/gatehouse/redis-password") {
		t.Errorf("ratelimit.env has no Redis password file:\n%s", env)
	}

	// The Envoy bootstrap the real binary wrote: node group, admin on
	// loopback, xDS over TLS with the node certificate.
	bs := read(t, filepath.Join(dir, "etc", "envoy", "bootstrap.json"))
	var doc struct {
		Node struct {
			Cluster string `json:"cluster"`
		} `json:"node"`
		Admin struct {
			Address struct {
				SocketAddress struct {
					Address string `json:"address"`
				} `json:"socketAddress"`
			} `json:"address"`
		} `json:"admin"`
	}
	if err := json.Unmarshal([]byte(bs), &doc); err != nil {
		t.Fatalf("bootstrap.json: %v", err)
	}
	if doc.Node.Cluster != "edge-eu" || doc.Admin.Address.SocketAddress.Address != "127.0.0.1" {
		t.Errorf("bootstrap: node cluster %q, admin %q; want edge-eu on 127.0.0.1", doc.Node.Cluster, doc.Admin.Address.SocketAddress.Address)
	}
	for _, want := range []string{"/etc/gatehouse/tls/node.crt", "/etc/gatehouse/tls/ca.crt", "envoy.transport_sockets.tls"} {
		if !strings.Contains(bs, want) {
			t.Errorf("bootstrap lacks %s", want)
		}
	}
	if sc := read(t, filepath.Join(dir, "systemctl.log")); !strings.Contains(sc, "restart gatehouse-authz gatehouse-ratelimit gatehouse-accesslog envoy") {
		t.Errorf("services not restarted; systemctl calls:\n%s", sc)
	}

	// A required secret missing: the boot stops, naming the parameter.
	os.Remove(filepath.Join(dir, "ssm", prefix, "tls", "node.key"))
	out, err = boot()
	if err == nil || !strings.Contains(string(out), prefix+"/tls/node.key") {
		t.Errorf("missing tls/node.key: err %v, output:\n%s", err, out)
	}
	if strings.Contains(string(out), token) {
		t.Errorf("a failed boot printed a secret:\n%s", out)
	}
}

func read(t *testing.T, p string) string {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func write(t *testing.T, p, s string, mode os.FileMode) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, []byte(s), mode); err != nil {
		t.Fatal(err)
	}
}
