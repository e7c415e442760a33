package compile

import (
	"errors"
	"fmt"
	"strconv"
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
	var errs []error
	w := anyWalker{packed: packed, errs: &errs}
	w.validateMsg(m.ProtoReflect(), "")
	return errors.Join(errs...)
}

type anyWalker struct {
	packed map[*anypb.Any]proto.Message
	errs   *[]error
}

func (w anyWalker) validateMsg(m protoreflect.Message, path string) {
	if v, ok := m.Interface().(validator); ok {
		if err := v.ValidateAll(); err != nil {
			*w.errs = append(*w.errs, prefix(path, err))
		}
	}
	w.walkAnys(m, path)
}

func prefix(path string, err error) error {
	if path == "" {
		return err
	}
	return fmt.Errorf("%s: %w", path, err)
}

// walkAnys finds the Any fields under m (only descending into fields whose
// type can hold one) and validates what they carry.
func (w anyWalker) walkAnys(m protoreflect.Message, path string) {
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
				*w.errs = append(*w.errs, prefix(path, err))
				return
			}
		}
		w.validateMsg(inner.ProtoReflect(), fmt.Sprintf("%s(%s)", path, inner.ProtoReflect().Descriptor().FullName()))
		return
	}
	for _, fd := range anyFields(md) {
		if !m.Has(fd) {
			continue
		}
		v := m.Get(fd)
		name := string(fd.Name())
		if path != "" {
			name = path + "." + name
		}
		switch {
		case fd.IsList():
			l := v.List()
			for i := 0; i < l.Len(); i++ {
				w.walkAnys(l.Get(i).Message(), name+"["+strconv.Itoa(i)+"]")
			}
		case fd.IsMap():
			v.Map().Range(func(k protoreflect.MapKey, mv protoreflect.Value) bool {
				w.walkAnys(mv.Message(), fmt.Sprintf("%s[%q]", name, k.String()))
				return true
			})
		default:
			w.walkAnys(v.Message(), name)
		}
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
