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

// contractNames are values package contract defines: a cross-process name
// spelled out anywhere else is a copy that can drift from it. (Names that
// also mean something else, such as "config_version", a log column too,
// or Envoy's own filter names, are left out; the ext_authz filter's name
// is in, as it is also the metadata namespace the sidecars agree on.)
var contractNames = []string{
	"gatehouse.route", "gatehouse.revision", "envoy.filters.http.ext_authz",
	"x-gatehouse-", "x-gatehouse-reason",
	"gatehouse_authz", "gatehouse_ratelimit", "gatehouse_accesslog", "gatehouse_xds",
	"127.0.0.1:8080", "127.0.0.1:8083", "127.0.0.1:8084", "127.0.0.1:18000", "127.0.0.1:18001",
	"127.0.0.1:9001", "127.0.0.1:9091", "127.0.0.1:8081", "127.0.0.1:6070", "127.0.0.1:9002",
	"127.0.0.1:9003", "127.0.0.1:9901", "0.0.0.0:10080", "0.0.0.0:10443",
}

// contractCopies are the copies still allowed, as "dir: value", each
// with the reason it must stay. None must: every copy refers to contract.
var contractCopies = map[string]bool{}

// TestContractNamesDefinedOnce fails when a non-test file outside
// contract/ spells out one of contract's names as a string literal.
func TestContractNamesDefinedOnce(t *testing.T) {
	root, _ := moduleRoot(t)
	want := map[string]bool{}
	for _, n := range contractNames {
		want[n] = true
	}
	var found []string
	goFiles(t, root, false, parser.SkipObjectResolution, func(p, dir string, f *ast.File, fset *token.FileSet) error {
		if dir == "contract" || dir == "internal/archtest" {
			return nil
		}
		ast.Inspect(f, func(n ast.Node) bool {
			lit, ok := n.(*ast.BasicLit)
			if !ok || lit.Kind != token.STRING {
				return true
			}
			v, err := strconv.Unquote(lit.Value)
			if err == nil && want[v] && !contractCopies[dir+": "+v] {
				found = append(found, fset.Position(lit.Pos()).String()+": "+strconv.Quote(v)+" is contract's; refer to the contract constant")
			}
			return true
		})
		return nil
	})
	sort.Strings(found)
	for _, f := range found {
		rel, err := filepath.Rel(root, strings.SplitN(f, ":", 2)[0])
		if err == nil {
			f = rel + ":" + strings.SplitN(f, ":", 2)[1]
		}
		t.Error(f)
	}
}
