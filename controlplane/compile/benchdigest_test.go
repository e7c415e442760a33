package compile

import (
	"crypto/sha256"
	"encoding/hex"
	"flag"
	"fmt"
	"strings"
	"testing"

	"github.com/gatehouse-edge/gatehouse/controlplane/internal/benchspec"
	"github.com/gatehouse-edge/gatehouse/controlplane/source"
)

// The compiled output of the bench specs, as digests of Render's canonical
// JSON of every node group (version included). The compiler's speed-ups
// (pruned Any walk, typed route stamping, CEL and regex reuse) must not
// change one byte of what is published: these digests were taken from the
// compiler before them (main at f304087) and hold every later change to
// the same output. An intended change of the compiled config updates them
// (run with -update-digests and review why they moved).
const (
	// 1,000 bench specs (benchRevision(1000, 500, 0, 0): spec 500 in its
	// first variant), one Compile.
	benchDigestFull = "4ee1f2320bdc731301566fdd57838bb9f44c82a050d05d01da8ecf996f48b089"
	// The same compiler, then spec 500 (served by every group) changed:
	// the incremental path (reused specs, re-stamped route tables).
	benchDigestChanged = "ec18cc029d9f868d0a3f189c9c804635d5eeb5fe7010ca16f978d9dad73e17d7"
	// 200 specs with exact hosts, group-01 and group-02 served scoped
	// routes (one route table per spec, stamped per spec).
	benchDigestScoped = "e3c2632bf32c786cf8372e16141ae5e42d62fa5f23b51061f8056aaa3873dfcd"
	// 200 calls bench specs (benchRevisionCalls(200, 0): every `when`
	// calls startsWith, size, has or matches), one Compile; taken when
	// these were the celgo bench's specs (the compile CPU's second pass in
	// docs/PERFORMANCE.md, before the regex and sidecar-payload changes,
	// and before the fast verdict took them).
	benchDigestCalls = "d70336aeed5599879010d598a8e5ea2959c69f42b817f690650f09a97cc13317"
	// 200 celgo bench specs (benchRevisionCELGo(200, 0): every `when`
	// takes cel-go's path), one Compile; taken when the fourth pass (in
	// docs/PERFORMANCE.md) gave that bench expressions outside the widened
	// fast verdict (the compiler unchanged but for that verdict).
	benchDigestCELGo = "b1769c5dec89365f94db41e0a83accfc18d0ac88706a3a11c579feac5c978c14"
)

var updateDigests = flag.Bool("update-digests", false, "print the bench output digests instead of checking them")

// groupsDigest is the sha256 of Render of every bench node group of res.
func groupsDigest(t *testing.T, res *Result) string {
	t.Helper()
	for _, s := range res.Specs {
		if s.Err != nil {
			t.Fatalf("%s: %v", s.Origin, s.Err)
		}
	}
	h := sha256.New()
	for g := 0; g < benchGroups; g++ {
		group := fmt.Sprintf("group-%02d", g)
		r, warnings, err := res.Resources(group)
		if err != nil {
			t.Fatalf("%s: %v", group, err)
		}
		out, err := Render(group, res.GroupVersion(group), r, warnings)
		if err != nil {
			t.Fatal(err)
		}
		h.Write(out)
		h.Write([]byte{0})
	}
	return hex.EncodeToString(h.Sum(nil))
}

// scopedBenchRevision is n bench specs with exact hosts (so they can be
// route scopes), each with its own CEL expression and regex as benchSpec.
func scopedBenchRevision(n int) source.Revision {
	specs := make([]source.Spec, n)
	for i := range specs {
		y := string(benchspec.Options{ExactHosts: true}.Spec(i, benchGroups, 0))
		tag := fmt.Sprintf("x-%04d", i)
		y = strings.Replace(y, sharedWhen, `when: 'identity.kind == "apiKey" && identity.labels.plan in ["gold", "`+tag+`"]'`, 1)
		y = strings.Replace(y, sharedRegex, `pathRegex: "^/items/(?:[0-9]+|`+tag+`-[a-f]+)$"`, 1)
		specs[i] = source.Spec{Origin: benchspec.Name(i) + ".yaml", Data: []byte(y)}
	}
	return source.Revision{ID: "scoped", Specs: specs}
}

// TestBenchOutputUnchanged: the compiled config of the bench specs is
// byte for byte what the compiler produced before the speed-ups.
func TestBenchOutputUnchanged(t *testing.T) {
	if testing.Short() {
		t.Skip("compiles 1,000 specs")
	}
	check := func(name, want, got string) {
		t.Helper()
		if *updateDigests {
			t.Logf("%s = %q", name, got)
			return
		}
		if got != want {
			t.Errorf("%s: the compiled config changed: digest %s, want %s", name, got, want)
		}
	}
	c := newCompiler(t)
	check("benchDigestFull", benchDigestFull, groupsDigest(t, c.Compile(benchRevision(benchSpecs, 500, 0, 0))))
	check("benchDigestChanged", benchDigestChanged, groupsDigest(t, c.Compile(benchRevision(benchSpecs, 500, 1, 0))))

	sc, err := New(Options{ScopedRouteGroups: []string{"group-01", "group-02"}})
	if err != nil {
		t.Fatal(err)
	}
	res := sc.Compile(scopedBenchRevision(200))
	for _, g := range []string{"group-01", "group-02"} {
		if scoped, _ := res.scopedLayout(g); !scoped {
			t.Fatalf("%s is not served scoped routes", g)
		}
	}
	check("benchDigestScoped", benchDigestScoped, groupsDigest(t, res))
	check("benchDigestCalls", benchDigestCalls, groupsDigest(t, newCompiler(t).Compile(benchRevisionCalls(200, 0))))
	check("benchDigestCELGo", benchDigestCELGo, groupsDigest(t, newCompiler(t).Compile(benchRevisionCELGo(200, 0))))
}

// TestFileKeyFollowsTheBytes: a spec's file key is reused from the last
// Compile only for equal bytes, and a source that rewrites a spec in the
// same buffer gets the new content compiled (the memo keeps a copy).
func TestFileKeyFollowsTheBytes(t *testing.T) {
	c := newCompiler(t)
	rev := benchRevision(30, -1, 0, 0)
	c.Compile(rev)
	// Spec 0 serves every group; rewrite one endpoint in place.
	data := rev.Specs[0].Data
	i := strings.Index(string(data), "10.0.0.2:8080")
	if i < 0 {
		t.Fatal("bench spec 0 has no endpoint 10.0.0.2:8080")
	}
	copy(data[i:], "10.0.0.2:8081")
	got := c.Compile(rev)
	want := newCompiler(t).Compile(rev)
	for g := 0; g < benchGroups; g++ {
		group := fmt.Sprintf("group-%02d", g)
		if got.GroupVersion(group) != want.GroupVersion(group) {
			t.Fatalf("%s: version %s after an in-place change, a new compiler says %s", group, got.GroupVersion(group), want.GroupVersion(group))
		}
	}
	for _, src := range rev.Specs {
		m := c.keys[fileID{origin: src.Origin, name: src.Name, revision: src.Revision}]
		if m.key != fileKey(src) {
			t.Fatalf("%s: remembered key %s, fileKey %s", src.Origin, m.key, fileKey(src))
		}
	}
}
