package archtest

import (
	"go/ast"
	"go/parser"
	"go/token"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// TestNoContractAliases fails when a package outside contract/ declares a
// top-level constant or variable that is only another name for one of
// contract's (const X = contract.Y): two names for one cross-process value
// read as two values. Refer to contract.Y instead.
func TestNoContractAliases(t *testing.T) {
	root, module := moduleRoot(t)
	var found []string
	goFiles(t, root, false, parser.SkipObjectResolution, func(p, dir string, f *ast.File, fset *token.FileSet) error {
		if dir == "contract" {
			return nil
		}
		local := ""
		for _, imp := range f.Imports {
			if path, _ := strconv.Unquote(imp.Path.Value); path == module+"/contract" {
				local = "contract"
				if imp.Name != nil {
					local = imp.Name.Name
				}
			}
		}
		if local == "" {
			return nil
		}
		for _, decl := range f.Decls {
			gd, ok := decl.(*ast.GenDecl)
			if !ok || (gd.Tok != token.CONST && gd.Tok != token.VAR) {
				continue
			}
			for _, spec := range gd.Specs {
				vs := spec.(*ast.ValueSpec)
				for i, v := range vs.Values {
					sel, ok := v.(*ast.SelectorExpr)
					if !ok {
						continue
					}
					if x, ok := sel.X.(*ast.Ident); ok && x.Name == local && i < len(vs.Names) {
						relFile, _ := filepath.Rel(root, fset.Position(vs.Pos()).Filename)
						found = append(found, relFile+": "+vs.Names[i].Name+" is another name for contract."+sel.Sel.Name+"; refer to contract."+sel.Sel.Name)
					}
				}
			}
		}
		return nil
	})
	reportAll(t, found)
}

// TestNoImportAliases fails when a file, test files included, imports a
// Gatehouse package under another name: package names are chosen so that
// none collides with another (the sidecars are authzsidecar,
// ratelimitsidecar and accesslogsidecar, not a second authz), so every
// package reads by one name everywhere. A blank import (_) is allowed.
func TestNoImportAliases(t *testing.T) {
	root, module := moduleRoot(t)
	var found []string
	goFiles(t, root, true, parser.ImportsOnly, func(p, dir string, f *ast.File, fset *token.FileSet) error {
		found = append(found, importAliases(root, module, f, fset)...)
		return nil
	})
	reportAll(t, found)
}

// importAliases lists the imports of a module package in f that carry a
// name other than the blank one.
func importAliases(root, module string, f *ast.File, fset *token.FileSet) []string {
	var out []string
	for _, imp := range f.Imports {
		path, _ := strconv.Unquote(imp.Path.Value)
		if imp.Name == nil || imp.Name.Name == "_" || (path != module && !strings.HasPrefix(path, module+"/")) {
			continue
		}
		pos := fset.Position(imp.Pos())
		rel, _ := filepath.Rel(root, pos.Filename)
		out = append(out, rel+":"+strconv.Itoa(pos.Line)+": imports "+path+" as "+imp.Name.Name+"; import it by its package name")
	}
	return out
}

// TestImportAliasesFound: the checker names a renamed module import and
// lets a plain, a blank and another module's renamed import through.
func TestImportAliasesFound(t *testing.T) {
	const src = `package p

import (
	"example.test/m/plain"
	_ "example.test/m/blank"
	other "example.test/m/sidecars/authz"
	v3 "example.test/elsewhere/v3"
)
`
	fset := token.NewFileSet()
	f, err := parser.ParseFile(fset, "/r/p/p.go", src, parser.ImportsOnly)
	if err != nil {
		t.Fatal(err)
	}
	got := importAliases("/r", "example.test/m", f, fset)
	want := "p/p.go:6: imports example.test/m/sidecars/authz as other; import it by its package name"
	if len(got) != 1 || got[0] != want {
		t.Errorf("importAliases = %q, want [%q]", got, want)
	}
}
