package authn

import (
	"bytes"
	"encoding/json"
	"strconv"
)

// A JWT's header and claims are read by the small scanner below instead of
// encoding/json into a map: a fresh token then costs one pass over its
// bytes and a few small allocations, and the claims no rule reads are never
// decoded. It accepts exactly what encoding/json accepts (RFC 8259, nesting
// up to encoding/json's 10,000 levels) and decodes values as encoding/json
// decodes them into an `any` (objects map[string]any, arrays []any, numbers
// float64, a number out of float64's range an error, invalid UTF-8 and lone
// surrogates as U+FFFD, a repeated member name: the last one wins). Whatever
// is not a plain ASCII string or scalar is handed to encoding/json itself.
// The differential and fuzz tests in jsonscan_test.go hold it to that.

// maxJSONDepth is encoding/json's nesting limit.
const maxJSONDepth = 10000

// member is one top-level member of a JSON object: byte offsets into the
// document of the name (without its quotes) and of the value.
type member struct {
	nameStart, nameEnd uint32
	valStart, valEnd   uint32
	plainName          bool // the name has no escape and no byte over 0x7f
}

// jsonObject is a validated JSON object and the index of its top-level
// members, in document order.
type jsonObject struct {
	doc     []byte
	members []member
}

// parseObject validates doc as one JSON document and indexes its members;
// ok is false unless it is valid JSON whose top-level value is an object.
// With numbers set, a number out of float64's range anywhere is invalid too
// (encoding/json's error when it decodes into an `any`).
func parseObject(doc []byte, numbers bool, members []member) (jsonObject, bool) {
	s := scanner{b: doc, numbers: numbers}
	s.ws()
	if s.i >= len(s.b) || s.b[s.i] != '{' {
		return jsonObject{}, false
	}
	s.i++
	s.depth = 1
	s.ws()
	if s.i < len(s.b) && s.b[s.i] == '}' {
		s.i++
	} else {
		for {
			s.ws()
			ns := s.i + 1
			plain, ok := s.str()
			if !ok {
				return jsonObject{}, false
			}
			ne := s.i - 1
			s.ws()
			if s.i >= len(s.b) || s.b[s.i] != ':' {
				return jsonObject{}, false
			}
			s.i++
			s.ws()
			vs := s.i
			if !s.value() {
				return jsonObject{}, false
			}
			members = append(members, member{nameStart: uint32(ns), nameEnd: uint32(ne), valStart: uint32(vs), valEnd: uint32(s.i), plainName: plain})
			s.ws()
			if s.i >= len(s.b) {
				return jsonObject{}, false
			}
			if c := s.b[s.i]; c == '}' {
				s.i++
				break
			} else if c != ',' {
				return jsonObject{}, false
			}
			s.i++
		}
	}
	s.ws()
	if s.i != len(s.b) {
		return jsonObject{}, false
	}
	return jsonObject{doc: doc, members: members}, true
}

// scanner walks one JSON document, validating it.
type scanner struct {
	b       []byte
	i       int
	depth   int
	numbers bool
}

func (s *scanner) ws() {
	for s.i < len(s.b) {
		switch s.b[s.i] {
		case ' ', '\t', '\n', '\r':
			s.i++
		default:
			return
		}
	}
}

// value skips one value starting at s.i (no leading space).
func (s *scanner) value() bool {
	if s.i >= len(s.b) {
		return false
	}
	switch c := s.b[s.i]; {
	case c == '"':
		_, ok := s.str()
		return ok
	case c == '{' || c == '[':
		return s.container(c)
	case c == '-' || (c >= '0' && c <= '9'):
		return s.number()
	case c == 't':
		return s.lit("true")
	case c == 'f':
		return s.lit("false")
	case c == 'n':
		return s.lit("null")
	}
	return false
}

func (s *scanner) lit(want string) bool {
	if len(s.b)-s.i < len(want) || string(s.b[s.i:s.i+len(want)]) != want {
		return false
	}
	s.i += len(want)
	return true
}

// container skips an object or an array.
func (s *scanner) container(open byte) bool {
	s.depth++
	if s.depth > maxJSONDepth {
		return false
	}
	closer := byte(']')
	if open == '{' {
		closer = '}'
	}
	s.i++
	s.ws()
	if s.i < len(s.b) && s.b[s.i] == closer {
		s.i++
		s.depth--
		return true
	}
	for {
		s.ws()
		if open == '{' {
			if _, ok := s.str(); !ok {
				return false
			}
			s.ws()
			if s.i >= len(s.b) || s.b[s.i] != ':' {
				return false
			}
			s.i++
			s.ws()
		}
		if !s.value() {
			return false
		}
		s.ws()
		if s.i >= len(s.b) {
			return false
		}
		if c := s.b[s.i]; c == closer {
			s.i++
			s.depth--
			return true
		} else if c != ',' {
			return false
		}
		s.i++
	}
}

// str skips a string; plain reports that it has no escape and no byte over
// 0x7f, so its bytes are its value.
func (s *scanner) str() (plain, ok bool) {
	if s.i >= len(s.b) || s.b[s.i] != '"' {
		return false, false
	}
	s.i++
	plain = true
	for s.i < len(s.b) {
		c := s.b[s.i]
		switch {
		case c == '"':
			s.i++
			return plain, true
		case c < 0x20:
			return false, false
		case c == '\\':
			plain = false
			s.i++
			if s.i >= len(s.b) {
				return false, false
			}
			switch s.b[s.i] {
			case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
				s.i++
			case 'u':
				s.i++
				if len(s.b)-s.i < 4 {
					return false, false
				}
				for _, h := range s.b[s.i : s.i+4] {
					if !isHex(h) {
						return false, false
					}
				}
				s.i += 4
			default:
				return false, false
			}
		default:
			if c >= 0x80 {
				plain = false
			}
			s.i++
		}
	}
	return false, false
}

