// Package deploy holds deployment artifacts; its test parses every one of
// them and checks the references inside that a typo would break.
package deploy

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"testing"

	bootstrapv3 "github.com/envoyproxy/go-control-plane/envoy/config/bootstrap/v3"
	_ "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/health_check/v3" // the health listener's filter
	_ "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/router/v3"       // and its router
	_ "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	_ "github.com/envoyproxy/go-control-plane/envoy/extensions/upstreams/http/v3" // resolves the Any in the sidecar clusters
	"google.golang.org/protobuf/encoding/protojson"
	"gopkg.in/yaml.v3"
)

func artifacts(t *testing.T) []string {
	t.Helper()
	var files []string
	err := filepath.WalkDir(".", func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		switch filepath.Ext(p) {
		case ".yaml", ".yml", ".json":
			files = append(files, p)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return files
}

func decodeAll(t *testing.T, file string) []*yaml.Node {
	t.Helper()
	b, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	if filepath.Ext(file) == ".json" && !json.Valid(b) {
		t.Fatalf("%s: invalid JSON", file)
	}
	dec := yaml.NewDecoder(bytes.NewReader(b))
	var docs []*yaml.Node
	for {
		var n yaml.Node
		err := dec.Decode(&n)
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatalf("%s: %v", file, err)
		}
		docs = append(docs, &n)
	}
	if len(docs) == 0 {
		t.Fatalf("%s: empty", file)
	}
	return docs
}

func TestEveryArtifactParses(t *testing.T) {
	files := artifacts(t)
	if len(files) < 10 {
		t.Fatalf("found only %d artifacts: %v", len(files), files)
	}
	for _, f := range files {
		decodeAll(t, f)
	}
}

func TestKubernetesManifests(t *testing.T) {
	files, _ := filepath.Glob("kubernetes/*.yaml")
	kinds := map[string]bool{}
	for _, f := range files {
		for _, n := range decodeAll(t, f) {
			var obj struct {
				APIVersion string `yaml:"apiVersion"`
				Kind       string `yaml:"kind"`
				Metadata   struct {
					Name string `yaml:"name"`
				} `yaml:"metadata"`
				Spec struct {
					Selector struct {
						MatchLabels map[string]string `yaml:"matchLabels"`
					} `yaml:"selector"`
					Template struct {
						Metadata struct {
							Labels map[string]string `yaml:"labels"`
						} `yaml:"metadata"`
					} `yaml:"template"`
				} `yaml:"spec"`
			}
			if err := n.Decode(&obj); err != nil {
				t.Fatalf("%s: %v", f, err)
			}
			if obj.APIVersion == "" || obj.Kind == "" || obj.Metadata.Name == "" {
				t.Errorf("%s: object without apiVersion/kind/metadata.name", f)
			}
			kinds[obj.Kind+"/"+obj.Metadata.Name] = true
			for k, v := range obj.Spec.Selector.MatchLabels {
				if obj.Spec.Template.Metadata.Labels[k] != v {
					t.Errorf("%s: %s selector %s=%s does not match the pod template labels", f, obj.Metadata.Name, k, v)
				}
			}
		}
	}
	for _, want := range []string{"Deployment/gatehouse-controlplane", "Deployment/gatehouse-broker", "Deployment/edge-proxy", "Deployment/redis", "Service/redis"} {
		if !kinds[want] {
			t.Errorf("kubernetes manifests lack %s", want)
		}
	}
}

// cfnRefs collects every name a CloudFormation template refers to, in
// both the short (!Ref, !GetAtt, !Sub) and the long (Ref, Fn::GetAtt,
// Fn::Sub) forms.
func cfnRefs(n *yaml.Node, out map[string][]int) {
	add := func(name string, line int) {
		name, _, _ = strings.Cut(name, ".")
		out[name] = append(out[name], line)
	}
	subRE := regexp.MustCompile(`\$\{([^!}][^}]*)\}`)
	sub := func(s string, line int) {
		for _, m := range subRE.FindAllStringSubmatch(s, -1) {
			add(m[1], line)
		}
	}
	switch n.Tag {
	case "!Ref", "!GetAtt":
		if n.Kind == yaml.ScalarNode {
			add(n.Value, n.Line)
		} else if n.Kind == yaml.SequenceNode && len(n.Content) > 0 {
			add(n.Content[0].Value, n.Line)
		}
	case "!Sub":
		if n.Kind == yaml.ScalarNode {
			sub(n.Value, n.Line)
		} else if len(n.Content) > 0 {
			sub(n.Content[0].Value, n.Line)
		}
	}
	if n.Kind == yaml.MappingNode {
		for i := 0; i+1 < len(n.Content); i += 2 {
			k, v := n.Content[i].Value, n.Content[i+1]
			switch k {
			case "Ref":
				add(v.Value, v.Line)
			case "Fn::GetAtt":
				if v.Kind == yaml.SequenceNode && len(v.Content) > 0 {
					add(v.Content[0].Value, v.Line)
				} else {
					add(v.Value, v.Line)
				}
			case "Fn::Sub":
				if v.Kind == yaml.ScalarNode {
					sub(v.Value, v.Line)
				}
			case "DependsOn":
				if v.Kind == yaml.ScalarNode {
					add(v.Value, v.Line)
				}
				for _, c := range v.Content {
					add(c.Value, c.Line)
				}
			}
		}
	}
	for _, c := range n.Content {
		cfnRefs(c, out)
	}
}

func TestCloudFormationReferencesResolve(t *testing.T) {
	doc := decodeAll(t, "aws/edge-fleet.yaml")[0]
	var tpl struct {
		Parameters map[string]any `yaml:"Parameters"`
		Resources  map[string]struct {
			Type string `yaml:"Type"`
		} `yaml:"Resources"`
	}
	if err := doc.Decode(&tpl); err != nil {
		t.Fatal(err)
	}
	defined := map[string]bool{}
	for p := range tpl.Parameters {
		defined[p] = true
	}
	types := map[string]bool{}
	for r, v := range tpl.Resources {
		defined[r] = true
		types[v.Type] = true
	}
	refs := map[string][]int{}
	cfnRefs(doc, refs)
	if len(refs) < 10 {
		t.Fatalf("found only %d references; the walker is broken", len(refs))
	}
	var missing []string
	for name, lines := range refs {
		if strings.HasPrefix(name, "AWS::") || defined[name] {
			continue
		}
		missing = append(missing, name)
		t.Errorf("aws/edge-fleet.yaml: %q referenced on lines %v is neither a parameter nor a resource", name, lines)
	}
	sort.Strings(missing)
	for p := range tpl.Parameters {
		if _, used := refs[p]; !used {
			t.Errorf("parameter %s is never used", p)
		}
	}
	for _, want := range []string{
		"AWS::EC2::VPC", "AWS::EC2::Subnet", "AWS::EC2::SecurityGroup", "AWS::IAM::Role",
		"AWS::EC2::LaunchTemplate", "AWS::AutoScaling::AutoScalingGroup",
		"AWS::ElasticLoadBalancingV2::LoadBalancer", "AWS::Route53::RecordSet",
	} {
		if !types[want] {
			t.Errorf("template has no %s", want)
		}
	}
}

func TestSystemdUnits(t *testing.T) {
	roles := []string{"controlplane", "broker", "worker", "authz", "ratelimit", "accesslog"}
	for _, r := range roles {
		b, err := os.ReadFile("systemd/gatehouse-" + r + ".service")
		if err != nil {
			t.Fatalf("missing unit for %s: %v", r, err)
		}
		s := string(b)
		for _, want := range []string{"[Unit]", "[Service]", "[Install]", "ExecStart=/usr/local/bin/gatehouse " + r + "\n", "EnvironmentFile=-/etc/gatehouse/" + r + ".env", "NoNewPrivileges=yes"} {
			if !strings.Contains(s, want) {
				t.Errorf("gatehouse-%s.service lacks %q", r, want)
			}
		}
	}
}

func TestComposeReferences(t *testing.T) {
	var c struct {
		Services map[string]struct {
			DependsOn []string `yaml:"depends_on"`
			Secrets   []string `yaml:"secrets"`
		} `yaml:"services"`
		Secrets map[string]any `yaml:"secrets"`
	}
	if err := decodeAll(t, "compose/compose.yaml")[0].Decode(&c); err != nil {
		t.Fatal(err)
	}
	for name, s := range c.Services {
		for _, d := range s.DependsOn {
			if _, ok := c.Services[d]; !ok {
				t.Errorf("service %s depends on unknown service %s", name, d)
			}
		}
		for _, sec := range s.Secrets {
			if _, ok := c.Secrets[sec]; !ok {
				t.Errorf("service %s uses undeclared secret %s", name, sec)
			}
		}
	}
}

func TestEnvoyBootstrapsAreValid(t *testing.T) {
	files, _ := filepath.Glob("envoy/*.json")
	if len(files) < 3 {
		t.Fatalf("found %d Envoy bootstraps, want dev, compose and us-east-1", len(files))
	}
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		bs := &bootstrapv3.Bootstrap{}
		if err := (protojson.UnmarshalOptions{}).Unmarshal(b, bs); err != nil {
			t.Fatalf("%s: not an Envoy v3 bootstrap: %v", f, err)
		}
		if err := bs.ValidateAll(); err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		if bs.GetDynamicResources().GetAdsConfig() == nil || bs.GetNode().GetCluster() == "" {
			t.Fatalf("%s: no ADS config or node group", f)
		}
		// Envoy's admin can stop and reconfigure it: loopback only. Load
		// balancers and kubelets probe the health listener instead.
		if a := bs.GetAdmin().GetAddress().GetSocketAddress().GetAddress(); a != "127.0.0.1" {
			t.Errorf("%s: Envoy admin on %q, want 127.0.0.1", f, a)
		}
		if f != filepath.Join("envoy", "dev.json") {
			var health bool
			for _, l := range bs.GetStaticResources().GetListeners() {
				health = health || l.GetName() == "gatehouse_health"
			}
			if !health {
				t.Errorf("%s: no gatehouse_health listener for load-balancer and kubelet probes", f)
			}
		}
		names := map[string]bool{}
		for _, c := range bs.GetStaticResources().GetClusters() {
			names[c.GetName()] = true
		}
		for _, want := range []string{"gatehouse_xds", "gatehouse_authz", "gatehouse_ratelimit", "gatehouse_accesslog"} {
			if !names[want] {
				t.Errorf("%s: no static cluster %s", f, want)
			}
		}
	}
}
