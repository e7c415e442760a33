package spec

import (
	"fmt"
	"regexp/syntax"
	"slices"
	"strings"
	"unicode"
	"unicode/utf8"
)

// MaxRE2ProgramSize is the largest RE2 program Envoy compiles by default:
// its runtime key re2.max_program_size.error_level defaults to 100, and
// the Gatehouse bootstrap does not change it. A route table holding a
// bigger regex is refused (NACKed) as a whole, so validation refuses it
// first.
const MaxRE2ProgramSize = 100

// RE2ProgramSize estimates the size of the program RE2 (the regex engine
// Envoy uses) compiles expr to, the number Envoy compares with
// re2.max_program_size.error_level. The estimate is conservative: it is
// never below what RE2 reports for the same expression, and usually a
// few instructions above it. It models RE2's compiler on the syntax tree
// Go parses (the same RE2 syntax): repetitions are expanded as RE2
// expands them (x{3} is xxx), every byte range of the UTF-8 encoding of a
// character class is an instruction, captures cost two, loops and
// alternatives one or two; RE2's own savings (a literal prefix after ^
// is not compiled, common suffixes and prefixes are shared) are counted
// only where they are certain. The error is the parse error, if any.
func RE2ProgramSize(expr string) (int, error) {
	re, err := syntax.Parse(expr, syntax.Perl)
	if err != nil {
		return 0, err
	}
	return re2ProgramSize(expr, re), nil
}

// re2ProgramSize is RE2ProgramSize of expr, already parsed (with the
// Perl flags) into re.
func re2ProgramSize(expr string, re *syntax.Regexp) int {
	n := re2SizeOf(re)
	// Go merges alternatives such as .|x into one character class; RE2
	// keeps a . (any character) apart. The same expression with every .
	// in its own group, which neither merges, bounds that case.
	if guarded, dots := guardDots(expr); dots > 0 {
		if g, err := re2Size(guarded); err == nil && g-2*dots > n {
			n = g - 2*dots
		}
	}
	return n
}

// guardDots rewrites every . outside a character class and an escape as
// (.), and says how many it rewrote.
func guardDots(expr string) (string, int) {
	var b strings.Builder
	dots, inClass, quoted := 0, false, false
	for i := 0; i < len(expr); i++ {
		c := expr[i]
		switch {
		case quoted:
			if c == '\\' && i+1 < len(expr) && expr[i+1] == 'E' {
				quoted = false
			}
		case c == '\\' && i+1 < len(expr):
			if expr[i+1] == 'Q' {
				quoted = true
			}
			b.WriteByte(c)
			i++
			c = expr[i]
		case inClass:
			if c == '[' && i+1 < len(expr) && expr[i+1] == ':' {
				if end := strings.Index(expr[i:], ":]"); end > 0 {
					b.WriteString(expr[i : i+end+2])
					i += end + 1
					continue
				}
			}
			if c == ']' {
				inClass = false
			}
		case c == '[':
			inClass = true
			// A ] right after [ or [^ is a literal.
			if j := i + 1; j < len(expr) && expr[j] == '^' {
				b.WriteString("[^")
				i++
			} else {
				b.WriteByte('[')
			}
			if i+1 < len(expr) && expr[i+1] == ']' {
				b.WriteByte(']')
				i++
			}
			continue
		case c == '.':
			b.WriteString("(.)")
			dots++
			continue
		}
		b.WriteByte(c)
	}
	return b.String(), dots
}

func re2Size(expr string) (int, error) {
	re, err := syntax.Parse(expr, syntax.Perl)
	if err != nil {
		return 0, err
	}
	return re2SizeOf(re), nil
}

// re2SizeOf is re2Size of a parsed expression.
func re2SizeOf(re *syntax.Regexp) int {
	n := 3 // RE2's fail and match instructions, and a no-op it may keep
	anchored := false
	if re.Op == syntax.OpBeginText {
		anchored = true
	} else if re.Op == syntax.OpConcat && len(re.Sub) > 0 && re.Sub[0].Op == syntax.OpBeginText {
		anchored = true
	}
	if !anchored {
		n += 2 // the unanchored search loop, .*?
	}
	return n + re2Cost(re, anchored)
}

