package archtest

import (
	"go/ast"
	"go/parser"
	"go/token"
	"path/filepath"
	"strings"
	"testing"
)

// testHelpers are the small test helpers internal/testenv has one version
// of (lower-cased name → the testenv function or type to use instead).
var testHelpers = map[string]string{
	"waitfor":        "testenv.WaitFor",
	"httpget":        "testenv.HTTPGet",
	"cputime":        "testenv.CPUTime",
	"processcpu":     "testenv.CPUTime",
	"countervalue":   "testenv.CounterValue",
	"syncbuffer":     "testenv.SyncBuffer",
	"closedaddr":     "testenv.ClosedAddr",
	"closedport":     "testenv.ClosedAddr",
	"awscredentials": "testenv.AWSCredentials",
	"staticcreds":    "testenv.AWSCredentials",
}

// TestTestHelpersDefinedOnce fails when a package outside internal/testenv
// declares its own copy of one of testHelpers (a top-level function or
// type of that name, in any file, tests included).
func TestTestHelpersDefinedOnce(t *testing.T) {
	root, _ := moduleRoot(t)
	var found []string
	goFiles(t, root, true, parser.SkipObjectResolution, func(p, dir string, f *ast.File, fset *token.FileSet) error {
		if dir == "internal/testenv" {
			return nil
		}
		report := func(kind string, name *ast.Ident) {
			if use, ok := testHelpers[strings.ToLower(name.Name)]; ok {
				relFile, _ := filepath.Rel(root, fset.Position(name.Pos()).Filename)
				found = append(found, relFile+": "+kind+" "+name.Name+" is a copy; use "+use)
			}
		}
		for _, decl := range f.Decls {
			switch d := decl.(type) {
			case *ast.FuncDecl:
				if d.Recv == nil {
					report("func", d.Name)
				}
			case *ast.GenDecl:
				for _, spec := range d.Specs {
					if ts, ok := spec.(*ast.TypeSpec); ok {
						report("type", ts.Name)
					}
				}
			}
		}
		return nil
	})
	reportAll(t, found)
}
