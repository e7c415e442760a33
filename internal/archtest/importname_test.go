package archtest

import (
	"go/ast"
	"go/parser"
	"go/token"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"testing"
)

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
	sort.Strings(found)
	for _, f := range found {
		t.Error(f)
	}
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
