package archtest

import (
	"go/ast"
	"go/parser"
	"go/token"
	"path/filepath"
	"sort"
	"strconv"
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
	sort.Strings(found)
	for _, f := range found {
		t.Error(f)
	}
}
