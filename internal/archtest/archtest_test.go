package archtest

import (
	"bufio"
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"testing"
)

// A rule forbids the packages matched by pkg to import anything matched
// by deny. A pattern is a path relative to the module ("broker/api"), or
// an outside import path; a trailing "/..." also matches everything below
// it, and "..." alone is every package of the module (never an outside
// one). doc quotes the package doc the rule comes from.
type rule struct {
	pkg  string
	deny []string
	doc  string
}

// Outside import paths some docs rule out.
const (
	grpc         = "google.golang.org/grpc/..."
	envoyProtos  = "github.com/envoyproxy/go-control-plane/..."
	cncfXDS      = "github.com/cncf/xds/..."
	redisClient  = "github.com/redis/go-redis/..."
	sqliteDriver = "modernc.org/sqlite/..."
	duckDriver   = "github.com/duckdb/duckdb-go/..."
	chDriver     = "github.com/ClickHouse/clickhouse-go/..."
)

var (
	roles      = []string{"broker/...", "controlplane/...", "sidecars/...", "dev/...", "cmd/...", "frontdoor/..."}
	brokerDeps = []string{"broker/api/...", "broker/queue/...", "broker/worker/..."} // api, queue, worker
	libraries  = []string{"authn", "authz", "ratelimit", "accesslog", "spec"}
	// testSupport are the packages only tests (and load generators) import.
	testSupport = []string{"internal/testenv", "internal/browsertest", "authn/authntest", "accesslog/accesslogtest", "broker/store/storetest", "broker/queue/queuetest", "broker/dns/route53fake", "broker/cdn/cloudfrontfake"}
)