func isHex(c byte) bool {
	return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F')
}

// number skips -?(0|[1-9][0-9]*)(.[0-9]+)?([eE][+-]?[0-9]+)?.
func (s *scanner) number() bool {
	start := s.i
	if s.b[s.i] == '-' {
		s.i++
	}
	if s.i >= len(s.b) {
		return false
	}
	switch c := s.b[s.i]; {
	case c == '0':
		s.i++
	case c >= '1' && c <= '9':
		s.digits()
	default:
		return false
	}
	if s.i < len(s.b) && s.b[s.i] == '.' {
		s.i++
		if !s.digits() {
			return false
		}
	}
	if s.i < len(s.b) && (s.b[s.i] == 'e' || s.b[s.i] == 'E') {
		s.i++
		if s.i < len(s.b) && (s.b[s.i] == '+' || s.b[s.i] == '-') {
			s.i++
		}
		if !s.digits() {
			return false
		}
	}
	if s.numbers {
		if _, ok := parseNumber(s.b[start:s.i]); !ok {
			return false
		}
	}
	return true
}

// parseNumber is the float64 of a valid JSON number, as encoding/json
// decodes it into an `any`; ok is false when it is out of float64's range.
// An integer of at most 15 digits (every NumericDate) is converted without
// strconv: it is exact in a float64.
func parseNumber(n []byte) (float64, bool) {
	neg := n[0] == '-'
	digits := n
	if neg {
		digits = n[1:]
	}
	if len(digits) <= 15 {
		var v int64
		for _, c := range digits {
			if c < '0' || c > '9' {
				v = -1
				break
			}
			v = v*10 + int64(c-'0')
		}
		if v >= 0 {
			f := float64(v)
			if neg {
				f = -f
			}
			return f, true
		}
	}
	f, err := strconv.ParseFloat(string(n), 64)
	return f, err == nil
}

// digits skips [0-9]+.
func (s *scanner) digits() bool {
	start := s.i
	for s.i < len(s.b) && s.b[s.i] >= '0' && s.b[s.i] <= '9' {
		s.i++
	}
	return s.i > start
}

// nameIs reports whether m's decoded name is name, without allocating for
// a plain name.
func (o *jsonObject) nameIs(m *member, name string) bool {
	if m.plainName {
		return string(o.doc[m.nameStart:m.nameEnd]) == name
	}
	return decodeString(o.doc[m.nameStart-1:m.nameEnd+1]) == name
}

// index is the index of the last member called name (the one
// encoding/json keeps), or -1.
func (o *jsonObject) index(name string) int {
	for i := len(o.members) - 1; i >= 0; i-- {
		if o.nameIs(&o.members[i], name) {
			return i
		}
	}
	return -1
}

// find is the raw value of the last member called name, or nil.
func (o *jsonObject) find(name string) []byte {
	if i := o.index(name); i >= 0 {
		m := &o.members[i]
		return o.doc[m.valStart:m.valEnd]
	}
	return nil
}

// decodeString decodes a valid JSON string literal (with its quotes).
func decodeString(lit []byte) string {
	if plainString(lit) {
		return string(lit[1 : len(lit)-1])
	}
	var s string
	_ = json.Unmarshal(bytes.Clone(lit), &s) // valid by the scan: cannot fail; a copy, so lit does not escape
	return s
}

// plainString reports whether a valid string literal has no escape and no
// byte over 0x7f.
func plainString(lit []byte) bool {
	for _, c := range lit[1 : len(lit)-1] {
		if c == '\\' || c >= 0x80 {
			return false
		}
	}
	return true
}

// decodeValue decodes a valid JSON value as encoding/json decodes it into
// an `any`.
func decodeValue(raw []byte) any {
	switch c := raw[0]; {
	case c == '"':
		return decodeString(raw)
	case c == 't':
		return true
	case c == 'f':
		return false
	case c == 'n':
		return nil
	case c == '-' || (c >= '0' && c <= '9'):
		f, _ := parseNumber(raw) // valid and in range by the scan
		return f
	case c == '[':
		if v, ok := scalarArray(raw); ok {
			return v
		}
	}
	var v any
	_ = json.Unmarshal(bytes.Clone(raw), &v) // valid by the scan: cannot fail; a copy, so raw does not escape
	return v
}

// scalarArray decodes an array of plain strings, numbers, booleans and
// nulls; ok is false for any other array (encoding/json decodes it then).
func scalarArray(raw []byte) ([]any, bool) {
	s := scanner{b: raw, i: 1}
	out := []any{}
	s.ws()
	if s.b[s.i] == ']' {
		return out, true
	}
	for {
		s.ws()
		start := s.i
		if c := s.b[s.i]; c == '[' || c == '{' || !s.value() {
			return nil, false
		}
		v := raw[start:s.i]
		if v[0] == '"' && !plainString(v) {
			return nil, false
		}
		out = append(out, decodeValue(v))
		s.ws()
		if s.b[s.i] == ']' {
			return out, true
		}
		s.i++ // ','
	}
}

// value is the decoded value of the last member called name, nil when
// there is none.
func (o *jsonObject) value(name string) any {
	if v := o.find(name); v != nil {
		return decodeValue(v)
	}
	return nil
}

// stringIs reports whether the raw JSON value v (nil: absent) is a string
// whose decoded value is want.
func stringIs(v []byte, want string) bool {
	if v == nil || v[0] != '"' {
		return false
	}
	if plainString(v) {
		return string(v[1:len(v)-1]) == want
	}
	return decodeString(v) == want
}