// re2Cost is the number of instructions re compiles to. skipBegin: a
// leading \A (^) is not compiled (RE2 records it as an anchor).
func re2Cost(re *syntax.Regexp, skipBegin bool) int {
	switch re.Op {
	case syntax.OpNoMatch:
		return 0
	case syntax.OpEmptyMatch:
		return 1
	case syntax.OpLiteral:
		n := 0
		for _, r := range re.Rune {
			n += literalCost(r, re.Flags&syntax.FoldCase != 0)
		}
		return n
	case syntax.OpCharClass:
		return classCost(re.Rune)
	case syntax.OpAnyCharNotNL:
		return classCost([]rune{0, '\n' - 1, '\n' + 1, unicode.MaxRune})
	case syntax.OpAnyChar:
		return classCost([]rune{0, unicode.MaxRune})
	case syntax.OpBeginText:
		if skipBegin {
			return 0
		}
		return 1
	case syntax.OpBeginLine, syntax.OpEndLine, syntax.OpEndText, syntax.OpWordBoundary, syntax.OpNoWordBoundary:
		return 1
	case syntax.OpCapture:
		return 2 + re2Cost(re.Sub[0], false)
	case syntax.OpStar, syntax.OpPlus:
		n := 2 + re2Cost(re.Sub[0], false)
		if nullable(re.Sub[0]) {
			// RE2 compiles a loop whose body may match nothing as an
			// optional loop, with the no-ops that keeps priorities.
			n += 2
		}
		if hasLoop(re.Sub[0]) {
			n += 2 // a loop in a loop: RE2 keeps no-ops between them
		}
		return n
	case syntax.OpQuest:
		if nullable(re.Sub[0]) {
			return 2 + re2Cost(re.Sub[0], false)
		}
		return 1 + re2Cost(re.Sub[0], false)
	case syntax.OpRepeat:
		// RE2 expands x{2,4} to xx(x(x)?)? and x{2,} to xx+.
		if re.Max == 0 {
			return 1
		}
		sub := re2Cost(re.Sub[0], false)
		loop, opt := 2, 1
		if nullable(re.Sub[0]) {
			loop, opt = 4, 2
		}
		if hasLoop(re.Sub[0]) {
			// RE2 expands nested repetitions less tidily than Go's
			// Simplify: a margin per copy.
			sub++
			opt++
		}
		if re.Max < 0 {
			return max(re.Min, 1)*sub + loop
		}
		return re.Max*sub + (re.Max-re.Min)*opt
	case syntax.OpConcat:
		n := 0
		for i, s := range re.Sub {
			n += re2Cost(s, skipBegin && i == 0)
		}
		return n
	case syntax.OpAlternate:
		n := len(re.Sub) - 1
		for _, s := range re.Sub {
			n += re2Cost(s, false)
		}
		return n
	}
	panic(fmt.Sprintf("spec: RE2ProgramSize: unhandled regexp op %v", re.Op))
}

// hasLoop reports whether re holds a *, + or counted repetition.
func hasLoop(re *syntax.Regexp) bool {
	switch re.Op {
	case syntax.OpStar, syntax.OpPlus, syntax.OpRepeat:
		return true
	}
	for _, s := range re.Sub {
		if hasLoop(s) {
			return true
		}
	}
	return false
}

// nullable reports whether re can match the empty string.
func nullable(re *syntax.Regexp) bool {
	switch re.Op {
	case syntax.OpEmptyMatch, syntax.OpStar, syntax.OpQuest,
		syntax.OpBeginLine, syntax.OpEndLine, syntax.OpBeginText, syntax.OpEndText,
		syntax.OpWordBoundary, syntax.OpNoWordBoundary:
		return true
	case syntax.OpCapture, syntax.OpPlus:
		return nullable(re.Sub[0])
	case syntax.OpRepeat:
		return re.Min == 0 || nullable(re.Sub[0])
	case syntax.OpConcat:
		for _, s := range re.Sub {
			if !nullable(s) {
				return false
			}
		}
		return true
	case syntax.OpAlternate:
		for _, s := range re.Sub {
			if nullable(s) {
				return true
			}
		}
	}
	return false
}