// rules are the written rules of the package docs, one row each, then the
// library rule and dev's rule on the production roles.
var rules = []rule{
	{pkg: "contract", deny: []string{"..."}, doc: "imports no Gatehouse package"},
	{pkg: "internal/xdsclient", deny: []string{"..."}, doc: "imports no Gatehouse package"},
	{pkg: "internal/tlsconfig", deny: []string{"..."}, doc: "imports no other Gatehouse package"},
	{pkg: "internal/benchproc", deny: []string{"..."}, doc: "imports no other Gatehouse package"},
	{pkg: "internal/archtest", deny: []string{"..."}, doc: "It imports nothing"},
	{pkg: "internal/browsertest", deny: []string{"..."}, doc: "imports no Gatehouse package"},
	{pkg: "internal/sidecar", deny: []string{"controlplane/...", "cmd/...", "sidecars/...", "authn/...", "authz/...", "ratelimit/...", "accesslog/..."}, doc: "must not import the control plane, cmd/ or any sidecar, nor the policy libraries (authn, authz, ratelimit, accesslog)"},
	{pkg: "internal/specdir", deny: []string{"controlplane/...", "sidecars/...", "cmd/..."}, doc: "must not import the control plane, the sidecars or cmd/"},
	{pkg: "internal/testenv", deny: roles, doc: "must not import a role package (broker, controlplane, sidecars, dev, cmd, frontdoor)"},
	{pkg: "authn/authntest", deny: []string{"..."}, doc: "imports no Gatehouse package"},
	{pkg: "cmd/...", deny: testSupport, doc: "must not import the test-support packages"},
	{pkg: "dev", deny: testSupport, doc: "Like cmd/, it must not import the test-support packages"},
	{pkg: "internal/tenancy", deny: []string{"broker/...", "controlplane/...", "spec/..."}, doc: "must not import the broker, the control plane or the spec package"},
	{pkg: "internal/telemetry", deny: []string{"spec/...", "authn/...", "authz/...", "ratelimit/...", "accesslog/...", "contract/...", "broker/...", "controlplane/...", "sidecars/...", "frontdoor/..."}, doc: "must not import any Gatehouse domain package"},
	{pkg: "spec", deny: []string{"..."}, doc: "must not import any other Gatehouse package"},
	{pkg: "authn", deny: []string{"authz/...", "sidecars/...", "controlplane/...", grpc, envoyProtos, cncfXDS}, doc: "must not import authz, the sidecars, the control plane or anything gRPC/xDS"},
	{pkg: "authz", deny: []string{grpc, envoyProtos, cncfXDS, "controlplane/...", "sidecars/..."}, doc: "must not import gRPC, Envoy protos, xDS, the control plane or the sidecars"},
	{pkg: "ratelimit", deny: []string{grpc, "internal/xdsclient", redisClient, "ratelimit/redisstore", "sidecars/...", "cmd/..."}, doc: "must not import gRPC servers, xDS clients, Redis clients, the sidecars or cmd"},
	{pkg: "ratelimit/config", deny: []string{"..."}, doc: "must not import any other Gatehouse package"},
	{pkg: "ratelimit/redisstore", deny: []string{"sidecars/...", grpc, "internal/xdsclient"}, doc: "must not import the sidecars, gRPC or xDS"},
	{pkg: "ratelimit/replay", deny: []string{"ratelimit", "ratelimit/redisstore"}, doc: "must not import the service or any backend"},
	{pkg: "accesslog", deny: []string{"sidecars/...", "controlplane/...", "cmd/...", "accesslog/duckstore", "accesslog/chstore", sqliteDriver, duckDriver, chDriver}, doc: "must not import the sidecars, the control plane, cmd/ or any store driver"},
	{pkg: "accesslog/accesslogtest", deny: []string{"accesslog/duckstore", "accesslog/chstore", "sidecars/..."}, doc: "must not import a store or a sidecar"},
	{pkg: "accesslog/api", deny: []string{"accesslog/duckstore", "accesslog/chstore", "sidecars/...", "cmd/..."}, doc: "must not import a store driver, the sidecars or cmd/"},
	{pkg: "accesslog/archive", deny: []string{"accesslog/duckstore", "accesslog/chstore", "sidecars/...", "cmd/..."}, doc: "must not import a store driver, the sidecars or cmd/"},
	{pkg: "accesslog/chstore", deny: []string{"sidecars/...", "cmd/..."}, doc: "must not import the sidecars or cmd/"},
	{pkg: "accesslog/duckstore", deny: []string{"sidecars/...", "controlplane/...", "cmd/..."}, doc: "must not import the sidecars, the control plane or cmd/"},
	{pkg: "accesslog/client", deny: []string{"accesslog/duckstore", "accesslog/chstore", "sidecars/...", "cmd/..."}, doc: "must not import a store, the sidecars or cmd/"},
	{pkg: "accesslog/internal/sqlq", deny: []string{sqliteDriver, duckDriver, chDriver}, doc: "must not import a database driver"},
	{pkg: "broker", deny: []string{"controlplane/...", "sidecars/...", "authn/...", "authz/...", "ratelimit/...", "accesslog/..."}, doc: "must not import controlplane, sidecars or any enforcement library"},
	{pkg: "broker/api", deny: []string{"broker/worker/...", "controlplane/...", "authn/...", "authz/...", "ratelimit/...", "accesslog/..."}, doc: "must not import the worker, the control plane or any enforcement library"},
	{pkg: "broker/backend", deny: []string{"broker/api/...", "broker/worker/..."}, doc: "must not import the api or worker packages"},
	{pkg: "broker/cdn", deny: []string{"broker/api/...", "broker/queue/...", "broker/store/...", "broker/worker/..."}, doc: "must not import the api, queue, store or worker packages"},
	{pkg: "broker/cdn/cloudfrontfake", deny: []string{"broker/..."}, doc: "must not import other broker packages"},
	{pkg: "broker/dns", deny: []string{"broker/api/...", "broker/queue/...", "broker/store/...", "broker/worker/..."}, doc: "must not import the api, queue, store or worker packages"},
	{pkg: "broker/dns/route53fake", deny: []string{"broker/..."}, doc: "must not import other broker packages"},
	{pkg: "broker/osbclient", deny: []string{"broker", "broker/backend/...", "broker/cdn/...", "broker/dns/...", "broker/queue/...", "broker/sealbox/...", "broker/specio/...", "broker/store/...", "broker/worker/..."}, doc: "must not import the broker's server packages other than api"},
	{pkg: "broker/queue", deny: []string{"broker/store/...", "broker/api/...", "broker/worker/..."}, doc: "must not import the store, api or worker packages"},
	{pkg: "broker/queue/queuetest", deny: []string{"broker/queue/sqlitequeue", "broker/queue/sqsqueue", "broker/backend"}, doc: "must not import any backend"},
	{pkg: "broker/queue/sqlitequeue", deny: []string{"broker/store/...", "broker/api/...", "broker/worker/..."}, doc: "must not import the broker's store, api or worker packages"},
	{pkg: "broker/queue/sqsqueue", deny: []string{"broker/store/...", "broker/api/...", "broker/worker/..."}, doc: "must not import the broker's store, api or worker packages"},
	{pkg: "broker/sealbox", deny: []string{"broker/..."}, doc: "must not import any other broker package"},
	{pkg: "broker/specio", deny: append([]string{"controlplane/..."}, brokerDeps...), doc: "must not import the api, queue or worker packages, nor the control plane"},
	{pkg: "broker/store", deny: append([]string{"controlplane/..."}, brokerDeps...), doc: "must not import the broker's api, queue or worker packages, nor the control plane"},
	{pkg: "broker/store/dynamostore", deny: brokerDeps, doc: "must not import the broker's api, queue or worker packages"},
	{pkg: "broker/store/sqlitestore", deny: brokerDeps, doc: "must not import the broker's api, queue or worker packages"},
	{pkg: "broker/store/storetest", deny: []string{"broker/store/sqlitestore", "broker/store/dynamostore", "broker/backend"}, doc: "must not import any backend"},
	{pkg: "broker/worker", deny: []string{"broker/api/...", "controlplane/..."}, doc: "must not import the api package or the control plane"},
	{pkg: "controlplane/...", deny: []string{"sidecars/...", "dev/...", "cmd/...", "frontdoor/...", "broker/api/...", "broker/worker/..."}, doc: "No package of the control plane ... may import the sidecars, dev, cmd/, frontdoor or the broker's api and worker packages"},
	{pkg: "controlplane/internal/benchspec", deny: []string{"controlplane/compile", "controlplane/envoy", "controlplane/snapshot", "controlplane/xds"}, doc: "must not import the compile, envoy, snapshot or xds packages"},
	{pkg: "controlplane/compile", deny: []string{"controlplane/snapshot", "controlplane/xds", "sidecars/..."}, doc: "must not import snapshot, xds or the sidecars"},
	{pkg: "controlplane/envoy", deny: []string{"controlplane/compile", "controlplane/snapshot", "controlplane/xds", "sidecars/..."}, doc: "must not import compile, snapshot, xds or any sidecar package"},
	{pkg: "controlplane/explain", deny: []string{"controlplane/xds", "controlplane/snapshot", "sidecars/..."}, doc: "must not import xds, snapshot or the sidecars"},
	{pkg: "controlplane/outcome", deny: []string{"controlplane/compile", "controlplane/snapshot", "controlplane"}, doc: "must not import compile, snapshot or the controlplane package"},
	{pkg: "controlplane/snapshot", deny: []string{"controlplane/xds", "controlplane/source"}, doc: "must not import xds internals beyond the Cache interface, nor source"},
	{pkg: "controlplane/source", deny: []string{"controlplane/compile", "controlplane/envoy", "controlplane/snapshot", "controlplane/xds"}, doc: "must not import the compile, envoy, snapshot or xds packages"},
	{pkg: "controlplane/xds", deny: []string{"controlplane/compile", "controlplane/snapshot", "controlplane"}, doc: "must not import compile, snapshot or the controlplane package"},
	{pkg: "frontdoor", deny: []string{"controlplane/...", "sidecars/...", "spec/..."}, doc: "must not import the control plane, the sidecars or the spec package"},
	{pkg: "sidecars/authz", deny: []string{"controlplane/...", "sidecars/ratelimit/...", "sidecars/accesslog/..."}, doc: "must not import the control plane, nor other sidecars"},
	{pkg: "sidecars/ratelimit", deny: []string{"controlplane/...", "sidecars/authz/...", "sidecars/accesslog/..."}, doc: "must not import the control plane, nor other sidecars"},
	{pkg: "sidecars/accesslog", deny: []string{"cmd/...", "sidecars/authz/...", "sidecars/ratelimit/..."}, doc: "must not import cmd/ or other sidecars"},
}

