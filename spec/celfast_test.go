package spec

import (
	"math/rand/v2"
	"strings"
	"testing"
)

// celFastValid are expressions of celSurelyBool's subset that compile to
// a boolean: it must take every one of them.
var celFastValid = []string{
	`identity.kind == "apiKey" && identity.labels.plan == "gold"`,
	`identity.kind == "apiKey" && identity.labels.plan in ["gold", "s0-0001"]`,
	`request.method == "GET" || request.method == "HEAD"`,
	`request.headers["x-tenant"] == identity.labels.tenant`,
	`identity.claims.banned == true`,
	`!(request.method in ["DELETE", "PUT"])`,
	`(((((true)))))`,
	strings.Repeat("(", celFastMaxDepth) + "true" + strings.Repeat(")", celFastMaxDepth),
	`true && false || !true`,
	`null == null`,
	`identity.claims.sub != null`,
	`identity.claims.level >= 3 && identity.claims.level < 10`,
	`"a" < "b" && 1 <= 2 && identity.x > identity.y`,
	`"admin" in identity.claims.groups`,
	`1 in [1, 2, 3]`,
	`identity.n in [0, 7]`,
	`identity.admin || identity.root`,
	`!identity.disabled`,
	`(identity).kind == 'x'`,
	"identity.kind\t==\n\"x\"\r&&\ttrue",
	`request.path == "/a b/c'd"`,
	`identity.labels["plan"]["x"] == ""`,
	`identity.x == 999999999999999999`,
	`identity._a1 == "x" && identity.Letters_9 == 'y'`,
	`"a"in["a"]`,
	`identity.x in identity.y`,
	`true in identity.x && 1 in identity.x && null == identity.z`,
	`identity.x < identity.y && "a" <= identity.x && identity.x >= 1`,
	`(identity.a || identity.b) && !(identity.c)`,
	`identity.a == (identity.b == "x")`,
	`(identity.a == "x") == true`,
	`request["a"]["b"] in ["x"] || request.c in [1]`,
}

// celFastRefusedByCEL are expressions cel-go refuses (the parse or the
// check, or a non-boolean result); celSurelyBool must refuse each, so
// CELChecker reports cel-go's error. Many are one step from the subset.
var celFastRefusedByCEL = []string{
	`identity.kind`,                           // dyn, not bool
	`request`,                                 // a map
	`!request`,                                // ! of a map
	`identity.kind == "a" && identity`,        // && of a map
	`"a" == 1`,                                // no overload
	`1 == true`,                               // no overload
	`true == null`,                            // no overload
	`"a" < 1`,                                 // no overload
	`true < false && "x" == 1`,                // no overload ("x" == 1)
	`1 in ["a"]`,                              // no overload
	`"a" in [1]`,                              // no overload
	`"a" in "abc"`,                            // no overload
	`identity.x in 1`,                         // no overload
	`undeclared == 1`,                         // undeclared reference
	`requests.x == 1`,                         // undeclared reference
	`identity.in == "x"`,                      // keyword as a field
	`identity.true == "x"`,                    // keyword as a field
	`if == 1`,                                 // reserved word
	`identity.kind == 0X1F`,                   // upper-case hex prefix
	`identity.kind == 01x`,                    // not a number
	`identity.kind == "a" "b"`,                // two strings
	`identity.kind == """a"`,                  // unterminated triple quote
	`identity.kind == "a`,                     // unterminated
	`identity.kind == "a" ==`,                 // dangling operator
	`identity.kind = "a"`,                     // assignment is not CEL
	`identity.kind == "a" & true`,             // single &
	`identity.kind == "a" | true`,             // single |
	`(identity.kind == "a"`,                   // unbalanced
	`identity.kind == "a")`,                   // unbalanced
	`[1, 2`,                                   // unbalanced
	`identity.kind == "a" &&`,                 // dangling
	`identity..kind == "a"`,                   // empty field
	`identity.kind == 99999999999999999999`,   // int overflow
	`identity["x"] == "a" && identity[1]`,     // map key type
	`.identity.kind == "a" && 1`,              // && of an int
	`identity.kind == 'a\'`,                   // unterminated ('\' escapes the quote)
	`identity.kind == "a" // comment` + "\n1", // && missing after the comment
	``,
	` `,
	`!`,
	`()`,
	`[]`,
	`in`,
	`request.ip.startsWith(`,
	`true in [1]`,                  // no overload
	`identity.x in ["a"] in ["b"]`, // bool in list(string)
	`!1`,                           // no overload
	`!"a"`,                         // no overload
	`1 && true`,                    // no overload
	`null && true`,                 // no overload
}

