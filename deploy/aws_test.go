package deploy

import (
	"encoding/json"
	"os"
	"os/exec"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"
)

// TestAWSFleetEgress: the instances' subnets route 0.0.0.0/0 through a NAT
// gateway (they have no public IPs), and the NLB is in public subnets.
func TestAWSFleetEgress(t *testing.T) {
	var tpl struct {
		Resources map[string]struct {
			Type       string         `yaml:"Type"`
			Properties map[string]any `yaml:"Properties"`
		} `yaml:"Resources"`
	}
	if err := decodeAll(t, "aws/edge-fleet.yaml")[0].Decode(&tpl); err != nil {
		t.Fatal(err)
	}
	ref := func(v any) string {
		// yaml.v3 decodes "!Ref X" into the scalar "X".
		s, _ := v.(string)
		return s
	}
	natTables := map[string]bool{}
	for _, r := range tpl.Resources {
		if r.Type == "AWS::EC2::Route" && r.Properties["DestinationCidrBlock"] == "0.0.0.0/0" && r.Properties["NatGatewayId"] != nil {
			natTables[ref(r.Properties["RouteTableId"])] = true
		}
	}
	subnetTable := map[string]string{}
	for _, r := range tpl.Resources {
		if r.Type == "AWS::EC2::SubnetRouteTableAssociation" {
			subnetTable[ref(r.Properties["SubnetId"])] = ref(r.Properties["RouteTableId"])
		}
	}
	asg := tpl.Resources["ProxyGroup"]
	subnets, _ := asg.Properties["VPCZoneIdentifier"].([]any)
	if len(subnets) == 0 {
		t.Fatal("ProxyGroup has no subnets")
	}
	for _, s := range subnets {
		if !natTables[subnetTable[ref(s)]] {
			t.Errorf("instance subnet %s: its route table %q has no 0.0.0.0/0 route through a NAT gateway", ref(s), subnetTable[ref(s)])
		}
	}
	for _, r := range tpl.Resources {
		if r.Type != "AWS::EC2::SecurityGroup" {
			continue
		}
		rules, _ := r.Properties["SecurityGroupIngress"].([]any)
		for _, rule := range rules {
			m, _ := rule.(map[string]any)
			if m["FromPort"] == 9901 {
				t.Errorf("a security group opens Envoy's admin port 9901")
			}
		}
	}
}

// TestAWSImageArchitecture: Packer's source AMI, its build instance, the
// fleet's instance type and the Envoy download are one architecture, the
// one `make build` produces here (x86-64, checked with file(1)).
func TestAWSImageArchitecture(t *testing.T) {
	b, err := os.ReadFile("aws/packer.pkr.json")
	if err != nil {
		t.Fatal(err)
	}
	var p struct {
		Packer struct {
			RequiredPlugins map[string]any `json:"required_plugins"`
		} `json:"packer"`
		Source map[string]map[string]struct {
			InstanceType    string `json:"instance_type"`
			AMIName         string `json:"ami_name"`
			SourceAMIFilter struct {
				Filters map[string]string `json:"filters"`
			} `json:"source_ami_filter"`
		} `json:"source"`
	}
	if err := json.Unmarshal(b, &p); err != nil {
		t.Fatal(err)
	}
	if p.Packer.RequiredPlugins["amazon"] == nil {
		t.Error("packer.pkr.json does not declare the amazon plugin")
	}
	src := p.Source["amazon-ebs"]["gatehouse-edge"]
	if !strings.Contains(src.SourceAMIFilter.Filters["name"], "amd64") || isGraviton(src.InstanceType) {
		t.Errorf("Packer builds on %s from %s; want x86-64", src.InstanceType, src.SourceAMIFilter.Filters["name"])
	}
	if strings.Contains(src.AMIName, "{{") {
		t.Errorf("ami_name %q uses legacy template braces", src.AMIName)
	}
	var fleet struct {
		Parameters map[string]struct {
			Default any `yaml:"Default"`
		} `yaml:"Parameters"`
	}
	if err := decodeAll(t, "aws/edge-fleet.yaml")[0].Decode(&fleet); err != nil {
		t.Fatal(err)
	}
	if it, _ := fleet.Parameters["InstanceType"].Default.(string); isGraviton(it) {
		t.Errorf("fleet InstanceType default %s is arm64; the AMI is x86-64", it)
	}
	ci, err := os.ReadFile("aws/cloud-init.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(ci), "linux-x86_64") || strings.Contains(string(ci), "aarch_64") {
		t.Error("cloud-init does not download the x86-64 Envoy")
	}
	if out, err := exec.Command("go", "env", "GOARCH").Output(); err != nil || strings.TrimSpace(string(out)) != "amd64" {
		t.Logf("GOARCH here is %s: `make build` would not produce the AMI's binary", out)
	}
	if _, err := os.Stat("../bin/gatehouse"); err == nil {
		out, err := exec.Command("file", "-L", "../bin/gatehouse").Output()
		if err != nil {
			t.Fatalf("file ../bin/gatehouse: %v", err)
		}
		if !strings.Contains(string(out), "x86-64") {
			t.Errorf("bin/gatehouse (Packer's gatehouse_binary) is not x86-64: %s", out)
		}
	}
}

func isGraviton(instanceType string) bool {
	family, _, _ := strings.Cut(instanceType, ".")
	return strings.HasSuffix(family, "g") || strings.HasSuffix(family, "gd") || strings.HasSuffix(family, "gn")
}

// TestAWSPackagesExist: every package cloud-init installs exists in the
// Debian 12 archive the AMI uses (this machine's apt sources are bookworm).
func TestAWSPackagesExist(t *testing.T) {
	if _, err := exec.LookPath("apt-cache"); err != nil {
		t.Fatal("apt-cache is needed to check cloud-init's packages against Debian 12")
	}
	var ci struct {
		Packages []string `yaml:"packages"`
	}
	b, err := os.ReadFile("aws/cloud-init.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if err := yaml.Unmarshal(b, &ci); err != nil {
		t.Fatal(err)
	}
	if len(ci.Packages) == 0 {
		t.Fatal("cloud-init installs no packages")
	}
	for _, p := range ci.Packages {
		if out, err := exec.Command("apt-cache", "show", "--no-all-versions", p).CombinedOutput(); err != nil || !strings.Contains(string(out), "Package: "+p) {
			t.Errorf("cloud-init package %q is not in Debian 12: %s", p, strings.TrimSpace(string(out)))
		}
	}
}

// TestAWSConfigureNode: the boot script gives every sidecar its node group,
// gives the accesslog sidecar its token file, reads the secrets it claims
// to read, and keeps Envoy's admin on loopback.
func TestAWSConfigureNode(t *testing.T) {
	b, err := os.ReadFile("aws/configure-node")
	if err != nil {
		t.Fatal(err)
	}
	s := string(b)
	for _, want := range []string{
		`GATEHOUSE_${ROLE}_NODE_CLUSTER=$NODE_GROUP`,
		"GATEHOUSE_ACCESSLOG_API_TOKEN_FILE=/etc/gatehouse/accesslog-tokens",
		"aws ssm get-parameter",
		"--admin-addr 127.0.0.1:9901",
		"--health-addr 0.0.0.0:9902",
	} {
		if !strings.Contains(s, want) {
			t.Errorf("configure-node lacks %q", want)
		}
	}
	if out, err := exec.Command("sh", "-n", "aws/configure-node").CombinedOutput(); err != nil {
		t.Errorf("sh -n configure-node: %v %s", err, out)
	}
}
