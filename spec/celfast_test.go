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
	// The common calls on string fields.
	`request.ip.startsWith("203.0.113.")`,
	`request.path.endsWith(".json") && !request.path.contains("..")`,
	`"abc".startsWith("a") && 'abc'.endsWith('c') && "abc".contains("b")`,
	`request.path.startsWith(identity.labels.prefix)`,
	`request.path.startsWith("/a" )|| request.path . startsWith ( "/b" )`,
	`(request.path).startsWith("/")`,
	`request["x-path"].contains("a")`,
	`request.path.startsWith(("a"))`,
	`identity.kind == "apiKey" && (identity.labels.plan == "gold" || request.path.startsWith("/api/s0-0001/"))`,
	`identity.labels.plan.matches("^(gold|s0-0001)$")`,
	`request.path.matches("")`,
	`"x".matches("x|y")`,
	`has(identity.claims.sub)`,
	`has(request.headers.x) && has(request["headers"].y)`,
	`has(identity.labels.plan) && identity.labels.plan in ["gold", "s0-0001"] && identity.kind == "apiKey"`,
	`!has(identity.claims.sub)`,
	`has( identity . a . b )`,
	`size(request.path) < 64`,
	`size(identity.labels.plan) == 4 && identity.labels.plan != "x"`,
	`request.path.size() > 0 && "ab".size() == 2`,
	`size("abc") == 3 && size(["a"]) == 1 && size([1, 2]) > 1 && size(request) >= 0`,
	`size(request.a) <= identity.n && identity.m < request.b.size()`,
	`["a"].size() == 1 && request.size() == identity.size()`,
	`"a" in request && request.x in identity`,
	`request.path.startsWith("a") == true`,
	`request.path.contains("a") != request.path.contains("b")`,
	`request.path.startsWith("a") in identity.x`,
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
	// Calls one step from the subset.
	`request.path.startsWith(1)`,                 // no overload
	`1.startsWith("a")`,                          // not a number
	`request.startsWith("a")`,                    // map receiver
	`["a"].startsWith("a")`,                      // list receiver
	`true.contains("a")`,                         // bool receiver
	`request.path.startsWith(null)`,              // no overload
	`request.path.startsWith("a", "b")`,          // two arguments
	`request.path.startsWith()`,                  // no argument
	`request.path.startsWith("a"`,                // unbalanced
	`request.path.startsWith("a"))`,              // unbalanced
	`startsWith(request.path, "a")`,              // no global overload
	`request.path.endsWith(request)`,             // map argument
	`request.path.contains(["a"])`,               // list argument
	`request.path.contains(1 == 1)`,              // bool argument
	`request.path.startsWith("a").x`,             // select on a bool
	`request.path.startsWith("a") == "a"`,        // bool == string
	`request.path.startsWith("a") && 1`,          // && of an int
	`request.path.matches(1)`,                    // no overload
	`request.path.matches("a", "b")`,             // two arguments
	`request.path.matches()`,                     // no argument
	`request.matches("a")`,                       // map receiver
	`1 in request`,                               // int key in map(string, _)
	`true in request`,                            // bool key in map(string, _)
	`request in request`,                         // map key
	`has(request)`,                               // has() of an identifier
	`has(request["x"])`,                          // has() of an index
	`has(request.x["y"])`,                        // has() of an index
	`has(request.x, 1)`,                          // two arguments
	`has()`,                                      // no argument
	`has("a")`,                                   // not a selection
	`has(request.x) == 1`,                        // bool == int
	`has(x.y)`,                                   // undeclared reference
	`has(request.x.in)`,                          // keyword as a field
	`size(request.path)`,                         // int, not bool
	`size(request.path) == "4"`,                  // int == string
	`size(request.path) > 4u`,                    // int > uint
	`size(1) == 1`,                               // no overload
	`size(true) == 1`,                            // no overload
	`size(null) == 1`,                            // no overload
	`size(request.path, 1) == 1`,                 // two arguments
	`size() == 0`,                                // no argument
	`request.path.size(1) == 1`,                  // an argument
	`true.size() == 1`,                           // no overload
	`1.size() == 1`,                              // not a number
	`!size("a")`,                                 // ! of an int
	`request.path.size() && true`,                // && of an int
	`request.path.startsWith`,                    // a dyn field, not bool
	`request.path.bogus("a")`,                    // undeclared function
	`sizes(request.path) == 1`,                   // undeclared function
	`size(size(request.path) == 1) == 0 || true`, // size of a bool
	`request.path.lowerAscii() == "a"`,           // not in the environment
	`identity.x.startsWith("a", )`,               // trailing comma
	`request.path.startsWith("a"[0])`,            // index of a string
	`request.path.matches("(")`,                  // a literal pattern Go's regexp refuses (the authz sidecar refuses the policy)
	`request.path.matches("a{1001}")`,            // a repeat count over Go's 1000
}

