package spec

import (
	"errors"

	"cel.dev/cel-go/cel"
	"cel.dev/cel-go/checker"
	"cel.dev/cel-go/common"
	celast "cel.dev/cel-go/common/ast"
	"cel.dev/cel-go/parser"
)

// celParsed is the second fast path of CELChecker (after celSurelyBool):
// a `when` expression whose every token is of the plain kinds celPlain
// lets through is parsed by cel-go's own hand-written (Pratt) parser
// instead of its default ANTLR one, which is most of the CPU of a check
// of a new expression, and its tree is type-checked by cel-go's checker,
// so every type rule is cel-go's.
//
// The tree goes to the checker as it is (checker.Check on the native
// AST), not the documented way through a ParsedExpr proto
// (ast.ToProto, cel.ParsedExprToAstWithSource, cel.Env.Check): that round
// trip was about a quarter of the CPU and a third of the bytes of this
// path, and cel.Env has no option for the Pratt parser nor a constructor
// of an Ast from a native tree. So celParsed holds a checker environment
// of its own with env's declarations (celCheckerEnv), and does what
// cel.Env.Check does besides checker.Check only where it can matter here:
// an environment with AST validators is refused (Check would run them),
// and neither the depth limit Check applies to loaded protos nor its node
// count limit (100,000) can be reached through the gate (celParseMaxLen,
// celParseMaxPunct). TestCELCheckSameAsEnvCheck
// holds the checked trees (types and references of every node) equal to
// the old path's over the differential corpora.
//
// This path only ever says "valid": if anything on it fails (the gate,
// the parse, the check, a boolean result, checkWhenConstants; or the
// expression converts a constant, which only planning decides), it
// declines and the caller runs CompileWhen, so every error text stays
// exactly the default parser's and checker's.
//
// Why the gate: the Pratt parser does not accept the same language in
// every corner (it takes an upper-case hex prefix, "0X1F", which the
// default parser refuses; TestCELPrattParserDisagrees). celPlain lets
// through only the plain forms on which both parsers build the very same
// tree, ids and positions included (TestCELParseSameTree,
// FuzzCELParseSameTree): ASCII, identifiers, decimal integers and
// doubles without an exponent (a `u` suffix allowed), strings without
// escapes or prefixes, operators and punctuation; and it bounds length
// and nesting far below both parsers' limits (celParseMaxPunct), so a
// too-deep expression always gets the default parser's own error.
type celParsed struct {
	pratt *parser.Parser
	chk   *checker.Env
}

const (
	// celParseMaxLen bounds the bytes of an expression the fast path
	// parses (longer ones go to the default parser).
	celParseMaxLen = 2048
	// celParseMaxPunct bounds the punctuation bytes of an expression the
	// fast path parses. Each level of nesting either parser counts
	// against its recursion limit (250) needs at least one punctuation
	// byte (a bracket, a dot, an operator, '!', '-', '?'), so no
	// expression with at most this many reaches either limit.
	celParseMaxPunct = 100
)

// newCELParsed builds the fast path for env: env's parser options (its
// macros; NewCELEnv sets no other parser option) with the Pratt parser,
// and a checker environment with env's declarations.
func newCELParsed(env *cel.Env) (*celParsed, error) {
	p, err := parser.NewParser(parser.Macros(env.Macros()...), parser.EnablePrattParser(true))
	if err != nil {
		return nil, err
	}
	chk, err := celCheckerEnv(env)
	if err != nil {
		return nil, err
	}
	return &celParsed{pratt: p, chk: chk}, nil
}

// celCheckerEnv is a checker environment that types what env's own does
// (cel.Env builds its own the same way, once, and keeps it unexported):
// env's container, type provider, variables and enabled functions, and
// the checker's default options, which are env's as NewCELEnv builds it
// (no cross-type numeric comparisons, no JSON field names). It has no
// symbol catalog, which only words the suggestions of errors this path
// never reports. It is built per CELChecker (~10 µs) and only read by
// checker.Check.
func celCheckerEnv(env *cel.Env) (*checker.Env, error) {
	if len(env.Validators()) > 0 {
		return nil, errors.New("the CEL fast path checks without cel.Env.Check, which would run the environment's AST validators")
	}
	chk, err := checker.NewEnv(env.Container, env.CELTypeProvider())
	if err != nil {
		return nil, err
	}
	if err := chk.AddIdents(env.Variables()...); err != nil {
		return nil, err
	}
	for _, fn := range env.Functions() {
		if fn.IsDeclarationDisabled() {
			continue
		}
		if err := chk.AddFunctions(fn); err != nil {
			return nil, err
		}
	}
	return chk, nil
}

