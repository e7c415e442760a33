package compile

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"
	"google.golang.org/protobuf/types/known/anypb"
)

// validator is what protoc-gen-validate generates on every Envoy message.
type validator interface{ ValidateAll() error }

// ValidateAll runs protoc-gen-validate's ValidateAll on m and on every
// message packed in an Any anywhere inside it, recursively (PGV itself
// stops at an Any). An Any whose type is not linked into this binary is an
// error: Envoy would reject what we cannot check. Errors name the path of
// the Any, e.g. "filter_chains[0].filters[0].typed_config(…HttpConnectionManager).http_filters[0].typed_config(…ExtAuthz): …".
func ValidateAll(m proto.Message) error { return validateAllKnown(m, nil) }

// validateAllKnown is ValidateAll where an Any found in packed is checked
// through the message it maps to instead of by decoding its bytes again:
// the caller packed exactly that message into it (anypb.New) just before,
// and a message that marshals decodes to an equal one. An entry whose type
// does not match the Any's type URL is ignored (the Any is decoded).
func validateAllKnown(m proto.Message, packed map[*anypb.Any]proto.Message) error {
	w := anyWalker{packed: packed, path: make([]pathSeg, 0, 8)}
	w.validateMsg(m.ProtoReflect())
	return errors.Join(w.errs...)
}

// anyWalker walks a message tree. The path to where it is is kept as
// segments and only turned into text for an error.
type anyWalker struct {
	packed map[*anypb.Any]proto.Message
	errs   []error
	path   []pathSeg
	anys   int // Anys validated (for tests)
}

// pathSeg is one step of a path: a field, a list index, a map key or the
// message inside an Any.
type pathSeg struct {
	kind  byte // '.' field, '[' index, 'k' map key, '(' Any
	name  string
	index int
}

func (w *anyWalker) pathString() string {
	var b strings.Builder
	for _, s := range w.path {
		switch s.kind {
		case '.':
			if b.Len() > 0 {
				b.WriteByte('.')
			}
			b.WriteString(s.name)
		case '[':
			b.WriteByte('[')
			b.WriteString(strconv.Itoa(s.index))
			b.WriteByte(']')
		case 'k':
			fmt.Fprintf(&b, "[%q]", s.name)
		case '(':
			b.WriteByte('(')
			b.WriteString(s.name)
			b.WriteByte(')')
		}
	}
	return b.String()
}

func (w *anyWalker) fail(err error) {
	if len(w.path) > 0 {
		err = fmt.Errorf("%s: %w", w.pathString(), err)
	}
	w.errs = append(w.errs, err)
}

func (w *anyWalker) validateMsg(m protoreflect.Message) {
	if v, ok := m.Interface().(validator); ok {
		if err := v.ValidateAll(); err != nil {
			w.fail(err)
		}
	}
	w.walkAnys(m)
}

// walkAnys finds the Any fields under m (only descending into fields whose
// type can hold one) and validates what they carry.
func (w *anyWalker) walkAnys(m protoreflect.Message) {
	md := m.Descriptor()
	if md.FullName() == anyName {
		a, ok := m.Interface().(*anypb.Any)
		if !ok {
			return
		}
		inner, ok := w.packed[a]
		if !ok || !a.MessageIs(inner) {
			var err error
			if inner, err = unpack(a); err != nil {
				w.fail(err)
				return
			}
		}
		w.anys++
		im := inner.ProtoReflect()
		w.path = append(w.path, pathSeg{kind: '(', name: string(im.Descriptor().FullName())})
		w.validateMsg(im)
		w.path = w.path[:len(w.path)-1]
		return
	}
	for _, fd := range anyFields(md) {
		if !m.Has(fd) {
			continue
		}
		v := m.Get(fd)
		w.path = append(w.path, pathSeg{kind: '.', name: string(fd.Name())})
		switch {
		case fd.IsList():
			l := v.List()
			for i := 0; i < l.Len(); i++ {
				w.path = append(w.path, pathSeg{kind: '[', index: i})
				w.walkAnys(l.Get(i).Message())
				w.path = w.path[:len(w.path)-1]
			}
		case fd.IsMap():
			v.Map().Range(func(k protoreflect.MapKey, mv protoreflect.Value) bool {
				w.path = append(w.path, pathSeg{kind: 'k', name: k.String()})
				w.walkAnys(mv.Message())
				w.path = w.path[:len(w.path)-1]
				return true
			})
		default:
			w.walkAnys(v.Message())
		}
		w.path = w.path[:len(w.path)-1]
	}
}

// fieldsWithAny caches, per message type, the fields that can hold an Any.
var fieldsWithAny sync.Map // protoreflect.MessageDescriptor → []protoreflect.FieldDescriptor

func anyFields(md protoreflect.MessageDescriptor) []protoreflect.FieldDescriptor {
	if v, ok := fieldsWithAny.Load(md); ok {
		return v.([]protoreflect.FieldDescriptor)
	}
	var out []protoreflect.FieldDescriptor
	fields := md.Fields()
	for i := 0; i < fields.Len(); i++ {
		if fd := fields.Get(i); mayHoldAny(fd) {
			out = append(out, fd)
		}
	}
	fieldsWithAny.Store(md, out)
	return out
}

const anyName = "google.protobuf.Any"

func unpack(a *anypb.Any) (proto.Message, error) {
	mt, err := protoregistry.GlobalTypes.FindMessageByURL(a.GetTypeUrl())
	if err != nil {
		return nil, fmt.Errorf("embedded message of type %q: the type is unknown to the control plane, so it cannot be validated: %w", a.GetTypeUrl(), err)
	}
	m := mt.New().Interface()
	if err := proto.Unmarshal(a.GetValue(), m); err != nil {
		return nil, fmt.Errorf("embedded message of type %q does not decode: %w", a.GetTypeUrl(), err)
	}
	return m, nil
}

// holdsAny caches, per message type, whether any Any can occur inside it.
var holdsAny sync.Map // protoreflect.FullName → bool

func mayHoldAny(fd protoreflect.FieldDescriptor) bool {
	var md protoreflect.MessageDescriptor
	switch {
	case fd.IsMap():
		md = fd.MapValue().Message()
	default:
		md = fd.Message()
	}
	if md == nil {
		return false
	}
	return messageHoldsAny(md, map[protoreflect.FullName]bool{})
}

func messageHoldsAny(md protoreflect.MessageDescriptor, visiting map[protoreflect.FullName]bool) bool {
	if md.FullName() == anyName {
		return true
	}
	if v, ok := holdsAny.Load(md.FullName()); ok {
		return v.(bool)
	}
	if visiting[md.FullName()] {
		return false // a cycle adds nothing the other fields do not
	}
	visiting[md.FullName()] = true
	found := false
	fields := md.Fields()
	for i := 0; i < fields.Len() && !found; i++ {
		f := fields.Get(i)
		var sub protoreflect.MessageDescriptor
		if f.IsMap() {
			sub = f.MapValue().Message()
		} else {
			sub = f.Message()
		}
		if sub != nil && messageHoldsAny(sub, visiting) {
			found = true
		}
	}
	delete(visiting, md.FullName())
	// Only cache definite answers reached outside a cycle.
	if found || len(visiting) == 0 {
		holdsAny.Store(md.FullName(), found)
	}
	return found
}
