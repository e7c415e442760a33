package spec

import (
	"bufio"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"flag"
	"math/rand/v2"
	"os"
	"testing"
)

var updateCELVerdicts = flag.Bool("update-cel-verdicts", false, "rewrite testdata/cel_verdicts.jsonl from this tree's CELChecker")

// celVerdictsFile holds, one JSON object a line, what CELChecker.Check
// said of each expression of celVerdictExprs ("<nil>", or "sha256:" and
// the first 16 bytes of the sha256 of its error text, which keeps the
// file small and holds the text exactly) on main at 934da55, before the fast verdict took the common calls
// (written there with -update-cel-verdicts). cel-go's verdict is the
// contract: a change of the fast verdict must not move one of them.
// Re-recorded once since, when validation began to refuse a literal
// matches pattern that CheckRegexp refuses (checkWhenConstants): only the
// five rows of such patterns changed (<nil> before) and one was added
// (testdata/invalid/cel-matches-too-complex.yaml's, <nil> before too);
// the celFastTooDeep rows keep main's <nil>, which the test below handles.
const celVerdictsFile = "testdata/cel_verdicts.jsonl"

type celVerdictLine struct {
	Expr string `json:"expr"`
	Err  string `json:"err"`
}

// celVerdictExprs: the seeds, the examples, the fast verdict's tables,
// the call product and 200 generated expressions (fixed seed), each once.
func celVerdictExprs(t *testing.T) []string {
	var all []string
	all = append(all, celSeeds...)
	all = append(all, exampleWhens(t)...)
	all = append(all, celFastValid...)
	all = append(all, celFastRefusedByCEL...)
	all = append(all, celFastOutsideSubset...)
	all = append(all, celFastCalls()...)
	r := rand.New(rand.NewPCG(7, 934))
	for range 200 {
		all = append(all, celFastExpr(r, 0, []int{0, 8, 20}[r.IntN(3)]))
	}
	seen := map[string]bool{}
	var out []string
	for _, e := range all {
		if !seen[e] && len(e) <= 1024 {
			seen[e] = true
			out = append(out, e)
		}
	}
	return out
}

// TestCELVerdictsUnchanged: CELChecker.Check gives every expression of
// celVerdictExprs the verdict and error text it gave before the fast
// verdict was widened (celVerdictsFile), the first time and from its memo;
// except celFastTooDeep, which main validated and cel-go refuses: Check
// now gives cel-go's error.
func TestCELVerdictsUnchanged(t *testing.T) {
	chk := testCELChecker(t)
	exprs := celVerdictExprs(t)
	if *updateCELVerdicts {
		f, err := os.Create(celVerdictsFile)
		if err != nil {
			t.Fatal(err)
		}
		enc := json.NewEncoder(f)
		enc.SetEscapeHTML(false)
		for _, e := range exprs {
			if err := enc.Encode(celVerdictLine{Expr: e, Err: celErrDigest(chk.Check(e))}); err != nil {
				t.Fatal(err)
			}
		}
		if err := f.Close(); err != nil {
			t.Fatal(err)
		}
		return
	}
	f, err := os.Open(celVerdictsFile)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	want := map[string]string{}
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64*1024), 1<<20)
	for sc.Scan() {
		var l celVerdictLine
		if err := json.Unmarshal(sc.Bytes(), &l); err != nil {
			t.Fatal(err)
		}
		want[l.Expr] = l.Err
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	env := testCELEnv(t)
	// fixed: what main's fast verdict may have taken although cel-go
	// refuses it (celFastTooDeep); the one intended change of verdict.
	fixed := map[string]bool{}
	for _, e := range celFastTooDeep {
		fixed[e] = true
	}
	var accepted, refused, fast int
	for _, e := range exprs {
		w, ok := want[e]
		if !ok {
			t.Errorf("%q: no recorded verdict (an expression was added: record it on the old tree)", e)
			continue
		}
		if fixed[e] && celErrDigest(chk.Check(e)) != w {
			// main's fast verdict took it; cel-go refuses it.
			_, cg := CompileWhen(env, e)
			if w != "<nil>" || cg == nil || celErr(chk.Check(e)) != celErr(cg) {
				t.Errorf("%q: before %s, cel-go %q, Check now %q: want before <nil>, now cel-go's error", e, w, celErr(cg), celErr(chk.Check(e)))
			}
			continue
		}
		for range 2 {
			if got := chk.Check(e); celErrDigest(got) != w {
				t.Errorf("%q: Check says %q (%s), before it said %s", e, celErr(got), celErrDigest(got), w)
			}
		}
		if w == "<nil>" {
			accepted++
		} else {
			refused++
		}
		if celSurelyBool(e) {
			fast++
		}
	}
	if len(want) != len(exprs) || accepted < 100 || refused < 100 || fast < 100 {
		t.Fatalf("%d recorded verdicts for %d expressions; %d accepted, %d refused, %d by the fast verdict: the table should exercise all three", len(want), len(exprs), accepted, refused, fast)
	}
	t.Logf("%d expressions: %d accepted (%d by the fast verdict), %d refused, as before", len(exprs), accepted, fast, refused)
}

// celErrDigest is "<nil>" for nil, else "sha256:" and the first 16 bytes of
// the sha256 of err's text, in hex.
func celErrDigest(err error) string {
	if err == nil {
		return "<nil>"
	}
	sum := sha256.Sum256([]byte(err.Error()))
	return "sha256:" + hex.EncodeToString(sum[:16])
}