// celFastOutsideSubset are valid boolean expressions the subset leaves to
// cel-go (calls, macros, other literal forms, chained relations, ...).
var celFastOutsideSubset = []string{
	`request.ip.startsWith("203.0.113.")`,
	`has(identity.claims.sub)`,
	`size(request.path) < 64`,
	`identity.claims.groups.exists(g, g == "ops")`,
	`!!true`,
	`1 < 2 == true`,
	`identity.if == "x"`,
	`identity.kind == r"x"`,
	`identity.kind == "a\x41"`,
	`identity.kind == """x"""`,
	`identity.kind == '''x'''`,
	`identity.kind == "é"`,
	`identity.n == 0x1F`,
	`identity.n == 1u`,
	`identity.n == 1.5`,
	`identity.n == -1`,
	`identity.n == 1 + 1`,
	`identity.b == b"x"`,
	`identity.kind in ["a", "b",]`,
	`identity.kind in []`,
	`identity.x in ["a", 1]`,
	`identity.l[0] == "a"`,
	`identity.` + "`a-b`" + ` == "x"`,
	`identity.kind == "a" ? true : false`,
	`{"a": 1}.a == 1`,
	`request == identity`,
	`true // comment`,
	"identity.kind == \"a\"\f",
	`null < identity.x`,
	`null in identity.x`,
	`true < identity.x`,
	`identity.x == [1]`,
	`[1] == [1]`,
	`identity["a"] == request`,
	strings.Repeat("(", celFastMaxDepth+1) + "true" + strings.Repeat(")", celFastMaxDepth+1), // deeper than the subset's bound
	`identity.x == "` + strings.Repeat("a", celFastMaxLen) + `"`,                             // longer than the subset's bound
}

func TestCELSurelyBoolTable(t *testing.T) {
	env, err := NewCELEnv()
	if err != nil {
		t.Fatal(err)
	}
	for _, expr := range celFastValid {
		if !celSurelyBool(expr) {
			t.Errorf("%q: not taken by the fast verdict", expr)
		}
		if _, err := CompileWhen(env, expr); err != nil {
			t.Errorf("%q: the table says valid, cel-go says %v", expr, err)
		}
	}
	for _, expr := range celFastRefusedByCEL {
		if celSurelyBool(expr) {
			t.Errorf("%q: accepted by the fast verdict", expr)
		}
		_, err := CompileWhen(env, expr)
		if err == nil {
			t.Errorf("%q: the table says cel-go refuses it, it compiles", expr)
		}
		chk, cerr := NewCELChecker()
		if cerr != nil {
			t.Fatal(cerr)
		}
		if got := chk.Check(expr); celErr(got) != celErr(err) {
			t.Errorf("%q: Check says %q, CompileWhen %q", expr, celErr(got), celErr(err))
		}
	}
	for _, expr := range celFastOutsideSubset {
		if celSurelyBool(expr) {
			t.Errorf("%q: accepted by the fast verdict, which does not cover it", expr)
		}
		if _, err := CompileWhen(env, expr); err != nil {
			t.Errorf("%q: the table says valid, cel-go says %v", expr, err)
		}
	}
}

// celFastPieces are what celFastExpr builds expressions from: the
// subset's own (good) and others (bad: other literal forms, keywords,
// operators the subset lacks, broken strings).
var celFastPieces = map[string][2][]string{
	"ident": {{"request", "identity"}, {"requests", "x", "if", "in", "null", "true", "has", "int", "_", "size"}},
	"field": {{"kind", "labels", "plan", "x", "_a", "A9", "var1"}, {"in", "if", "true", "null", "as", "", "1"}},
	"literal": {
		{`"a"`, `'b'`, `""`, `''`, `"x y"`, `"it's"`, `'say "hi"'`, `1`, `0`, `42`, `999999999999999999`, `true`, `false`, `null`, `["a"]`, `[1, 2]`, `["a", "b"]`},
		{`01`, `0x1`, `0X1`, `1u`, `1.0`, `1e3`, `9999999999999999999`, `-1`, `r"x"`, `b"x"`, `"""a"""`, `'''a'''`, `"a\n"`, `"é"`, `"a`, `[]`, `["a", 1]`, `[1,]`, `{}`, `[true]`},
	},
	"relop": {{"==", "!=", "<", "<=", ">", ">=", "in"}, {"=", "===", "=<", "<>", "+", "-", "*", "%"}},
	"logic": {{"&&", "||"}, {"&", "|", "?", "^", "and"}},
	"not":   {{"!"}, {"!!", "-", "~"}},
	"ws":    {{"", " ", " ", " ", "\t", "\n", "\r"}, {"\f", "//", "\v"}},
	"junk":  {{""}, {"!", "&&", "(", ")", "[", "]", ".", ",", "?", ":", "{", "}", "`", "\\", "@", "#", ";", "'", `"`}},
}

