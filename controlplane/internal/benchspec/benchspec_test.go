package benchspec

import (
	"strings"
	"testing"

	"github.com/gatehouse-edge/gatehouse/spec"
)

// TestExactHosts: specs made with ExactHosts parse, keep their name's host
// and have no wildcard host; the default keeps the wildcard one.
func TestExactHosts(t *testing.T) {
	for _, o := range []Options{{}, {ExactHosts: true}} {
		docs, err := spec.Parse(Name(7)+".yaml", o.Spec(7, 13, 1))
		if err != nil {
			t.Fatalf("%+v: %v", o, err)
		}
		hosts := docs[0].EdgeRoute.Spec.Hosts
		wild := 0
		for _, h := range hosts {
			if strings.HasPrefix(h, "*") {
				wild++
			}
		}
		if hosts[0] != "svc-0007.example.com" || (o.ExactHosts && wild != 0) || (!o.ExactHosts && wild != 1) {
			t.Errorf("%+v: hosts = %v", o, hosts)
		}
	}
}
