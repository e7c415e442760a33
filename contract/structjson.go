package contract

import (
	"bytes"
	"encoding/json"
	"errors"
	"math"
	"slices"
	"strconv"

	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/types/known/structpb"
)

// errNotSimple makes structFromJSON give up on input its fast path does
// not take; the caller then decodes with encoding/json.
var errNotSimple = errors.New("not simple JSON")

// structFromJSON builds the Struct of a JSON object as encoding/json
// writes it (json.Marshal: compact, valid UTF-8), straight into structpb
// values: numbers become float64 (strconv.ParseFloat, as encoding/json and
// protojson do), null becomes NullValue. Anything unexpected fails with
// errNotSimple rather than guess.
func structFromJSON(raw []byte) (*structpb.Struct, error) {
	st, _, err := structAndWire(raw, nil)
	return st, err
}

// structAndWire is structFromJSON that also appends to dst the protobuf
// wire form of the Struct it returns, encoded in the same pass (fields in
// the JSON's order, which json.Marshal makes deterministic). Decoding
// those bytes gives a Struct equal to the one returned.
func structAndWire(raw, dst []byte) (*structpb.Struct, []byte, error) {
	return new(messages).structAndWire(raw, dst)
}

// structAndWire is structAndWire with the messages allocated from m.
func (m *messages) structAndWire(raw, dst []byte) (*structpb.Struct, []byte, error) {
	p := jsonParser{b: raw, s: string(raw), out: dst, m: m}
	return p.parse()
}

// wireOf is structAndWire without the Struct: the same wire bytes and the
// same errors (what it refuses, structAndWire refuses), no messages built.
// keys is scratch memory for the duplicate-key check, returned for reuse.
func wireOf(raw, dst []byte, keys []string) ([]byte, []string, error) {
	p := jsonParser{b: raw, s: string(raw), out: dst, wireOnly: true, keys: keys[:0]}
	_, out, err := p.parse()
	return out, p.keys, err
}

func (p *jsonParser) parse() (*structpb.Struct, []byte, error) {
	if p.wireOnly {
		if !p.next('{') {
			return nil, nil, errNotSimple
		}
		if _, err := p.object(); err != nil {
			return nil, nil, err
		}
		if p.i != len(p.b) {
			return nil, nil, errNotSimple
		}
		return nil, p.out, nil
	}
	m, raw := p.m, p.b
	values, strs, objects, lists := countJSON(raw)
	m.values.reserve(values)
	m.strings.reserve(strs)
	m.structs.reserve(objects)
	m.inStruct.reserve(objects)
	m.lists.reserve(lists)
	m.inList.reserve(lists)
	if !p.next('{') {
		return nil, nil, errNotSimple
	}
	st, err := p.object()
	if err != nil {
		return nil, nil, err
	}
	if p.i != len(p.b) {
		return nil, nil, errNotSimple
	}
	return st, p.out, nil
}

type jsonParser struct {
	b   []byte
	s   string // b as a string: unescaped strings are substrings of it, not copies
	i   int
	out []byte // the wire form so far

	m *messages
	// wireOnly: write the wire form only; object and value return nil
	// messages, and keys holds the keys of the objects being parsed (for
	// the duplicate check the Struct's map does otherwise).
	wireOnly bool
	keys     []string
}

// messages are the arenas the structpb messages of payloads are allocated
// from: the values of a payload live and die together. A Wrapper keeps
// them from one payload to the next; otherwise each payload has its own.
type messages struct {
	values   arena[structpb.Value]
	strings  arena[structpb.Value_StringValue]
	structs  arena[structpb.Struct]
	inStruct arena[structpb.Value_StructValue]
	lists    arena[structpb.ListValue]
	inList   arena[structpb.Value_ListValue]
	numbers  arena[structpb.Value_NumberValue]
	bools    arena[structpb.Value_BoolValue]
}

