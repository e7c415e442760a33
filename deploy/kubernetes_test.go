package deploy

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	"k8s.io/apimachinery/pkg/labels"
	"sigs.k8s.io/yaml"
)

// k8sObjects decodes every document of kubernetes/*.yaml into its
// Kubernetes API type, strictly: a field the type does not have, or a value
// of the wrong type, fails (what `kubectl apply --validate=strict` rejects).
func k8sObjects(t *testing.T) map[string]any {
	t.Helper()
	files, _ := filepath.Glob("kubernetes/*.yaml")
	objs := map[string]any{}
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
			var meta struct{ APIVersion, Kind string }
			if err := json.Unmarshal(js, &meta); err != nil {
				t.Fatalf("%s document %d: %v", f, i, err)
			}
			var obj interface{ GetName() string }
			switch meta.APIVersion + " " + meta.Kind {
			case "apps/v1 Deployment":
				obj = &appsv1.Deployment{}
			case "v1 Service":
				obj = &corev1.Service{}
			case "v1 ServiceAccount":
				obj = &corev1.ServiceAccount{}
			case "v1 Namespace":
				obj = &corev1.Namespace{}
			case "networking.k8s.io/v1 NetworkPolicy":
				obj = &networkingv1.NetworkPolicy{}
			default:
				t.Fatalf("%s document %d: kind %q %q is not known to this test", f, i, meta.APIVersion, meta.Kind)
			}
			dec := json.NewDecoder(bytes.NewReader(js))
			dec.DisallowUnknownFields()
			if err := dec.Decode(obj); err != nil {
				t.Errorf("%s document %d (%s): %v", f, i, meta.Kind, err)
				continue
			}
			objs[meta.Kind+"/"+obj.GetName()] = obj
		}
	}
	return objs
}

// TestKubernetesManifestsSchema: every manifest decodes strictly into the
// Kubernetes API types, with the required fields the API server checks.
func TestKubernetesManifestsSchema(t *testing.T) {
	objs := k8sObjects(t)
	if len(objs) < 10 {
		t.Fatalf("decoded %d objects", len(objs))
	}
	for key, o := range objs {
		d, ok := o.(*appsv1.Deployment)
		if !ok {
			continue
		}
		if d.Spec.Selector == nil || len(d.Spec.Template.Spec.Containers) == 0 {
			t.Errorf("%s: no selector or no containers", key)
		}
		for _, c := range d.Spec.Template.Spec.Containers {
			if c.Name == "" || c.Image == "" {
				t.Errorf("%s: a container without name or image", key)
			}
			for _, p := range []*corev1.Probe{c.ReadinessProbe, c.LivenessProbe} {
				if p != nil && p.Exec == nil && p.HTTPGet == nil && p.TCPSocket == nil && p.GRPC == nil {
					t.Errorf("%s/%s: a probe without a handler", key, c.Name)
				}
			}
		}
	}
}

// TestKubernetesExposure: admin and debug endpoints stay on loopback, Redis
// needs a password, and NetworkPolicies cover the control plane, Redis and
// the broker (security review M1).
func TestKubernetesExposure(t *testing.T) {
	objs := k8sObjects(t)
	for key, o := range objs {
		d, ok := o.(*appsv1.Deployment)
		if !ok {
			continue
		}
		for _, c := range d.Spec.Template.Spec.Containers {
			for _, e := range c.Env {
				if strings.HasSuffix(e.Name, "_ADMIN_ADDR") && !strings.HasPrefix(e.Value, "127.0.0.1:") {
					t.Errorf("%s/%s: %s=%q; admin endpoints listen on loopback", key, c.Name, e.Name, e.Value)
				}
				if strings.HasSuffix(e.Name, "_PPROF") {
					t.Errorf("%s/%s: sets %s", key, c.Name, e.Name)
				}
			}
			for _, a := range c.Args {
				if a == "--pprof" {
					t.Errorf("%s/%s: --pprof", key, c.Name)
				}
			}
			if strings.HasPrefix(c.Image, "redis:") && !strings.Contains(strings.Join(c.Args, " "), "--requirepass") {
				t.Errorf("%s/%s: Redis without --requirepass", key, c.Name)
			}
		}
	}
	for _, app := range []string{"gatehouse-controlplane", "redis", "gatehouse-broker"} {
		dep, ok := objs["Deployment/"+app].(*appsv1.Deployment)
		if !ok {
			t.Errorf("no Deployment %s", app)
			continue
		}
		podLabels := labels.Set(dep.Spec.Template.Labels)
		covered := false
		for _, o := range objs {
			np, ok := o.(*networkingv1.NetworkPolicy)
			if !ok || len(np.Spec.Ingress) == 0 {
				continue
			}
			sel := labels.SelectorFromSet(np.Spec.PodSelector.MatchLabels)
			covered = covered || (len(np.Spec.PodSelector.MatchLabels) > 0 && sel.Matches(podLabels))
		}
		if !covered {
			t.Errorf("no NetworkPolicy with ingress rules selects the %s pods", app)
		}
	}
}
