package resource

import (
	"bytes"
	"encoding/json"
	"errors"
	"math"
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
	p := jsonParser{b: raw, s: string(raw), out: dst}
	values, strs, objects, lists := countJSON(raw)
	p.values = make([]structpb.Value, 0, values)
	p.strings = make([]structpb.Value_StringValue, 0, strs)
	p.structs = make([]structpb.Struct, 0, objects)
	p.inStruct = make([]structpb.Value_StructValue, 0, objects)
	p.lists = make([]structpb.ListValue, 0, lists)
	p.inList = make([]structpb.Value_ListValue, 0, lists)
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

	// Slabs the structpb messages of one payload are allocated from: a
	// payload's values live and die together.
	values   []structpb.Value
	strings  []structpb.Value_StringValue
	structs  []structpb.Struct
	inStruct []structpb.Value_StructValue
	lists    []structpb.ListValue
	inList   []structpb.Value_ListValue
	numbers  []structpb.Value_NumberValue
	bools    []structpb.Value_BoolValue
}

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

// slab returns a pointer to the next zero element of *s, starting a new
// chunk when it is full (elements are never moved or copied).
func slab[T any](s *[]T) *T {
	if len(*s) == cap(*s) {
		*s = make([]T, 0, 8)
	}
	*s = (*s)[:len(*s)+1]
	return &(*s)[len(*s)-1]
}

// Protobuf tags (field number << 3 | wire type) of the messages written.
const (
	tagStructFields = 1<<3 | 2 // Struct.fields, map entry
	tagEntryKey     = 1<<3 | 2
	tagEntryValue   = 2<<3 | 2
	tagNull         = 1<<3 | 0 // Value.null_value
	tagNumber       = 2<<3 | 1 // Value.number_value, fixed64
	tagString       = 3<<3 | 2
	tagBool         = 4<<3 | 0
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
	st := slab(&p.structs)
	st.Fields = map[string]*structpb.Value{}
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

// value parses one value and writes the fields of its Value message.
func (p *jsonParser) value() (*structpb.Value, error) {
	if p.i >= len(p.b) {
		return nil, errNotSimple
	}
	v := slab(&p.values)
	switch c := p.b[p.i]; {
	case c == '{':
		p.i++
		at := p.open(tagStruct)
		st, err := p.object()
		if err != nil {
			return nil, err
		}
		p.close(at)
		sv := slab(&p.inStruct)
		sv.StructValue = st
		v.Kind = sv
	case c == '[':
		p.i++
		at := p.open(tagList)
		l := slab(&p.lists)
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
		lv := slab(&p.inList)
		lv.ListValue = l
		v.Kind = lv
	case c == '"':
		s, sb, err := p.str()
		if err != nil {
			return nil, err
		}
		p.appendString(tagString, sb)
		sv := slab(&p.strings)
		sv.StringValue = s
		v.Kind = sv
	case c == 't' && bytes.HasPrefix(p.b[p.i:], []byte("true")):
		p.i += 4
		p.out = append(p.out, tagBool, 1)
		b := slab(&p.bools)
		b.BoolValue = true
		v.Kind = b
	case c == 'f' && bytes.HasPrefix(p.b[p.i:], []byte("false")):
		p.i += 5
		p.out = append(p.out, tagBool, 0)
		v.Kind = slab(&p.bools)
	case c == 'n' && bytes.HasPrefix(p.b[p.i:], []byte("null")):
		p.i += 4
		p.out = append(p.out, tagNull, 0)
		v.Kind = &structpb.Value_NullValue{}
	case c == '-' || (c >= '0' && c <= '9'):
		j := p.i
		for j < len(p.b) && (p.b[j] == '-' || p.b[j] == '+' || p.b[j] == '.' || p.b[j] == 'e' || p.b[j] == 'E' || (p.b[j] >= '0' && p.b[j] <= '9')) {
			j++
		}
		f, err := strconv.ParseFloat(string(p.b[p.i:j]), 64)
		if err != nil {
			return nil, errNotSimple
		}
		p.i = j
		p.out = append(p.out, tagNumber)
		p.out = protowire.AppendFixed64(p.out, math.Float64bits(f))
		n := slab(&p.numbers)
		n.NumberValue = f
		v.Kind = n
	default:
		return nil, errNotSimple
	}
	return v, nil
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