// reset makes every message allocated so far free for reuse.
func (m *messages) reset() {
	m.values.reset()
	m.strings.reset()
	m.structs.reset()
	m.inStruct.reset()
	m.lists.reset()
	m.inList.reset()
	m.numbers.reset()
	m.bools.reset()
}

// arena hands out pointers to elements of chunks it allocates; reset
// hands them out again. Elements are never moved or copied.
type arena[T any] struct {
	chunks [][]T
	c, i   int // the next element is chunks[c][i]
}

// alloc returns an element, as it was when last handed out (or zero):
// the caller sets every field it uses.
func (a *arena[T]) alloc() *T {
	for a.c < len(a.chunks) {
		if ch := a.chunks[a.c]; a.i < len(ch) {
			a.i++
			return &ch[a.i-1]
		}
		a.c, a.i = a.c+1, 0
	}
	a.chunks = append(a.chunks, make([]T, 16))
	a.i = 1
	return &a.chunks[a.c][0]
}

// reserve makes room for n more elements in one allocation at most.
func (a *arena[T]) reserve(n int) {
	free := 0
	for j := a.c; j < len(a.chunks); j++ {
		free += len(a.chunks[j])
	}
	if a.c < len(a.chunks) {
		free -= a.i
	}
	if free < n {
		a.chunks = append(a.chunks, make([]T, n-free))
	}
}

func (a *arena[T]) reset() { a.c, a.i = 0, 0 }

// countJSON bounds from above how many values, strings and objects raw
// holds, so the slabs are allocated once: every value but the outermost
// follows a ':', ',' or '['.
func countJSON(raw []byte) (values, strs, objects, lists int) {
	for i := 0; i < len(raw); i++ {
		switch raw[i] {
		case '[':
			lists++
			values++
		case ':', ',':
			values++
		case '{':
			objects++
		case '"':
			strs++
			for i++; i < len(raw) && raw[i] != '"'; i++ {
				if raw[i] == '\\' {
					i++
				}
			}
		}
	}
	return values, strs, objects, lists
}

// Protobuf tags (field number << 3 | wire type) of the messages written.
const (
	tagStructFields = 1<<3 | 2 // Struct.fields, map entry
	tagEntryKey     = 1<<3 | 2
	tagEntryValue   = 2<<3 | 2
	tagNull         = 1 << 3   // Value.null_value (varint: wire type 0)
	tagNumber       = 2<<3 | 1 // Value.number_value, fixed64
	tagString       = 3<<3 | 2
	tagBool         = 4 << 3 // varint
	tagStruct       = 5<<3 | 2
	tagList         = 6<<3 | 2
	tagListValues   = 1<<3 | 2 // ListValue.values
)

// open starts a length-delimited field: its tag and one byte for a length
// under 128, which close widens if needed. It returns where the content
// starts.
func (p *jsonParser) open(tag byte) int {
	p.out = append(p.out, tag, 0)
	return len(p.out)
}

func (p *jsonParser) close(start int) {
	n := len(p.out) - start
	if n < 0x80 {
		p.out[start-1] = byte(n)
		return
	}
	k := protowire.SizeVarint(uint64(n))
	for j := 1; j < k; j++ {
		p.out = append(p.out, 0)
	}
	copy(p.out[start-1+k:], p.out[start:start+n])
	protowire.AppendVarint(p.out[:start-1], uint64(n))
}

func (p *jsonParser) appendString(tag byte, s []byte) {
	p.out = append(p.out, tag)
	p.out = protowire.AppendVarint(p.out, uint64(len(s)))
	p.out = append(p.out, s...)
}

func (p *jsonParser) next(c byte) bool {
	if p.i < len(p.b) && p.b[p.i] == c {
		p.i++
		return true
	}
	return false
}