// literalCost is one literal character: one instruction per UTF-8 byte;
// case-insensitive, every case of it (ASCII letters fold in one).
func literalCost(r rune, fold bool) int {
	if !fold {
		return utf8.RuneLen(r)
	}
	orbit := []rune{r, r}
	ascii := r < utf8.RuneSelf
	for f := unicode.SimpleFold(r); f != r; f = unicode.SimpleFold(f) {
		orbit = append(orbit, f, f)
		ascii = ascii && f < utf8.RuneSelf
	}
	if ascii {
		return 1 // one byte range matching either case
	}
	slices.Sort(orbit)
	return classCost(orbit)
}

// classCost is the instructions of a character class (pairs of lo, hi):
// one per ASCII range; the rest as RE2 encodes it in UTF-8, one leading
// byte range per aligned sequence and continuation byte ranges shared
// where they lead to the same place. All of 0x80-0x10FFFF is RE2's
// compact six-instruction form.
func classCost(ranges []rune) int {
	n := 0
	var wide [][2]rune
	for i := 0; i+1 < len(ranges); i += 2 {
		lo, hi := ranges[i], ranges[i+1]
		if lo < utf8.RuneSelf {
			n++
			if hi < utf8.RuneSelf {
				continue
			}
			lo = utf8.RuneSelf
		}
		wide = append(wide, [2]rune{lo, hi})
	}
	if len(wide) == 0 {
		return n
	}
	if len(wide) == 1 && wide[0] == [2]rune{utf8.RuneSelf, unicode.MaxRune} {
		return n + 6
	}
	c := utf8Counter{nodes: map[utf8Node]int{}}
	for _, w := range wide {
		c.addRange(w[0], w[1])
	}
	return n + c.leading + len(c.nodes)
}

// utf8Node is one continuation byte range and what follows it (an index
// into nodes, or -1 for the end of the character).
type utf8Node struct {
	lo, hi byte
	next   int
}

type utf8Counter struct {
	leading int
	nodes   map[utf8Node]int
}

var utf8Max = [...]rune{0x7f, 0x7ff, 0xffff, unicode.MaxRune}

// addRange splits [lo, hi] into ranges whose runes have one UTF-8 length
// and whose byte sequences are ranges per byte, as RE2's compiler does.
func (c *utf8Counter) addRange(lo, hi rune) {
	if lo > hi {
		return
	}
	for _, m := range utf8Max[:3] {
		if lo <= m && m < hi {
			c.addRange(lo, m)
			c.addRange(m+1, hi)
			return
		}
	}
	if hi < utf8.RuneSelf {
		c.leading++
		return
	}
	n := utf8.RuneLen(lo)
	if n < 0 { // a surrogate: RE2 encodes it like any three-byte rune
		n = 3
	}
	for i := 1; i < n; i++ {
		m := rune(1)<<(6*i) - 1
		if lo&^m != hi&^m {
			if lo&m != 0 {
				c.addRange(lo, lo|m)
				c.addRange((lo|m)+1, hi)
				return
			}
			if hi&m != m {
				c.addRange(lo, (hi&^m)-1)
				c.addRange(hi&^m, hi)
				return
			}
		}
	}
	a, b := encodeRune(lo, n), encodeRune(hi, n)
	next := -1
	for i := n - 1; i >= 1; i-- {
		k := utf8Node{a[i], b[i], next}
		id, ok := c.nodes[k]
		if !ok {
			id = len(c.nodes)
			c.nodes[k] = id
		}
		next = id
	}
	c.leading++
}

// encodeRune is the n-byte UTF-8 form of r, surrogates included.
func encodeRune(r rune, n int) []byte {
	b := make([]byte, n)
	switch n {
	case 2:
		b[0] = 0xc0 | byte(r>>6)
		b[1] = 0x80 | byte(r)&0x3f
	case 3:
		b[0] = 0xe0 | byte(r>>12)
		b[1] = 0x80 | byte(r>>6)&0x3f
		b[2] = 0x80 | byte(r)&0x3f
	case 4:
		b[0] = 0xf0 | byte(r>>18)
		b[1] = 0x80 | byte(r>>12)&0x3f
		b[2] = 0x80 | byte(r>>6)&0x3f
		b[3] = 0x80 | byte(r)&0x3f
	default:
		b[0] = byte(r)
	}
	return b
}