// celFastExpr makes an expression of the subset's shape in which, at
// each piece, one of the bad pieces is taken with probability 1/bad (0:
// never).
func celFastExpr(r *rand.Rand, depth, bad int) string {
	pick := func(kind string) string {
		p := celFastPieces[kind]
		if bad > 0 && r.IntN(bad) == 0 {
			return p[1][r.IntN(len(p[1]))]
		}
		return p[0][r.IntN(len(p[0]))]
	}
	member := func() string {
		switch r.IntN(8) {
		case 0, 1:
			return pick("literal")
		case 2:
			if depth < 3 {
				return "(" + pick("ws") + celFastExpr(r, depth+1, bad) + pick("ws") + ")"
			}
		}
		s := pick("ident")
		for n := 1 + r.IntN(3); n > 0; n-- {
			switch r.IntN(12) {
			case 0:
				s += `["` + pick("field") + `"]`
			case 1:
				if bad > 0 {
					s += "[" + pick("literal") + "]"
				}
			case 2:
				if bad > 0 {
					s += "." + pick("field") + "()"
				}
			default:
				s += "." + pick("field")
			}
		}
		return s
	}
	unary := func() string {
		if r.IntN(5) == 0 {
			return pick("not") + pick("ws") + member()
		}
		return member()
	}
	rel := func() string {
		s := unary()
		n := 1
		if r.IntN(8) == 0 {
			n = r.IntN(3)
		}
		for range n {
			s += pick("ws") + pick("relop") + pick("ws") + unary()
		}
		return s
	}
	s := rel()
	for r.IntN(2) == 0 {
		s += pick("ws") + pick("logic") + pick("ws") + rel()
	}
	if j := pick("junk"); j != "" {
		at := r.IntN(len(s) + 1)
		s = s[:at] + j + s[at:]
	}
	return s
}

// TestCELSurelyBoolAgrees: on thousands of generated expressions near the
// subset, whatever celSurelyBool takes, cel-go compiles to a boolean (and
// CELChecker.Check says what CompileWhen says). The generator must reach
// both sides: many taken, many refused by cel-go.
func TestCELSurelyBoolAgrees(t *testing.T) {
	env, err := NewCELEnv()
	if err != nil {
		t.Fatal(err)
	}
	chk, err := NewCELChecker()
	if err != nil {
		t.Fatal(err)
	}
	r := rand.New(rand.NewPCG(15, 4))
	const n = 3000
	var taken, refused int
	for range n {
		expr := celFastExpr(r, 0, []int{0, 8, 20, 40}[r.IntN(4)])
		_, want := CompileWhen(env, expr)
		if celSurelyBool(expr) {
			taken++
			if want != nil {
				t.Errorf("%q: taken by the fast verdict; cel-go says %v", expr, want)
			}
		}
		if want != nil {
			refused++
		}
		if got := chk.Check(expr); celErr(got) != celErr(want) {
			t.Errorf("%q: Check says %q, CompileWhen %q", expr, celErr(got), celErr(want))
		}
	}
	if taken < n/20 || refused < n/4 {
		t.Fatalf("of %d generated expressions %d were taken by the fast verdict and %d refused by cel-go; the generator should reach both", n, taken, refused)
	}
	t.Logf("%d expressions: %d taken by the fast verdict, %d refused by cel-go", n, taken, refused)
}

// FuzzCELSurelyBool: anything celSurelyBool takes compiles to a boolean.
//
//	go test -run '^$' -fuzz '^FuzzCELSurelyBool$' -fuzztime 2m ./spec
func FuzzCELSurelyBool(f *testing.F) {
	for _, set := range [][]string{celFastValid, celFastRefusedByCEL, celFastOutsideSubset, celSeeds} {
		for _, s := range set {
			f.Add(s)
		}
	}
	env, err := NewCELEnv()
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, expr string) {
		if !celSurelyBool(expr) {
			return
		}
		if _, err := CompileWhen(env, expr); err != nil {
			t.Fatalf("%q: taken by the fast verdict; cel-go says %v", expr, err)
		}
		if strings.TrimSpace(expr) == "" {
			t.Fatalf("%q: empty expression taken", expr)
		}
	})
}
