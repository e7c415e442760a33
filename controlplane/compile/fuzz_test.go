package compile

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/gatehouse-edge/gatehouse/controlplane/source"
)

// FuzzCompile: whatever the bytes, Compile does not panic, and a spec it
// publishes always yields resources that build and validate — a spec that
// passes validation never produces config Envoy would reject.
func FuzzCompile(f *testing.F) {
	files, _ := filepath.Glob("testdata/golden/*.yaml")
	for _, p := range files {
		b, err := os.ReadFile(p)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Add(specBytes("a", "a.example.com"))
	c, err := New(Options{})
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		res := c.Compile(source.Revision{ID: "fuzz", Specs: []source.Spec{{Origin: "fuzz.yaml", Data: data}}})
		for _, s := range res.Published() {
			groups := append([]string{"any"}, s.NodeGroups...)
			for _, g := range groups {
				if _, _, err := res.Resources(g); err != nil {
					t.Fatalf("published spec %s does not build for %s: %v", s.Name, g, err)
				}
			}
		}
	})
}