// object parses after the opening brace, writing the Struct's fields.
func (p *jsonParser) object() (*structpb.Struct, error) {
	if p.wireOnly {
		return p.objectWire()
	}
	st := p.m.structs.alloc()
	if st.Fields == nil {
		st.Fields = map[string]*structpb.Value{}
	} else {
		clear(st.Fields) // a reused Struct keeps its map
	}
	if p.next('}') {
		return st, nil
	}
	for {
		entry := p.open(tagStructFields)
		k, kb, err := p.str()
		if err != nil {
			return nil, err
		}
		p.appendString(tagEntryKey, kb)
		if !p.next(':') {
			return nil, errNotSimple
		}
		val := p.open(tagEntryValue)
		v, err := p.value()
		if err != nil {
			return nil, err
		}
		p.close(val)
		p.close(entry)
		if _, dup := st.Fields[k]; dup {
			return nil, errNotSimple // protojson refuses it; json.Marshal never writes it
		}
		st.Fields[k] = v
		if p.next(',') {
			continue
		}
		if p.next('}') {
			return st, nil
		}
		return nil, errNotSimple
	}
}

// objectWire is object writing the wire form only: the same bytes and
// errors, a nil Struct.
func (p *jsonParser) objectWire() (*structpb.Struct, error) {
	if p.next('}') {
		return nil, nil
	}
	first := len(p.keys)
	for {
		entry := p.open(tagStructFields)
		k, kb, err := p.str()
		if err != nil {
			return nil, err
		}
		p.appendString(tagEntryKey, kb)
		if !p.next(':') {
			return nil, errNotSimple
		}
		val := p.open(tagEntryValue)
		if _, err := p.value(); err != nil {
			return nil, err
		}
		p.close(val)
		p.close(entry)
		if slices.Contains(p.keys[first:], k) {
			return nil, errNotSimple // as object: protojson refuses it
		}
		p.keys = append(p.keys, k)
		if p.next(',') {
			continue
		}
		if p.next('}') {
			p.keys = p.keys[:first]
			return nil, nil
		}
		return nil, errNotSimple
	}
}

// value parses one value and writes the fields of its Value message (in
// wireOnly mode, only those: the Value is nil).
func (p *jsonParser) value() (*structpb.Value, error) {
	if p.i >= len(p.b) {
		return nil, errNotSimple
	}
	if p.wireOnly {
		return nil, p.valueWire()
	}
	v := p.m.values.alloc()
	switch c := p.b[p.i]; {
	case c == '{':
		p.i++
		at := p.open(tagStruct)
		st, err := p.object()
		if err != nil {
			return nil, err
		}
		p.close(at)
		sv := p.m.inStruct.alloc()
		sv.StructValue = st
		v.Kind = sv
	case c == '[':
		p.i++
		at := p.open(tagList)
		l := p.m.lists.alloc()
		l.Values = l.Values[:0] // a reused ListValue keeps its slice
		if !p.next(']') {
			for {
				item := p.open(tagListValues)
				iv, err := p.value()
				if err != nil {
					return nil, err
				}
				p.close(item)
				l.Values = append(l.Values, iv)
				if p.next(',') {
					continue
				}
				if p.next(']') {
					break
				}
				return nil, errNotSimple
			}
		}
		p.close(at)
		lv := p.m.inList.alloc()
		lv.ListValue = l
		v.Kind = lv
	case c == '"':
		s, sb, err := p.str()
		if err != nil {
			return nil, err
		}
		p.appendString(tagString, sb)
		sv := p.m.strings.alloc()
		sv.StringValue = s
		v.Kind = sv
	case c == 't' && bytes.HasPrefix(p.b[p.i:], []byte("true")):
		p.i += 4
		p.out = append(p.out, tagBool, 1)
		b := p.m.bools.alloc()
		b.BoolValue = true
		v.Kind = b
	case c == 'f' && bytes.HasPrefix(p.b[p.i:], []byte("false")):
		p.i += 5
		p.out = append(p.out, tagBool, 0)
		b := p.m.bools.alloc()
		b.BoolValue = false
		v.Kind = b
	case c == 'n' && bytes.HasPrefix(p.b[p.i:], []byte("null")):
		p.i += 4
		p.out = append(p.out, tagNull, 0)
		v.Kind = &structpb.Value_NullValue{}
	case c == '-' || (c >= '0' && c <= '9'):
		j := p.i
		for j < len(p.b) && (p.b[j] == '-' || p.b[j] == '+' || p.b[j] == '.' || p.b[j] == 'e' || p.b[j] == 'E' || (p.b[j] >= '0' && p.b[j] <= '9')) {
			j++
		}
		f, err := strconv.ParseFloat(p.s[p.i:j], 64)
		if err != nil {
			return nil, errNotSimple
		}
		p.i = j
		p.out = append(p.out, tagNumber)
		p.out = protowire.AppendFixed64(p.out, math.Float64bits(f))
		n := p.m.numbers.alloc()
		n.NumberValue = f
		v.Kind = n
	default:
		return nil, errNotSimple
	}
	return v, nil
}

