package spec

import (
	"errors"
	"os"
	"path/filepath"
	"testing"
)

// FuzzParse feeds arbitrary bytes to the loader: it must never panic, must
// return either documents or an ErrorList, and every document it accepts
// must validate without panicking and round-trip through canonical JSON.
func FuzzParse(f *testing.F) {
	for _, pattern := range []string{"testdata/valid/*", "testdata/invalid/*"} {
		files, _ := filepath.Glob(pattern)
		for _, file := range files {
			b, err := os.ReadFile(file)
			if err != nil {
				f.Fatal(err)
			}
			f.Add(b)
		}
	}
	f.Add([]byte("{}"))
	f.Add([]byte("---\n---\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		docs, err := Parse("fuzz.yaml", data)
		if err != nil {
			var list ErrorList
			if !errors.As(err, &list) || len(list) == 0 {
				t.Fatalf("Parse error is not a non-empty ErrorList: %v", err)
			}
		}
		verr := Validate(docs)
		if verr != nil || err != nil {
			return
		}
		for _, d := range docs {
			j, err := d.EdgeRoute.CanonicalJSON()
			if err != nil {
				t.Fatalf("valid spec has no canonical JSON: %v", err)
			}
			again, err := Parse("canonical.json", j)
			if err != nil {
				t.Fatalf("canonical JSON of a valid spec does not parse: %v\n%s", err, j)
			}
			if err := ValidateOne(again[0]); err != nil {
				t.Fatalf("canonical JSON of a valid spec does not validate: %v\n%s", err, j)
			}
		}
	})
}
