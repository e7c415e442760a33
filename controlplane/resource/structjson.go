package resource

import (
	"bytes"
	"encoding/json"
	"errors"
	"strconv"

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
	p := jsonParser{b: raw}
	if !p.next('{') {
		return nil, errNotSimple
	}
	st, err := p.object()
	if err != nil {
		return nil, err
	}
	if p.i != len(p.b) {
		return nil, errNotSimple
	}
	return st, nil
}

type jsonParser struct {
	b []byte
	i int
}

func (p *jsonParser) next(c byte) bool {
	if p.i < len(p.b) && p.b[p.i] == c {
		p.i++
		return true
	}
	return false
}

// object parses after the opening brace.
func (p *jsonParser) object() (*structpb.Struct, error) {
	st := &structpb.Struct{Fields: map[string]*structpb.Value{}}
	if p.next('}') {
		return st, nil
	}
	for {
		k, err := p.str()
		if err != nil {
			return nil, err
		}
		if !p.next(':') {
			return nil, errNotSimple
		}
		v, err := p.value()
		if err != nil {
			return nil, err
		}
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

func (p *jsonParser) value() (*structpb.Value, error) {
	if p.i >= len(p.b) {
		return nil, errNotSimple
	}
	switch c := p.b[p.i]; {
	case c == '{':
		p.i++
		st, err := p.object()
		if err != nil {
			return nil, err
		}
		return structpb.NewStructValue(st), nil
	case c == '[':
		p.i++
		l := &structpb.ListValue{}
		if p.next(']') {
			return structpb.NewListValue(l), nil
		}
		for {
			v, err := p.value()
			if err != nil {
				return nil, err
			}
			l.Values = append(l.Values, v)
			if p.next(',') {
				continue
			}
			if p.next(']') {
				return structpb.NewListValue(l), nil
			}
			return nil, errNotSimple
		}
	case c == '"':
		s, err := p.str()
		if err != nil {
			return nil, err
		}
		return structpb.NewStringValue(s), nil
	case c == 't' && bytes.HasPrefix(p.b[p.i:], []byte("true")):
		p.i += 4
		return structpb.NewBoolValue(true), nil
	case c == 'f' && bytes.HasPrefix(p.b[p.i:], []byte("false")):
		p.i += 5
		return structpb.NewBoolValue(false), nil
	case c == 'n' && bytes.HasPrefix(p.b[p.i:], []byte("null")):
		p.i += 4
		return structpb.NewNullValue(), nil
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
		return structpb.NewNumberValue(f), nil
	}
	return nil, errNotSimple
}

// str parses a string token; escaped strings go through encoding/json.
func (p *jsonParser) str() (string, error) {
	if !p.next('"') {
		return "", errNotSimple
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
				return string(tok), nil
			}
			var s string
			if err := json.Unmarshal(p.b[start-1:p.i], &s); err != nil {
				return "", errNotSimple
			}
			return s, nil
		case c < 0x20:
			return "", errNotSimple
		}
		p.i++
	}
	return "", errNotSimple
}