// valueWire is value in wireOnly mode: the same bytes and errors.
func (p *jsonParser) valueWire() error {
	switch c := p.b[p.i]; {
	case c == '{':
		p.i++
		at := p.open(tagStruct)
		if _, err := p.object(); err != nil {
			return err
		}
		p.close(at)
	case c == '[':
		p.i++
		at := p.open(tagList)
		if !p.next(']') {
			for {
				item := p.open(tagListValues)
				if _, err := p.value(); err != nil {
					return err
				}
				p.close(item)
				if p.next(',') {
					continue
				}
				if p.next(']') {
					break
				}
				return errNotSimple
			}
		}
		p.close(at)
	case c == '"':
		_, sb, err := p.str()
		if err != nil {
			return err
		}
		p.appendString(tagString, sb)
	case c == 't' && bytes.HasPrefix(p.b[p.i:], []byte("true")):
		p.i += 4
		p.out = append(p.out, tagBool, 1)
	case c == 'f' && bytes.HasPrefix(p.b[p.i:], []byte("false")):
		p.i += 5
		p.out = append(p.out, tagBool, 0)
	case c == 'n' && bytes.HasPrefix(p.b[p.i:], []byte("null")):
		p.i += 4
		p.out = append(p.out, tagNull, 0)
	case c == '-' || (c >= '0' && c <= '9'):
		j := p.i
		for j < len(p.b) && (p.b[j] == '-' || p.b[j] == '+' || p.b[j] == '.' || p.b[j] == 'e' || p.b[j] == 'E' || (p.b[j] >= '0' && p.b[j] <= '9')) {
			j++
		}
		f, err := strconv.ParseFloat(p.s[p.i:j], 64)
		if err != nil {
			return errNotSimple
		}
		p.i = j
		p.out = append(p.out, tagNumber)
		p.out = protowire.AppendFixed64(p.out, math.Float64bits(f))
	default:
		return errNotSimple
	}
	return nil
}

// str parses a string token, returning it also as bytes (a view of the
// input when unescaped); escaped strings go through encoding/json.
func (p *jsonParser) str() (string, []byte, error) {
	if !p.next('"') {
		return "", nil, errNotSimple
	}
	start := p.i
	escaped := false
	for p.i < len(p.b) {
		switch c := p.b[p.i]; {
		case c == '\\':
			escaped = true
			p.i += 2
			continue
		case c == '"':
			tok := p.b[start:p.i]
			p.i++
			if !escaped {
				return p.s[start : p.i-1], tok, nil
			}
			var s string
			if err := json.Unmarshal(p.b[start-1:p.i], &s); err != nil {
				return "", nil, errNotSimple
			}
			return s, []byte(s), nil
		case c < 0x20:
			return "", nil, errNotSimple
		}
		p.i++
	}
	return "", nil, errNotSimple
}