// celFastTooDeep are member chains deeper than cel-go's parser goes
// ("max recursion depth exceeded"); the fast verdict took them before
// celFastMaxSteps (main at 934da55 took the first and the last: it
// validated them, and the authz sidecar, which compiles with cel-go,
// refused them).
var celFastTooDeep = []string{
	`identity` + strings.Repeat(".a", 250) + ` == "x"`,
	`has(identity` + strings.Repeat(".a", 300) + `)`,
	`identity` + strings.Repeat(`["a"].a`, 130) + ` == "x"`,
}

func init() { celFastRefusedByCEL = append(celFastRefusedByCEL, celFastTooDeep...) }

// celFastOutsideSubset are valid boolean expressions the subset leaves to
// cel-go (calls, macros, other literal forms, chained relations, ...).
var celFastOutsideSubset = []string{
	`identity.claims.groups.exists(g, g == "ops")`,
	`identity.claims.groups.all(g, g != "ops")`,
	`identity.kind + "/" + identity.labels.plan == "apiKey/gold"`,
	`identity.kind == "a" && (identity.labels.plan == "x" ? false : identity.labels.plan == "gold")`,
	`size(identity.labels.plan) * 2 == 8`,
	`size(identity.scopes) + 1 > 1`,
	`request.path.matches(identity.re)`,
	`request.path.matches("\\d")`,
	`matches(request.path, "a")`,
	`request.path.matches(("a"))`,
	`has(request.x) && has((request).y)`,
	`identity.kind in ["a"] && "a" in {"a": 1}`,
	`size([]) == 0`,
	`size(request.path) == -1`,
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
	env := testCELEnv(t)
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
	"relop":   {{"==", "!=", "<", "<=", ">", ">=", "in"}, {"=", "===", "=<", "<>", "+", "-", "*", "%"}},
	"logic":   {{"&&", "||"}, {"&", "|", "?", "^", "and"}},
	"not":     {{"!"}, {"!!", "-", "~"}},
	"ws":      {{"", " ", " ", " ", "\t", "\n", "\r"}, {"\f", "//", "\v"}},
	"method":  {{"startsWith", "endsWith", "contains", "matches", "size"}, {"exists", "lowerAscii", "has", "startswith", "in", "all"}},
	"global":  {{"size", "has"}, {"matches", "startsWith", "sizes", "int", "string"}},
	"pattern": {{`"^a$"`, `"a|b"`, `""`, `'x+'`, `"^(gold|s0-0001)$"`, `"[a-z]"`}, {`"("`, `"a{1001}"`, `"\\d"`, `"[z-a]"`, `1`, `request.x`}},
	"junk":    {{""}, {"!", "&&", "(", ")", "[", "]", ".", ",", "?", ":", "{", "}", "`", "\\", "@", "#", ";", "'", `"`}},
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
	var member func() string
	// args are a call's arguments: n (or, sometimes when bad, another
	// count) of members or whole expressions.
	args := func(n int) string {
		if bad > 0 && r.IntN(bad) == 0 {
			n = r.IntN(3)
		}
		var a []string
		for range n {
			switch r.IntN(6) {
			case 0:
				if depth < 3 {
					a = append(a, celFastExpr(r, depth+1, bad))
					continue
				}
			case 1, 2:
				a = append(a, []string{`"a"`, `'/x/'`, `""`, `identity.labels.p`, `request["h"]`}[r.IntN(5)])
				continue
			}
			a = append(a, member())
		}
		return "(" + pick("ws") + strings.Join(a, ","+pick("ws")) + ")"
	}
	call := func(recv string) string {
		switch m := pick("method"); m {
		case "size":
			return recv + "." + m + args(0)
		case "matches":
			if r.IntN(3) > 0 {
				return recv + "." + m + "(" + pick("pattern") + ")"
			}
			return recv + "." + m + args(1)
		default:
			return recv + "." + m + args(1)
		}
	}
	member = func() string {
		switch r.IntN(10) {
		case 0, 1:
			return pick("literal")
		case 2:
			if depth < 3 {
				return "(" + pick("ws") + celFastExpr(r, depth+1, bad) + pick("ws") + ")"
			}
		case 3:
			if depth < 3 {
				if g := pick("global"); g == "has" && r.IntN(4) > 0 {
					s := pick("ident")
					for n := r.IntN(3); n >= 0; n-- {
						if r.IntN(5) == 0 {
							s += `["` + pick("field") + `"]`
						} else {
							s += "." + pick("field")
						}
					}
					return g + "(" + s + ")"
				} else {
					return g + args(1)
				}
			}
		}
		if depth < 3 && r.IntN(3) == 0 {
			if r.IntN(4) == 0 {
				return call(pick("literal"))
			}
			return call(pick("ident") + "." + pick("field"))
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
	env := testCELEnv(t)
	chk := testCELChecker(t)
	r := rand.New(rand.NewPCG(15, 4))
	const n = 3000
	var taken, takenCalls, refused int
	for range n {
		expr := celFastExpr(r, 0, []int{0, 8, 20, 40}[r.IntN(4)])
		_, want := CompileWhen(env, expr)
		if celSurelyBool(expr) {
			taken++
			for _, c := range []string{"startsWith(", "endsWith(", "contains(", "matches(", "size(", "has("} {
				if strings.Contains(expr, c) {
					takenCalls++
					break
				}
			}
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
	if taken < n/20 || takenCalls < n/60 || refused < n/4 {
		t.Fatalf("of %d generated expressions %d were taken by the fast verdict (%d with calls) and %d refused by cel-go; the generator should reach both", n, taken, takenCalls, refused)
	}
	t.Logf("%d expressions: %d taken by the fast verdict (%d with calls), %d refused by cel-go", n, taken, takenCalls, refused)
}

// celFastCalls is a product of receivers, methods and argument lists
// (the calls the fast verdict takes, and their neighbours: other
// receivers and argument types, counts and methods), and size and has
// over the same receivers.
func celFastCalls() []string {
	recvs := []string{`request.path`, `request["h"].x`, `"abc"`, `1`, `true`, `null`, `["a"]`, `request`, `(request.path)`, `request.path.startsWith("a")`, `size("a")`}
	methods := []string{"startsWith", "endsWith", "contains", "matches", "size", "exists", "lowerAscii"}
	args := []string{``, `"a"`, `"^(a|b)$"`, `"("`, `request.x`, `1`, `true`, `null`, `["a"]`, `request`, `"a", "b"`, `("a")`}
	var calls []string
	for _, r := range recvs {
		for _, m := range methods {
			for _, a := range args {
				calls = append(calls, r+"."+m+"("+a+")")
			}
		}
		calls = append(calls, "size("+r+")", "has("+r+")", "has("+r+".f)", "size("+r+", 1)")
	}
	return calls
}

// TestCELFastCallsAgree: every receiver, method and argument list of a
// small product (the calls the fast verdict takes, and their neighbours:
// other receivers and argument types, counts, methods, size and has over
// the same operands), each used as a whole expression and inside a
// relation, against cel-go: what the fast verdict takes, cel-go compiles
// to a boolean, and the fast verdict takes every call of the intended
// shapes (so the product reaches the new paths).
func TestCELFastCallsAgree(t *testing.T) {
	env := testCELEnv(t)
	calls := celFastCalls()
	wraps := []string{"%s", "%s == true", "%s > 0", "!%s", "%s && request.y", "request.k in [%s]", "%s in identity.x"}
	// intended: the calls the fast verdict must take as they stand.
	intended := map[string]bool{}
	for _, r := range []string{`request.path`, `request["h"].x`, `"abc"`, `(request.path)`} {
		for _, m := range []string{"startsWith", "endsWith", "contains"} {
			for _, a := range []string{`"a"`, `"^(a|b)$"`, `"("`, `request.x`, `("a")`} {
				intended[r+"."+m+"("+a+")"] = true
			}
		}
		for _, a := range []string{`"a"`, `"^(a|b)$"`} {
			intended[r+".matches("+a+")"] = true
		}
	}
	intended[`has(request.path.f)`] = true
	intended[`has(request.f)`] = true
	var taken, n int
	for _, c := range calls {
		for _, w := range wraps {
			expr := strings.Replace(w, "%s", c, 1)
			n++
			fast := celSurelyBool(expr)
			if w == "%s" && intended[c] && !fast {
				t.Errorf("%q: not taken by the fast verdict", expr)
			}
			if !fast {
				continue
			}
			taken++
			if _, err := CompileWhen(env, expr); err != nil {
				t.Errorf("%q: taken by the fast verdict; cel-go says %v", expr, err)
			}
		}
	}
	t.Logf("%d expressions, %d taken by the fast verdict", n, taken)
}

// TestCELFastStaysUnderCELDepth: cel-go's parser refuses an expression
// nested deeper than its recursion limit, and a member chain nests one
// level per step; the fast verdict bounds the steps of the whole
// expression (celFastMaxSteps) besides its parentheses (celFastMaxDepth).
// The deepest expressions it takes, built to stack every kind of nesting
// it has on one path, compile in cel-go; one step more is left to cel-go.
func TestCELFastStaysUnderCELDepth(t *testing.T) {
	env := testCELEnv(t)
	steps := func(n int) string { return strings.Repeat(".a", n) }
	// parens: celFastMaxDepth levels of parentheses, each followed by
	// perLevel steps, around a chain of first steps.
	parens := func(first, perLevel int) string {
		x := "identity" + steps(first)
		for range celFastMaxDepth {
			x = "(" + x + ")" + steps(perLevel)
		}
		return x + ` == "x"`
	}
	// bools: celFastMaxDepth-1 levels of !, &&, || and a relation, each in
	// parentheses, around a call on a chain of n steps (the call is one
	// step, and its argument the last level).
	bools := func(n int) string {
		x := "identity" + steps(n-1) + `.startsWith("x")`
		for range celFastMaxDepth - 1 {
			x = `!(true && ` + x + ` == true || false)`
		}
		return x
	}
	max := celFastMaxSteps
	for _, c := range []struct {
		name string
		expr string
		fast bool
	}{
		{name: "chain", expr: "identity" + steps(max) + ` == "x"`, fast: true},
		{name: "chain+1", expr: "identity" + steps(max+1) + ` == "x"`},
		{name: "index chain", expr: "identity" + strings.Repeat(`["a"]`, max) + ` == "x"`, fast: true},
		{name: "has", expr: "has(identity" + steps(max) + ")", fast: true},
		{name: "has+1", expr: "has(identity" + steps(max+1) + ")"},
		{name: "parens", expr: parens(max-celFastMaxDepth*(max/celFastMaxDepth-1), max/celFastMaxDepth-1), fast: true},
		{name: "parens+1", expr: parens(max-celFastMaxDepth*(max/celFastMaxDepth-1)+1, max/celFastMaxDepth-1)},
		{name: "bools", expr: bools(max), fast: true},
		{name: "bools+1", expr: bools(max + 1)},
		{name: "call arguments", expr: "identity" + steps(max/2-1) + ".startsWith(identity" + steps(max/2) + ")", fast: true},
		{name: "size", expr: "size(identity" + steps(max) + ") > 0", fast: true},
		{name: "two chains", expr: "identity" + steps(max/2) + ` == "x" && identity` + steps(max/2+1) + ` == "y"`},
	} {
		if got := celSurelyBool(c.expr); got != c.fast {
			t.Errorf("%s: fast verdict %v, want %v (%d bytes)", c.name, got, c.fast, len(c.expr))
		}
		if _, err := CompileWhen(env, c.expr); err != nil {
			t.Errorf("%s: cel-go refuses it: %v", c.name, err)
		}
	}
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
	env := testCELEnv(f)
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

// FuzzCELFastGenerated: FuzzCELSurelyBool over celFastExpr's generated
// expressions (the fuzzer picks the generator's seed and how often a bad
// piece is taken), which reach the calls and relations of the subset far
// more often than byte mutations do. Whatever the fast verdict takes,
// cel-go compiles to a boolean.
//
//	go test -run '^$' -fuzz '^FuzzCELFastGenerated$' -fuzztime 60s ./spec
func FuzzCELFastGenerated(f *testing.F) {
	for i := range 16 {
		f.Add(uint64(i), uint64(i*7919), uint8(i%5*10))
	}
	env := testCELEnv(f)
	f.Fuzz(func(t *testing.T, s1, s2 uint64, bad uint8) {
		expr := celFastExpr(rand.New(rand.NewPCG(s1, s2)), 0, int(bad%64))
		if !celSurelyBool(expr) {
			return
		}
		if _, err := CompileWhen(env, expr); err != nil {
			t.Fatalf("%q: taken by the fast verdict; cel-go says %v", expr, err)
		}
	})
}
