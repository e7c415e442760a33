package spec

import (
	"reflect"
	"strconv"
	"sync"
	"unicode/utf8"
)

// The JSON fast path. The broker store and the S3 source hold specs as
// canonical JSON, and parsing that through yaml.v3 (a YAML 1.2 parser that
// builds a node tree, then a reflective decode of the tree) costs most of
// a cold compile. parseJSON decodes a JSON object straight into an
// EdgeRoute and records the same field lines the YAML walker records (the
// lines also answer validation's presence checks).
//
// It only ever takes input it can decode exactly as the YAML path would,
// without a problem to report: a strict subset of JSON (ASCII, no
// duplicate keys, exact field names, the JSON kind each Go field expects,
// jwks as a string). On anything else — an unknown field, a type mismatch,
// a syntax error, a value yaml.v3 would read differently — it gives up and
// Parse takes the YAML path, so every error a JSON document gets is the
// YAML path's error, with the same path, line and wording. The
// differential tests (json_test.go) hold it to that.

// parseJSON decodes data, a single JSON object, into a Document; ok is
// false when the YAML path must decide.
func parseJSON(file string, data []byte) (d *Document, ok bool) {
	p := jsonDecoder{b: data, line: 1}
	p.ws()
	if p.i >= len(p.b) || p.b[p.i] != '{' {
		return nil, false
	}
	d = &Document{File: file, lines: make(map[string]int, 128)}
	p.lines = d.lines
	d.lines[""] = p.line
	if !p.object(reflect.ValueOf(&d.EdgeRoute).Elem(), planOf(edgeRouteType), "") {
		return nil, false
	}
	p.ws()
	if p.i != len(p.b) {
		return nil, false
	}
	return d, true
}

var (
	edgeRouteType  = reflect.TypeFor[EdgeRoute]()
	durationType   = reflect.TypeFor[Duration]()
	inlineJWKSType = reflect.TypeFor[InlineJWKS]()
)

// structPlan is a struct type's fields by yaml name, in declaration order.
type structPlan struct {
	fields []planField
}

type planField struct {
	name  string
	index int
	typ   reflect.Type
}

var plans sync.Map // reflect.Type → *structPlan

func planOf(t reflect.Type) *structPlan {
	if p, ok := plans.Load(t); ok {
		return p.(*structPlan)
	}
	p := &structPlan{}
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		if n := yamlName(f); n != "" {
			p.fields = append(p.fields, planField{name: n, index: i, typ: f.Type})
		}
	}
	plans.Store(t, p)
	return p
}

type jsonDecoder struct {
	b     []byte
	i     int
	line  int
	lines map[string]int
	buf   []byte // scratch for unescaping
}

// ws skips JSON whitespace, counting line breaks the way YAML does (CR LF
// and a lone CR are one break each).
func (p *jsonDecoder) ws() {
	for p.i < len(p.b) {
		switch p.b[p.i] {
		case ' ':
		case '\n':
			p.line++
		case '\r':
			if p.i+1 < len(p.b) && p.b[p.i+1] == '\n' {
				p.i++
			}
			p.line++
		default:
			// Tabs are JSON whitespace but not always YAML whitespace:
			// the YAML path decides.
			return
		}
		p.i++
	}
}

func (p *jsonDecoder) peek() byte {
	p.ws()
	if p.i < len(p.b) {
		return p.b[p.i]
	}
	return 0
}

func (p *jsonDecoder) eat(c byte) bool {
	if p.peek() == c {
		p.i++
		return true
	}
	return false
}

