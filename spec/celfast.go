package spec

// celSurelyBool is a fast verdict for the common shape of `when`
// expressions: comparisons of request and identity fields with literals,
// the common calls on string fields, joined by &&, || and !. It answers
// true only when the expression is in that small subset of CEL and, by
// the rules below, compiles in the NewCELEnv environment to a boolean;
// CompileWhen then reports nil for it. On false nothing is decided: the
// caller compiles the expression with cel-go (whose parser costs ~60 µs
// per expression), which gives every error its text. So this function
// may refuse a valid expression, never accept an invalid one
// (TestCELSurelyBoolAgrees, FuzzCELSurelyBool).
//
// The subset (a strict part of CEL's grammar; anything else is refused):
//
//	expr    = and { "||" and }
//	and     = rel { "&&" rel }
//	rel     = unary [ relop unary ]            relop: == != < <= > >= in
//	unary   = [ "!" ] member                   (one !; !! is refused)
//	member  = primary { "." ident [ call ] | "[" string "]" }
//	call    = "(" [ expr ] ")"                 (see method)
//	primary = ident | string | int | true | false | null
//	        | "(" expr ")" | "[" literal { "," literal } "]"
//	        | "size" "(" expr ")" | "has" "(" field ")"
//	field   = ident { "." ident | "[" string "]" }, ending in "." ident
//
// Identifiers are ASCII letters, digits and _, never a CEL keyword or
// reserved word; a root identifier is request or identity (size and has
// only as the calls above). Strings are
// single- or double-quoted printable ASCII without backslash or newline
// (no raw, triple-quoted or bytes forms). Integers are decimal without a
// leading zero or suffix, at most 18 digits. Whitespace is space, tab,
// CR and LF; comments, non-ASCII bytes and other characters are refused.
// The length, nesting and member steps are bounded far below cel-go's
// limits.
//
// Types: request and identity are map(string, dyn); a field or a string
// index of them, or of a dyn, is dyn. A list literal has elements of one
// type, string or int. == and != take two operands of one type (bool,
// string, int, null) or a dyn with any of those; ordering takes two ints,
// two strings, or a dyn with an int, a string or a dyn; `in` takes a
// list whose element type is the left operand's (or the left operand is
// dyn), a dyn on the right with a bool, string, int or dyn on the left,
// or request/identity on the right with a string or dyn on the left;
// !, && and || take bool or dyn. Every one of these yields bool. The
// calls: x.startsWith(y), x.endsWith(y) and x.contains(y) take a string
// or dyn x and y and yield bool; x.matches("re") takes a string or dyn x
// and a string literal that celPattern (CheckRegexp) accepts, and yields bool;
// size(x) and x.size() take a string, list, map or dyn and yield int;
// has(request.a.b) yields bool. The whole expression must be bool (not
// dyn), as CompileWhen requires.
func celSurelyBool(expr string) bool {
	if len(expr) == 0 || len(expr) > celFastMaxLen {
		return false
	}
	p := celFast{src: expr, ok: true}
	p.next()
	t := p.expr(0)
	return p.ok && p.tok == tkEOF && t == tyBool
}

const (
	celFastMaxLen   = 2048
	celFastMaxDepth = 16
	// celFastMaxSteps bounds the member steps (".f", "[k]", calls and the
	// steps inside has()) of the whole expression. cel-go's parser
	// refuses an expression nested deeper than 250 ("max recursion depth
	// exceeded"), and every step of a member chain nests one level (250
	// selects in a row are refused): with at most 64 steps in all and 16
	// levels of parentheses, no path through the expression comes near
	// (TestCELFastStaysUnderCELDepth).
	celFastMaxSteps = 64
)

type celTok uint8

const (
	tkBad celTok = iota
	tkEOF
	tkIdent
	tkString
	tkInt
	tkTrue
	tkFalse
	tkNull
	tkIn
	tkEq    // ==
	tkNe    // !=
	tkLt    // <
	tkLe    // <=
	tkGt    // >
	tkGe    // >=
	tkAnd   // &&
	tkOr    // ||
	tkNot   // !
	tkDot   // .
	tkComma // ,
	tkLParen
	tkRParen
	tkLBrack
	tkRBrack
)

type celType uint8

const (
	tyBad celType = iota
	tyBool
	tyString
	tyInt
	tyNull
	tyDyn
	tyMap // request, identity: map(string, dyn)
	tyListString
	tyListInt
)