func init() {
	for _, l := range libraries {
		rules = append(rules, rule{pkg: l + "/...", deny: roles, doc: "libraries import no role package (broker, controlplane, sidecars, dev, cmd, frontdoor)"})
	}
	for _, r := range []string{"broker/...", "controlplane/...", "sidecars/...", "frontdoor/..."} {
		rules = append(rules, rule{pkg: r, deny: []string{"dev/..."}, doc: "the broker, the control plane, the sidecars and frontdoor must not import dev"})
	}
}

// match reports whether path (module-relative for the module's own
// packages, "" for the module root) matches pattern.
func match(pattern, path string) bool {
	if pattern == "..." {
		return !outside(path)
	}
	if base, ok := strings.CutSuffix(pattern, "/..."); ok {
		return path == base || strings.HasPrefix(path, base+"/")
	}
	return path == pattern
}

// outside reports whether an import path is not the module's (its first
// element is a domain name).
func outside(path string) bool {
	return strings.Contains(strings.SplitN(path, "/", 2)[0], ".")
}

// violations checks imports (package -> module-relative or outside import
// paths) against rules.
func violations(rules []rule, imports map[string][]string) []string {
	var out []string
	for _, r := range rules {
		for pkg, imps := range imports {
			if !match(r.pkg, pkg) {
				continue
			}
			for _, imp := range imps {
				for _, d := range r.deny {
					if match(d, imp) && imp != pkg {
						out = append(out, fmt.Sprintf("%s imports %s; its rule: %q", pkg, imp, r.doc))
					}
				}
			}
		}
	}
	sort.Strings(out)
	return out
}

