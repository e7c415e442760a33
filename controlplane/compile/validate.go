package compile

import (
	"errors"
	"fmt"
	"reflect"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"

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
	// reflectOnly walks by protoreflect alone (walkAnys), as before
	// plans (for tests comparing the two).
	reflectOnly bool
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
	w.walk(m)
}

// walk validates what the Anys under m carry: by m's plan when its type
// has one (anyplan.go), else by walkAnys.
func (w *anyWalker) walk(m protoreflect.Message) {
	if !w.reflectOnly {
		v := reflect.ValueOf(m.Interface())
		if v.Kind() == reflect.Pointer && !v.IsNil() {
			if p := planFor(v.Type(), m.Descriptor()); p != nil {
				w.walkPlan(p, v)
				return
			}
		}
	}
	w.walkAnys(m)
}

// walkAnys finds the Any fields under m (only descending into fields whose
// type can hold one) and validates what they carry.
func (w *anyWalker) walkAnys(m protoreflect.Message) {
	md := m.Descriptor()
	if md.FullName() == anyName {
		if a, ok := m.Interface().(*anypb.Any); ok {
			w.visitAny(a)
		}
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

// visitAny validates the message a carries (the one packed into it, if
// known, else its bytes decoded) and the Anys inside that.
func (w *anyWalker) visitAny(a *anypb.Any) {
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
}

// walkPlan is walkAnys for a non-nil v (a pointer to a generated struct)
// by its type's plan: the same fields in the same order, read with
// package reflect.
func (w *anyWalker) walkPlan(p *anyPlan, v reflect.Value) {
	if p.isAny {
		w.visitAny(v.Interface().(*anypb.Any))
		return
	}
	s := v.Elem()
	for _, f := range p.fields {
		fv := s.Field(f.index)
		switch f.kind {
		case 'm':
			if fv.IsNil() {
				continue
			}
			w.path = append(w.path, pathSeg{kind: '.', name: f.name})
			w.walkElem(&f.elem, f.elemType, fv)
			w.path = w.path[:len(w.path)-1]
		case 'l':
			n := fv.Len()
			if n == 0 {
				continue
			}
			w.path = append(w.path, pathSeg{kind: '.', name: f.name})
			for i := 0; i < n; i++ {
				w.path = append(w.path, pathSeg{kind: '[', index: i})
				w.walkElem(&f.elem, f.elemType, fv.Index(i))
				w.path = w.path[:len(w.path)-1]
			}
			w.path = w.path[:len(w.path)-1]
		case 'p':
			if fv.Len() == 0 {
				continue
			}
			w.path = append(w.path, pathSeg{kind: '.', name: f.name})
			it := fv.MapRange()
			for it.Next() {
				w.path = append(w.path, pathSeg{kind: 'k', name: mapKeyString(it.Key())})
				w.walkElem(&f.elem, f.elemType, it.Value())
				w.path = w.path[:len(w.path)-1]
			}
			w.path = w.path[:len(w.path)-1]
		case 'o':
			if fv.IsNil() {
				continue
			}
			wv := fv.Elem() // *Parent_Member
			c := f.cases[wv.Type()]
			if c == nil || wv.IsNil() {
				continue
			}
			w.path = append(w.path, pathSeg{kind: '.', name: c.name})
			w.walkElem(&c.elem, c.elemType, wv.Elem().Field(0))
			w.path = w.path[:len(w.path)-1]
		}
	}
}

// walkElem walks the message v (of Go type t) held in a field. A nil
// message is walked as walkAnys walks it: as an empty message, except
// that a nil Any does not unpack.
func (w *anyWalker) walkElem(slot *atomic.Pointer[anyPlan], t reflect.Type, v reflect.Value) {
	if v.IsNil() {
		if t == anyType {
			w.visitAny(nil)
		}
		return
	}
	if p := elemPlan(slot, t); p != nil {
		w.walkPlan(p, v)
		return
	}
	w.walkAnys(v.Interface().(proto.Message).ProtoReflect())
}

// mapKeyString is protoreflect.MapKey.String for a Go map key.
func mapKeyString(k reflect.Value) string {
	if k.Kind() == reflect.String {
		return k.String()
	}
	return fmt.Sprint(k.Interface())
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