// celReserved holds CEL's keywords and reserved words: none may be an
// identifier (in, true, false and null are tokens of their own).
var celReserved = map[string]bool{
	"as": true, "break": true, "const": true, "continue": true, "else": true,
	"for": true, "function": true, "if": true, "import": true, "let": true,
	"loop": true, "package": true, "namespace": true, "return": true,
	"var": true, "void": true, "while": true,
}

type celFast struct {
	src   string
	pos   int
	tok   celTok
	text  string // identifier text of tkIdent
	start int    // where the current token starts in src
	steps int    // member steps so far (celFastMaxSteps)
	ok    bool
}

func (p *celFast) fail() celType {
	p.ok = false
	p.tok = tkBad
	return tyBad
}

// next reads the next token into p.tok; an unknown character is tkBad.
func (p *celFast) next() {
	if !p.ok {
		return
	}
	s := p.src
	for p.pos < len(s) && (s[p.pos] == ' ' || s[p.pos] == '\t' || s[p.pos] == '\n' || s[p.pos] == '\r') {
		p.pos++
	}
	if p.pos == len(s) {
		p.tok = tkEOF
		return
	}
	p.start = p.pos
	c := s[p.pos]
	two := func(second byte, yes, no celTok) {
		if p.pos+1 < len(s) && s[p.pos+1] == second {
			p.pos += 2
			p.tok = yes
			return
		}
		p.pos++
		p.tok = no
	}
	switch {
	case isCELLetter(c):
		start := p.pos
		for p.pos < len(s) && (isCELLetter(s[p.pos]) || isCELDigit(s[p.pos])) {
			p.pos++
		}
		p.text = s[start:p.pos]
		switch p.text {
		case "true":
			p.tok = tkTrue
		case "false":
			p.tok = tkFalse
		case "null":
			p.tok = tkNull
		case "in":
			p.tok = tkIn
		default:
			if celReserved[p.text] {
				p.tok = tkBad
			} else {
				p.tok = tkIdent
			}
		}
		// A quote right after an identifier is another token form
		// (r"..", b"..") or not CEL: refuse.
		if p.pos < len(s) && (s[p.pos] == '"' || s[p.pos] == '\'') {
			p.tok = tkBad
		}
	case isCELDigit(c):
		start := p.pos
		for p.pos < len(s) && isCELDigit(s[p.pos]) {
			p.pos++
		}
		n := p.pos - start
		// No leading zero (octal-looking, or 0x..), no suffix or fraction
		// (1u, 1.0, 1e3), no overflow.
		if (s[start] == '0' && n > 1) || n > 18 ||
			(p.pos < len(s) && (isCELLetter(s[p.pos]) || s[p.pos] == '.' || s[p.pos] == '"' || s[p.pos] == '\'')) {
			p.fail()
			return
		}
		p.tok = tkInt
	case c == '"' || c == '\'':
		q := c
		p.pos++
		for p.pos < len(s) && s[p.pos] != q {
			b := s[p.pos]
			if b < 0x20 || b > 0x7e || b == '\\' {
				p.fail()
				return
			}
			p.pos++
		}
		if p.pos == len(s) {
			p.fail()
			return
		}
		p.pos++
		// Two quotes in a row after a string ("""x""", '''x''', or
		// adjacent strings) are not this subset's.
		if p.pos < len(s) && (s[p.pos] == '"' || s[p.pos] == '\'') {
			p.fail()
			return
		}
		p.tok = tkString
	case c == '=':
		if p.pos+1 < len(s) && s[p.pos+1] == '=' {
			p.pos += 2
			p.tok = tkEq
		} else {
			p.tok = tkBad
		}
	case c == '!':
		two('=', tkNe, tkNot)
	case c == '<':
		two('=', tkLe, tkLt)
	case c == '>':
		two('=', tkGe, tkGt)
	case c == '&':
		if p.pos+1 < len(s) && s[p.pos+1] == '&' {
			p.pos += 2
			p.tok = tkAnd
		} else {
			p.tok = tkBad
		}
	case c == '|':
		if p.pos+1 < len(s) && s[p.pos+1] == '|' {
			p.pos += 2
			p.tok = tkOr
		} else {
			p.tok = tkBad
		}
	case c == '.':
		p.pos++
		p.tok = tkDot
	case c == ',':
		p.pos++
		p.tok = tkComma
	case c == '(':
		p.pos++
		p.tok = tkLParen
	case c == ')':
		p.pos++
		p.tok = tkRParen
	case c == '[':
		p.pos++
		p.tok = tkLBrack
	case c == ']':
		p.pos++
		p.tok = tkRBrack
	default:
		p.tok = tkBad
	}
	if p.tok == tkBad {
		p.ok = false
	}
}