// moduleImports parses the import block of every non-test Go file under
// root and returns each package's imports, the module's own as paths
// relative to the module.
func moduleImports(t *testing.T, root, module string) map[string][]string {
	t.Helper()
	imports := map[string][]string{}
	goFiles(t, root, false, parser.ImportsOnly, func(p, dir string, f *ast.File, fset *token.FileSet) error {
		pkg := dir
		for _, s := range f.Imports {
			imp, err := strconv.Unquote(s.Path.Value)
			if err != nil {
				return fmt.Errorf("%s: %w", p, err)
			}
			if imp == module {
				imp = ""
			} else if rest, ok := strings.CutPrefix(imp, module+"/"); ok {
				imp = rest
			} else if !outside(imp) {
				continue // the standard library
			}
			if !slices.Contains(imports[pkg], imp) {
				imports[pkg] = append(imports[pkg], imp)
			}
		}
		if _, ok := imports[pkg]; !ok {
			imports[pkg] = nil // a package importing only the standard library
		}
		return nil
	})
	return imports
}

// moduleRoot returns the directory of go.mod above the test's directory
// and the module path it declares.
func moduleRoot(t *testing.T) (dir, module string) {
	t.Helper()
	dir, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	for {
		f, err := os.Open(filepath.Join(dir, "go.mod"))
		if err == nil {
			defer f.Close()
			sc := bufio.NewScanner(f)
			for sc.Scan() {
				if m, ok := strings.CutPrefix(strings.TrimSpace(sc.Text()), "module "); ok {
					return dir, strings.Trim(strings.TrimSpace(m), `"`)
				}
			}
			t.Fatalf("%s/go.mod declares no module", dir)
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			t.Fatal("no go.mod above the test directory")
		}
		dir = parent
	}
}

// TestImportRules fails on every import a package doc forbids.
func TestImportRules(t *testing.T) {
	root, module := moduleRoot(t)
	imports := moduleImports(t, root, module)
	// Every rule names a package that exists: a moved or renamed package
	// must take its rule along, not silently drop it.
	for _, r := range rules {
		found := false
		for pkg := range imports {
			if match(r.pkg, pkg) {
				found = true
				break
			}
		}
		if !found {
			t.Errorf("rule for %s (%q): no such package; move the rule with the package", r.pkg, r.doc)
		}
	}
	for _, v := range violations(rules, imports) {
		t.Error(v)
	}
}

// TestViolationsFindsForbiddenEdges: the checker itself catches a
// forbidden edge, direct or below a "/..." pattern, an outside import,
// and the library rule, and lets allowed edges through.
func TestViolationsFindsForbiddenEdges(t *testing.T) {
	imports := map[string][]string{
		"ratelimit":            {"contract", "spec", "controlplane/compile"}, // a library importing a role
		"authz":                {"authn", "google.golang.org/grpc"},          // an outside import its doc forbids
		"broker/api":           {"broker/store", "broker/worker"},            // a sibling its doc forbids
		"contract":             {"github.com/cncf/xds/go/xds/type/v3"},       // outside imports are fine for a leaf
		"ratelimit/redisstore": {"ratelimit"},
	}
	lib := rule{pkg: "ratelimit/...", deny: roles, doc: "libraries import no role package"}
	got := violations([]rule{
		{pkg: "authz", deny: []string{grpc}, doc: "no gRPC"},
		{pkg: "broker/api", deny: []string{"broker/worker/..."}, doc: "no worker"},
		{pkg: "contract", deny: []string{"..."}, doc: "leaf"},
		lib,
	}, imports)
	want := []string{
		`authz imports google.golang.org/grpc; its rule: "no gRPC"`,
		`broker/api imports broker/worker; its rule: "no worker"`,
		`ratelimit imports controlplane/compile; its rule: "libraries import no role package"`,
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Fatalf("violations:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

// goFiles parses every Go file of the module under root (test files too
// when tests), skipping hidden, underscore, testdata and node_modules
// directories, and calls fn with the file's package directory relative to
// the module ("" for the root).
func goFiles(t *testing.T, root string, tests bool, mode parser.Mode, fn func(p, dir string, f *ast.File, fset *token.FileSet) error) {
	t.Helper()
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
		if !strings.HasSuffix(name, ".go") || (!tests && strings.HasSuffix(name, "_test.go")) {
			return nil
		}
		rel, err := filepath.Rel(root, filepath.Dir(p))
		if err != nil {
			return err
		}
		dir := filepath.ToSlash(rel)
		if dir == "." {
			dir = ""
		}
		f, err := parser.ParseFile(fset, p, nil, mode)
		if err != nil {
			return err
		}
		return fn(p, dir, f, fset)
	})
	if err != nil {
		t.Fatal(err)
	}
}

// reportAll fails t with each finding, sorted, one error each.
func reportAll(t *testing.T, found []string) {
	t.Helper()
	sort.Strings(found)
	for _, f := range found {
		t.Error(f)
	}
}
