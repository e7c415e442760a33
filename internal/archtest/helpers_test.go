package archtest

import (
	"go/ast"
	"go/parser"
	"go/token"
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
	goFiles(t, root, true, parser.SkipObjectResolution, func(p, dir string, f *ast.File, fset *token.FileSet) error {
		if dir == "internal/testenv" {
			return nil
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
	sort.Strings(found)
	for _, f := range found {
		t.Error(f)
	}
}