func isCELLetter(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c == '_'
}

func isCELDigit(c byte) bool { return c >= '0' && c <= '9' }

// boolish: an operand of !, && and ||.
func boolish(t celType) bool { return t == tyBool || t == tyDyn }

// expr = and { "||" and }
func (p *celFast) expr(depth int) celType {
	if depth > celFastMaxDepth {
		return p.fail()
	}
	return p.boolChain(tkOr, p.and, depth)
}

// and = rel { "&&" rel }
func (p *celFast) and(depth int) celType { return p.boolChain(tkAnd, p.rel, depth) }

// boolChain reads operand { op operand }, where op is && or ||: one
// operand keeps its type; two or more must each be bool or dyn, and the
// chain is bool.
func (p *celFast) boolChain(op celTok, operand func(int) celType, depth int) celType {
	t := operand(depth)
	for p.ok && p.tok == op {
		p.next()
		u := operand(depth)
		if !boolish(t) || !boolish(u) {
			return p.fail()
		}
		t = tyBool
	}
	if !p.ok {
		return tyBad
	}
	return t
}

// rel = unary [ relop unary ]
func (p *celFast) rel(depth int) celType {
	l := p.unary(depth)
	if !p.ok {
		return tyBad
	}
	op := p.tok
	switch op {
	case tkEq, tkNe, tkLt, tkLe, tkGt, tkGe, tkIn:
	default:
		return l
	}
	p.next()
	r := p.unary(depth)
	if !p.ok {
		return tyBad
	}
	// A second relational operator (a == b == c) is refused.
	switch p.tok {
	case tkEq, tkNe, tkLt, tkLe, tkGt, tkGe, tkIn:
		return p.fail()
	}
	scalar := func(t celType) bool { return t == tyBool || t == tyString || t == tyInt || t == tyNull }
	switch op {
	case tkEq, tkNe:
		if (scalar(l) || l == tyDyn) && (l == r || l == tyDyn && scalar(r) || r == tyDyn && scalar(l)) {
			return tyBool
		}
	case tkLt, tkLe, tkGt, tkGe:
		ordered := func(t celType) bool { return t == tyString || t == tyInt }
		if ordered(l) && l == r || l == tyDyn && (ordered(r) || r == tyDyn) || r == tyDyn && ordered(l) {
			return tyBool
		}
	case tkIn:
		switch r {
		case tyListString:
			if l == tyString || l == tyDyn {
				return tyBool
			}
		case tyListInt:
			if l == tyInt || l == tyDyn {
				return tyBool
			}
		case tyDyn:
			if l == tyBool || l == tyString || l == tyInt || l == tyDyn {
				return tyBool
			}
		case tyMap:
			if l == tyString || l == tyDyn {
				return tyBool
			}
		}
	}
	return p.fail()
}

// unary = [ "!" ] member
func (p *celFast) unary(depth int) celType {
	if p.tok != tkNot {
		return p.member(depth)
	}
	p.next()
	if p.tok == tkNot {
		return p.fail()
	}
	t := p.member(depth)
	if !p.ok || !boolish(t) {
		return p.fail()
	}
	return tyBool
}

// member = primary { "." ident [ call ] | "[" string "]" }
func (p *celFast) member(depth int) celType {
	t := p.primary(depth)
	for p.ok {
		if p.tok == tkDot || p.tok == tkLBrack {
			if p.steps++; p.steps > celFastMaxSteps {
				return p.fail()
			}
		}
		switch p.tok {
		case tkDot:
			p.next()
			if p.tok != tkIdent {
				return p.fail()
			}
			name := p.text
			p.next()
			if p.tok == tkLParen {
				t = p.method(t, name, depth)
				continue
			}
			if t != tyMap && t != tyDyn {
				return p.fail()
			}
			t = tyDyn
		case tkLBrack:
			p.next()
			if p.tok != tkString || (t != tyMap && t != tyDyn) {
				return p.fail()
			}
			p.next()
			if p.tok != tkRBrack {
				return p.fail()
			}
			p.next()
			t = tyDyn
		default:
			return t
		}
	}
	return tyBad
}