// value decodes the next value into v (of type t) and records its line at
// path, as the walker does for every value it visits.
func (p *jsonDecoder) value(v reflect.Value, t reflect.Type, path string) bool {
	c := p.peek()
	if path != "" {
		p.lines[path] = p.line
	}
	switch t {
	case durationType:
		s, ok := p.str()
		if !ok {
			return false
		}
		var dur Duration
		if dur.parse(s) != nil {
			return false
		}
		v.Set(reflect.ValueOf(dur))
		return true
	case inlineJWKSType:
		// An inline object is re-encoded by the YAML path; canonical JSON
		// holds the string form.
		s, ok := p.str()
		if !ok {
			return false
		}
		v.SetString(s)
		return true
	}
	switch t.Kind() {
	case reflect.String:
		s, ok := p.str()
		if !ok {
			return false
		}
		v.SetString(s)
		return true
	case reflect.Bool:
		b, ok := p.boolean()
		if ok {
			v.SetBool(b)
		}
		return ok
	case reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64, reflect.Uint:
		lit, isInt := p.number()
		if lit == "" || !isInt || lit[0] == '-' {
			return false
		}
		n, err := strconv.ParseUint(lit, 10, t.Bits())
		if err != nil {
			return false
		}
		v.SetUint(n)
		return true
	case reflect.Float64:
		lit, isInt := p.number()
		if lit == "" {
			return false
		}
		var f float64
		if isInt {
			// yaml.v3 resolves an integer literal to an int first ("-0"
			// is 0, not -0).
			n, err := strconv.ParseInt(lit, 10, 64)
			if err != nil {
				return false
			}
			f = float64(n)
		} else {
			var err error
			if f, err = strconv.ParseFloat(lit, 64); err != nil {
				return false
			}
		}
		v.SetFloat(f)
		return true
	case reflect.Pointer:
		if c == 'n' {
			return false // null: the YAML path decides
		}
		e := reflect.New(t.Elem())
		if !p.value(e.Elem(), t.Elem(), path) {
			return false
		}
		v.Set(e)
		return true
	case reflect.Struct:
		if c != '{' {
			return false
		}
		return p.object(v, planOf(t), path)
	case reflect.Slice:
		if c == 'n' {
			return p.null() // a null list is a nil slice on both paths
		}
		if c != '[' {
			return false
		}
		p.i++
		if t.Elem().Kind() == reflect.String {
			return p.stringList(v, path)
		}
		s := reflect.MakeSlice(t, 0, 4)
		if p.eat(']') {
			v.Set(s)
			return true
		}
		for n := 0; ; n++ {
			s = reflect.Append(s, reflect.Zero(t.Elem()))
			if !p.value(s.Index(n), t.Elem(), joinIndex(path, n)) {
				return false
			}
			if p.eat(',') {
				continue
			}
			if !p.eat(']') {
				return false
			}
			v.Set(s)
			return true
		}
	case reflect.Map:
		if c == 'n' {
			return p.null()
		}
		if t.Key().Kind() != reflect.String || c != '{' {
			return false
		}
		if t.Elem().Kind() != reflect.String {
			return p.valueMap(v, t, path)
		}
		return p.stringMap(v, path)
	}
	return false
}

func (p *jsonDecoder) stringList(v reflect.Value, path string) bool {
	out := []string{}
	if p.eat(']') {
		v.Set(reflect.ValueOf(out).Convert(v.Type()))
		return true
	}
	for n := 0; ; n++ {
		p.peek()
		p.lines[joinIndex(path, n)] = p.line
		s, ok := p.str()
		if !ok {
			return false
		}
		out = append(out, s)
		if p.eat(',') {
			continue
		}
		if !p.eat(']') {
			return false
		}
		v.Set(reflect.ValueOf(out).Convert(v.Type()))
		return true
	}
}

// stringMap decodes a map of strings; like the walker it records the line
// of each key, not of its value.
func (p *jsonDecoder) stringMap(v reflect.Value, path string) bool {
	p.i++ // {
	m := map[string]string{}
	if !p.eat('}') {
		for {
			p.peek()
			line := p.line
			k, ok := p.key()
			if !ok {
				return false
			}
			if _, dup := m[k]; dup {
				return false // yaml.v3 reports it
			}
			val, ok := p.str()
			if !ok {
				return false
			}
			m[k] = val
			p.lines[join(path, k)] = line
			if p.eat(',') {
				continue
			}
			if !p.eat('}') {
				return false
			}
			break
		}
	}
	v.Set(reflect.ValueOf(m).Convert(v.Type()))
	return true
}

// valueMap decodes a map whose values are not strings (bindLabels: a map
// of lists); like the walker it records the line of each value.
func (p *jsonDecoder) valueMap(v reflect.Value, t reflect.Type, path string) bool {
	p.i++ // {
	m := reflect.MakeMap(t)
	if !p.eat('}') {
		for {
			k, ok := p.key()
			if !ok {
				return false
			}
			if m.MapIndex(reflect.ValueOf(k).Convert(t.Key())).IsValid() {
				return false // yaml.v3 reports it
			}
			e := reflect.New(t.Elem()).Elem()
			if !p.value(e, t.Elem(), join(path, k)) {
				return false
			}
			m.SetMapIndex(reflect.ValueOf(k).Convert(t.Key()), e)
			if p.eat(',') {
				continue
			}
			if !p.eat('}') {
				return false
			}
			break
		}
	}
	v.Set(m)
	return true
}

