package archtest

import (
	"go/ast"
	"go/parser"
	"go/token"
	"io/fs"
	"path/filepath"
	"sort"
	"strings"
	"testing"
)

// testHelpers are the small test helpers internal/testenv has one version
// of (lower-cased name → the testenv function to call instead).
var testHelpers = map[string]string{
	"waitfor":      "testenv.WaitFor",
	"httpget":      "testenv.HTTPGet",
	"cputime":      "testenv.CPUTime",
	"countervalue": "testenv.CounterValue",
}

// TestTestHelpersDefinedOnce fails when a package outside internal/testenv
// declares its own copy of one of testHelpers (a top-level function of
// that name, in any file, tests included).
func TestTestHelpersDefinedOnce(t *testing.T) {
	root, _ := moduleRoot(t)
	var found []string
	fset := token.NewFileSet()
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		name := d.Name()
		if d.IsDir() {
			if p != root && (strings.HasPrefix(name, ".") || strings.HasPrefix(name, "_") || name == "testdata" || name == "node_modules") {
				return filepath.SkipDir
			}
			return nil
		}
		if !strings.HasSuffix(name, ".go") {
			return nil
		}
		rel, _ := filepath.Rel(root, filepath.Dir(p))
		if filepath.ToSlash(rel) == "internal/testenv" {
			return nil
		}
		f, err := parser.ParseFile(fset, p, nil, parser.SkipObjectResolution)
		if err != nil {
			return err
		}
		for _, decl := range f.Decls {
			fn, ok := decl.(*ast.FuncDecl)
			if !ok || fn.Recv != nil {
				continue
			}
			if use, ok := testHelpers[strings.ToLower(fn.Name.Name)]; ok {
				pos := fset.Position(fn.Pos())
				relFile, _ := filepath.Rel(root, pos.Filename)
				found = append(found, relFile+": func "+fn.Name.Name+" is a copy; use "+use)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	sort.Strings(found)
	for _, f := range found {
		t.Error(f)
	}
}