// stringish: a receiver or argument of the string functions.
func stringish(t celType) bool { return t == tyString || t == tyDyn }

// sizeable: what size() takes (string, list, map; dyn may be any).
func sizeable(t celType) bool {
	return t == tyString || t == tyDyn || t == tyMap || t == tyListString || t == tyListInt
}

// method reads the call "(" args ")" of recv.name, p.tok being "(":
//
//	startsWith, endsWith, contains (string, string) -> bool
//	matches (string, string literal) -> bool
//	size () -> int (string, list or map)
//
// where string may be dyn. A pattern that celPattern refuses (cel-go's
// path gives it its error, checkWhenConstants), a
// pattern that is not a literal, any other name or argument count is
// left to cel-go.
func (p *celFast) method(recv celType, name string, depth int) celType {
	p.next()
	switch name {
	case "startsWith", "endsWith", "contains":
		if !stringish(recv) {
			return p.fail()
		}
		if a := p.expr(depth + 1); !p.ok || !stringish(a) {
			return p.fail()
		}
		p.closeCall()
		return tyBool
	case "matches":
		if !stringish(recv) || p.tok != tkString {
			return p.fail()
		}
		pattern := p.src[p.start+1 : p.pos-1]
		p.next()
		if !p.ok || celPattern(pattern) != nil {
			return p.fail()
		}
		p.closeCall()
		return tyBool
	case "size":
		if !sizeable(recv) {
			return p.fail()
		}
		p.closeCall()
		return tyInt
	}
	return p.fail()
}

// closeCall reads the ")" that ends a call's arguments.
func (p *celFast) closeCall() {
	if p.ok && p.tok == tkRParen {
		p.next()
		return
	}
	p.fail()
}

// hasArg reads the argument of has( ... ) up to its ")": a field
// selection of request or identity, i.e. the root, then ".field" and
// ["key"] steps, the last a ".field" (has() of an index is an error).
func (p *celFast) hasArg() celType {
	if p.tok != tkIdent || (p.text != "request" && p.text != "identity") {
		return p.fail()
	}
	p.next()
	lastField := false
	for p.ok && p.tok != tkRParen {
		if p.steps++; p.steps > celFastMaxSteps {
			return p.fail()
		}
		switch p.tok {
		case tkDot:
			p.next()
			if p.tok != tkIdent {
				return p.fail()
			}
			p.next()
			lastField = true
		case tkLBrack:
			p.next()
			if p.tok != tkString {
				return p.fail()
			}
			p.next()
			if p.tok != tkRBrack {
				return p.fail()
			}
			p.next()
			lastField = false
		default:
			return p.fail()
		}
	}
	if !p.ok || !lastField {
		return p.fail()
	}
	p.next()
	return tyBool
}

// primary = ident | literal | "(" expr ")" | "[" literal { "," literal } "]"
func (p *celFast) primary(depth int) celType {
	switch p.tok {
	case tkIdent:
		name := p.text
		p.next()
		switch {
		case p.tok != tkLParen && (name == "request" || name == "identity"):
			return tyMap
		case p.tok == tkLParen && name == "size":
			p.next()
			if a := p.expr(depth + 1); !p.ok || !sizeable(a) {
				return p.fail()
			}
			p.closeCall()
			return tyInt
		case p.tok == tkLParen && name == "has":
			p.next()
			return p.hasArg()
		}
		return p.fail()
	case tkString:
		p.next()
		return tyString
	case tkInt:
		p.next()
		return tyInt
	case tkTrue, tkFalse:
		p.next()
		return tyBool
	case tkNull:
		p.next()
		return tyNull
	case tkLParen:
		p.next()
		t := p.expr(depth + 1)
		if !p.ok || p.tok != tkRParen {
			return p.fail()
		}
		p.next()
		return t
	case tkLBrack:
		p.next()
		var elem celType
		for {
			var t celType
			switch p.tok {
			case tkString:
				t = tyString
			case tkInt:
				t = tyInt
			default:
				return p.fail()
			}
			if elem != tyBad && elem != t {
				return p.fail()
			}
			elem = t
			p.next()
			if p.tok == tkRBrack {
				p.next()
				if elem == tyString {
					return tyListString
				}
				return tyListInt
			}
			if p.tok != tkComma {
				return p.fail()
			}
			p.next()
		}
	}
	return p.fail()
}