// object decodes a JSON object into the struct v; the opening brace is
// next.
func (p *jsonDecoder) object(v reflect.Value, plan *structPlan, path string) bool {
	p.i++ // {
	if p.eat('}') {
		return true
	}
	var seen uint64
	for {
		k, ok := p.key()
		if !ok {
			return false
		}
		fi := -1
		for j := range plan.fields {
			if plan.fields[j].name == k {
				fi = j
				break
			}
		}
		if fi < 0 || fi >= 64 || seen&(1<<fi) != 0 {
			return false // unknown or repeated field: the YAML path reports it
		}
		seen |= 1 << fi
		f := plan.fields[fi]
		if !p.value(v.Field(f.index), f.typ, join(path, k)) {
			return false
		}
		if p.eat(',') {
			p.ws()
			continue
		}
		return p.eat('}')
	}
}

// key decodes an object key and the colon after it. A key YAML would not
// take as a simple key (its colon on a later line, or over 1,024
// characters away) is left to the YAML path.
func (p *jsonDecoder) key() (string, bool) {
	p.peek()
	start, line := p.i, p.line
	k, ok := p.str()
	if !ok || !p.eat(':') || p.line != line || p.i-start > 1000 {
		return "", false
	}
	return k, true
}

func (p *jsonDecoder) null() bool {
	if len(p.b)-p.i >= 4 && string(p.b[p.i:p.i+4]) == "null" {
		p.i += 4
		return true
	}
	return false
}

func (p *jsonDecoder) boolean() (bool, bool) {
	p.peek()
	switch {
	case len(p.b)-p.i >= 4 && string(p.b[p.i:p.i+4]) == "true":
		p.i += 4
		return true, true
	case len(p.b)-p.i >= 5 && string(p.b[p.i:p.i+5]) == "false":
		p.i += 5
		return false, true
	}
	return false, false
}

// number scans a JSON number and returns its text ("" if there is none)
// and whether it is an integer literal (no fraction, no exponent).
func (p *jsonDecoder) number() (lit string, isInt bool) {
	p.peek()
	start, j := p.i, p.i
	b := p.b
	digits := func() int {
		n := 0
		for j < len(b) && b[j] >= '0' && b[j] <= '9' {
			j++
			n++
		}
		return n
	}
	if j < len(b) && b[j] == '-' {
		j++
	}
	if j < len(b) && b[j] == '0' {
		j++
	} else if digits() == 0 {
		return "", false
	}
	isInt = true
	if j < len(b) && b[j] == '.' {
		j++
		if digits() == 0 {
			return "", false
		}
		isInt = false
	}
	if j < len(b) && (b[j] == 'e' || b[j] == 'E') {
		j++
		if j < len(b) && (b[j] == '+' || b[j] == '-') {
			j++
		}
		if digits() == 0 {
			return "", false
		}
		isInt = false
	}
	p.i = j
	return string(b[start:j]), isInt
}

// str decodes a JSON string. It gives up on what YAML reads differently
// or rejects: raw bytes outside printable ASCII (YAML restricts the
// printable set and line breaks), escaped UTF-16 surrogates (yaml.v3
// rejects them, even in pairs) and the escape \/ (yaml.v3 rejects it).
func (p *jsonDecoder) str() (string, bool) {
	if p.peek() != '"' {
		return "", false
	}
	p.i++
	start := p.i
	for p.i < len(p.b) {
		c := p.b[p.i]
		switch {
		case c == '"':
			s := string(p.b[start:p.i])
			p.i++
			return s, true
		case c == '\\':
			return p.escaped(start)
		case c < 0x20 || c >= 0x7f:
			return "", false
		}
		p.i++
	}
	return "", false
}

// escaped finishes a string that has escapes, from start (after the
// opening quote); p.i is at the first backslash.
func (p *jsonDecoder) escaped(start int) (string, bool) {
	buf := append(p.buf[:0], p.b[start:p.i]...)
	defer func() { p.buf = buf }()
	for p.i < len(p.b) {
		c := p.b[p.i]
		switch {
		case c == '"':
			p.i++
			return string(buf), true
		case c < 0x20 || c >= 0x7f:
			return "", false
		case c != '\\':
			buf = append(buf, c)
			p.i++
			continue
		}
		if p.i+1 >= len(p.b) {
			return "", false
		}
		e := p.b[p.i+1]
		p.i += 2
		switch e {
		case '"', '\\':
			buf = append(buf, e)
		case 'b':
			buf = append(buf, '\b')
		case 'f':
			buf = append(buf, '\f')
		case 'n':
			buf = append(buf, '\n')
		case 'r':
			buf = append(buf, '\r')
		case 't':
			buf = append(buf, '\t')
		case 'u':
			if p.i+4 > len(p.b) {
				return "", false
			}
			r, err := strconv.ParseUint(string(p.b[p.i:p.i+4]), 16, 32)
			if err != nil || (r >= 0xd800 && r <= 0xdfff) {
				return "", false
			}
			p.i += 4
			buf = utf8.AppendRune(buf, rune(r))
		default:
			return "", false
		}
	}
	return "", false
}
