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

// minKeyedFields is the number of elements from which a table row must be
// keyed: {name, input} may stay positional, {"unknown route", req, 403,
// "", ""} may not.
const minKeyedFields = 3

// positionalRows returns the position of every row of a test table in f
// that is positional and has minKeyedFields elements or more. A table is
// a composite literal of a slice, array or map whose element (or value)
// type is an anonymous struct ([]struct{...}{...}, map[K]*struct{...}{...}).
func positionalRows(f *ast.File, fset *token.FileSet) []token.Position {
	var found []token.Position
	ast.Inspect(f, func(n ast.Node) bool {
		table, ok := n.(*ast.CompositeLit)
		if !ok {
			return true
		}
		var elem ast.Expr
		switch t := table.Type.(type) {
		case *ast.ArrayType:
			elem = t.Elt
		case *ast.MapType:
			elem = t.Value
		default:
			return true
		}
		if star, ok := elem.(*ast.StarExpr); ok {
			elem = star.X
		}
		if _, ok := elem.(*ast.StructType); !ok {
			return true
		}
		for _, e := range table.Elts {
			if kv, ok := e.(*ast.KeyValueExpr); ok { // a map key or an array index
				e = kv.Value
			}
			if u, ok := e.(*ast.UnaryExpr); ok && u.Op == token.AND {
				e = u.X
			}
			row, ok := e.(*ast.CompositeLit)
			if !ok || len(row.Elts) < minKeyedFields {
				continue
			}
			if _, keyed := row.Elts[0].(*ast.KeyValueExpr); !keyed {
				found = append(found, fset.Position(row.Pos()))
			}
		}
		return true
	})
	return found
}

// TestTableRowsKeyed fails, naming file:line, on every row of a test table
// (see positionalRows) that is positional and has three or more elements:
// keyed rows say which value is which and leave out the zero values.
func TestTableRowsKeyed(t *testing.T) {
	root, _ := moduleRoot(t)
	var found []string
	goFiles(t, root, true, parser.SkipObjectResolution, func(p, dir string, f *ast.File, fset *token.FileSet) error {
		if !strings.HasSuffix(p, "_test.go") {
			return nil
		}
		for _, pos := range positionalRows(f, fset) {
			relFile, _ := filepath.Rel(root, pos.Filename)
			found = append(found, relFile+":"+strconv.Itoa(pos.Line)+": positional table row of 3 or more fields; key it (field: value) and leave out its zero values")
		}
		return nil
	})
	reportAll(t, found)
}

// TestPositionalRowsFound: the checker itself finds positional rows of
// three or more elements in slice, array, pointer and map tables, nested
// ones too, and lets keyed rows, two-element rows and named-struct tables
// through.
func TestPositionalRowsFound(t *testing.T) {
	const src = `package x

type named struct{ a, b, c string }

var (
	slice = []struct{ name, in, want string }{
		{name: "keyed", in: "a"},
		{"positional", "a", ""}, // line 8
	}
	pair  = []struct{ in, want string }{{"a", "b"}}
	ptrs  = []*struct{ a, b, c int }{{1, 2, 3}, &struct{ a, b, c int }{4, 5, 6}} // line 11
	array = [2]struct{ a, b, c int }{1: {1, 2, 3}}                               // line 12
	byKey = map[string]struct{ a, b, c int }{
		"keyed":      {a: 1},
		"positional": {1, 0, 0}, // line 15
	}
	nested = []struct {
		name string
		sub  []struct{ a, b, c int }
	}{{"outer", []struct{ a, b, c int }{{1, 2, 3}}}} // line 20
	notATable = []named{{"a", "b", "c"}}
)
`
	fset := token.NewFileSet()
	f, err := parser.ParseFile(fset, "x_test.go", src, parser.SkipObjectResolution)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, pos := range positionalRows(f, fset) {
		got = append(got, strconv.Itoa(pos.Line)+":"+strconv.Itoa(pos.Column))
	}
	want := []string{"8:3", "11:35", "11:47", "12:38", "15:17", "20:38"}
	if strings.Join(got, " ") != strings.Join(want, " ") {
		t.Fatalf("positional rows at %v, want %v", got, want)
	}
}