// valid reports whether expr is a valid `when` expression, decided on
// the fast path; false means "not decided here" (run CompileWhen).
func (c *celParsed) valid(expr string) bool {
	checked, ok := c.check(expr)
	if !ok || !checked.GetType(checked.Expr().ID()).IsExactType(cel.BoolType) {
		return false
	}
	plan, err := whenConstants(checked)
	return err == nil && !plan
}

// check is the checked tree of expr, when celPlain lets expr through and
// neither the Pratt parse nor the check has an error.
func (c *celParsed) check(expr string) (*celast.AST, bool) {
	parsed, src, ok := c.parseNative(expr)
	if !ok {
		return nil, false
	}
	checked, errs := checker.Check(parsed, src, c.chk)
	if checked == nil || len(errs.GetErrors()) > 0 {
		return nil, false
	}
	return checked, true
}

// parseNative is the unchecked tree of expr from the Pratt parser, and
// its source, when celPlain lets expr through and the parse has no error.
func (c *celParsed) parseNative(expr string) (*celast.AST, common.Source, bool) {
	if !celPlain(expr) {
		return nil, nil, false
	}
	src := common.NewTextSource(expr)
	parsed, errs := c.pratt.Parse(src)
	if parsed == nil || len(errs.GetErrors()) > 0 {
		return nil, nil, false
	}
	return parsed, src, true
}

// celPlain is the gate of the fast path: expr is at most celParseMaxLen
// bytes of printable ASCII, space, tab, CR and LF, with at most
// celParseMaxPunct punctuation bytes, and its tokens are only
// identifiers, decimal numbers (digits, one '.' between digits, an
// optional 'u' or 'U' suffix on an integer), strings in single or double
// quotes without a backslash, a line break or a prefix (r, b), and
// operators and punctuation other than the backquote, a '.' only after
// an operand and before a name. Comments ("//"), triple quotes, hex,
// exponents and a leading-dot name (".identity", which the Pratt parser
// places one byte before the default parser) are refused. Refusing is always
// safe: the default parser then decides.
func celPlain(expr string) bool {
	if len(expr) == 0 || len(expr) > celParseMaxLen {
		return false
	}
	punct := 0
	// operand: the last token ends an operand (a name, a number, a
	// string, a closing bracket); only then may a '.' follow, and only a
	// name may follow that '.' (a leading dot, ".name", is placed
	// differently by the two parsers).
	operand, dot := false, false
	for i := 0; i < len(expr); {
		b := expr[i]
		if dot && b != ' ' && b != '\t' && b != '\r' && b != '\n' && !celIdentStart(b) {
			return false
		}
		switch {
		case b == ' ' || b == '\t' || b == '\r' || b == '\n':
			i++
			continue
		case celIdentStart(b):
			j := i + 1
			for j < len(expr) && (celIdentStart(expr[j]) || celDigit(expr[j])) {
				j++
			}
			if j < len(expr) && (expr[j] == '"' || expr[j] == '\'') {
				return false // a string prefix (r"", b"", ...) or an ident glued to a string
			}
			i, operand, dot = j, true, false
		case celDigit(b):
			j := i + 1
			for j < len(expr) && celDigit(expr[j]) {
				j++
			}
			if j+1 < len(expr) && expr[j] == '.' && celDigit(expr[j+1]) {
				j += 2
				for j < len(expr) && celDigit(expr[j]) {
					j++
				}
				punct++
			} else if j < len(expr) && (expr[j] == 'u' || expr[j] == 'U') {
				j++
			}
			if j < len(expr) && (celIdentStart(expr[j]) || celDigit(expr[j]) || expr[j] == '"' || expr[j] == '\'') {
				return false // hex, exponents, other suffixes, a number glued to a name or string
			}
			i, operand = j, true
		case b == '"' || b == '\'':
			j := i + 1
			for j < len(expr) && expr[j] != b {
				if c := expr[j]; c == '\\' || c < ' ' || c > '~' {
					return false
				}
				j++
			}
			if j == len(expr) {
				return false // unterminated
			}
			if j == i+1 && j+1 < len(expr) && expr[j+1] == b {
				return false // a triple quote
			}
			i, operand = j+1, true
		case b > ' ' && b < '~' && b != '`' && b != '\\':
			if b == '/' && i+1 < len(expr) && expr[i+1] == '/' {
				return false // a comment
			}
			punct++
			if punct > celParseMaxPunct {
				return false
			}
			if b == '.' {
				if !operand {
					return false
				}
				dot = true
			}
			operand = b == ')' || b == ']' || b == '}'
			i++
		default:
			return false // control bytes, non-ASCII, '`', '\\', '~' and DEL
		}
	}
	return !dot
}

func celIdentStart(b byte) bool {
	return b == '_' || (b >= 'a' && b <= 'z') || (b >= 'A' && b <= 'Z')
}

func celDigit(b byte) bool { return b >= '0' && b <= '9' }
