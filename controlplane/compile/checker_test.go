package compile

import (
	"strings"
	"testing"

	"github.com/gatehouse-edge/gatehouse/spec"
)

func TestCheckerAcceptsExamplesAndRefusesBadSpecs(t *testing.T) {
	k, err := NewChecker(Options{})
	if err != nil {
		t.Fatal(err)
	}
	docs, err := spec.Load("../../deploy/examples")
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range docs {
		if err := k.Check(d, ""); err != nil {
			t.Errorf("%s: %v", d.Name(), err)
		}
	}
	// Structurally valid but semantically wrong: the compile step must
	// report it with the field path.
	bad, err := spec.Parse("bad.yaml", []byte(`apiVersion: gatehouse/v1
kind: EdgeRoute
metadata: {name: bad, team: t}
spec:
  hosts: [bad.example.com]
  upstreams: [{name: api, endpoints: ["10.0.0.1:80"]}]
  routes:
    - {name: r, match: {pathPrefix: /}, upstream: nope}
`))
	if err != nil {
		t.Fatal(err)
	}
	err = k.Check(bad[0], "")
	if err == nil || !strings.Contains(err.Error(), "upstream") {
		t.Fatalf("Check(bad) = %v, want an error about the unknown upstream", err)
	}
}
