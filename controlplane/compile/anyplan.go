package compile

import (
	"reflect"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/known/anypb"
)

// The Any walk over generated messages without protoreflect.
//
// walkAnys asks protoreflect, for every field that can hold an Any,
// whether it is set (Has) and for its value (Get); for a generated message
// both go through reflect.NewAt and a pointer-type lookup per call, which
// made the walk most of ValidateAll's cost. A plan does the same walk on
// the Go structs protoc-gen-go generates: computed once per message type
// from its descriptor (the fields that can hold an Any, as anyFields) and
// its struct tags (which Go field is which proto field), it reads the
// fields with package reflect, which neither allocates nor looks up types.
// It visits the same fields in the same order, pushes the same path
// segments and validates the same messages as walkAnys; a type it cannot
// map (not a generated struct, e.g. dynamicpb) has no plan and is walked
// by walkAnys. TestAnyPlanMatchesWalkAnys holds the two walks to the same
// result.

// anyPlan is the walk of one generated message type.
type anyPlan struct {
	md     protoreflect.MessageDescriptor
	isAny  bool
	fields []*planField
}

// planField is one Go struct field that can hold an Any.
type planField struct {
	index int    // the Go struct field
	name  string // the proto field's name (a path segment)
	kind  byte   // 'm' message, 'l' list of messages, 'p' map to messages, 'o' oneof
	// elem is the plan of the message type of a 'm', 'l' or 'p' field
	// (resolved on first use); elemType is its Go type (a pointer).
	elem     atomic.Pointer[anyPlan]
	elemType reflect.Type
	// cases are a oneof's members that can hold an Any, by the Go type
	// of their wrapper (*Parent_Member).
	cases map[reflect.Type]*planCase
}

// planCase is one oneof member that can hold an Any.
type planCase struct {
	name     string
	elem     atomic.Pointer[anyPlan]
	elemType reflect.Type
}

var (
	anyPlans   sync.Map // reflect.Type (pointer to a generated struct) → *anyPlan, or noPlan
	anyPlansMu sync.Mutex
	noPlan     = &anyPlan{}
	anyType    = reflect.TypeFor[*anypb.Any]()
)

// planFor is the plan of t (a generated message's pointer type) for
// messages of descriptor md, or nil when t cannot be walked by a plan.
func planFor(t reflect.Type, md protoreflect.MessageDescriptor) *anyPlan {
	if v, ok := anyPlans.Load(t); ok {
		if p := v.(*anyPlan); p != noPlan && p.md == md {
			return p
		}
		return nil
	}
	anyPlansMu.Lock()
	defer anyPlansMu.Unlock()
	if v, ok := anyPlans.Load(t); ok {
		if p := v.(*anyPlan); p != noPlan && p.md == md {
			return p
		}
		return nil
	}
	p := buildPlan(t, md)
	if p == nil {
		anyPlans.Store(t, noPlan)
		return nil
	}
	anyPlans.Store(t, p)
	return p
}

// elemPlan resolves (once) the plan of a field's message type.
func elemPlan(slot *atomic.Pointer[anyPlan], t reflect.Type) *anyPlan {
	if p := slot.Load(); p != nil {
		if p == noPlan {
			return nil
		}
		return p
	}
	m, ok := reflect.Zero(t).Interface().(proto.Message)
	if !ok {
		slot.Store(noPlan)
		return nil
	}
	p := planFor(t, m.ProtoReflect().Descriptor())
	if p == nil {
		slot.Store(noPlan)
		return nil
	}
	slot.Store(p)
	return p
}

// buildPlan maps md's Any-holding fields onto t's struct fields by the
// field numbers in their `protobuf` tags and the oneof names in their
// `protobuf_oneof` tags; nil when one does not map.
func buildPlan(t reflect.Type, md protoreflect.MessageDescriptor) *anyPlan {
	if t.Kind() != reflect.Pointer || t.Elem().Kind() != reflect.Struct {
		return nil
	}
	p := &anyPlan{md: md, isAny: md.FullName() == anyName}
	if p.isAny {
		if t != anyType {
			return nil
		}
		return p
	}
	st := t.Elem()
	byNumber := map[protoreflect.FieldNumber]int{}
	byOneof := map[protoreflect.Name]int{}
	for i := 0; i < st.NumField(); i++ {
		sf := st.Field(i)
		if !sf.IsExported() {
			// The opaque API's hidden fields (and protoimpl's own):
			// values read from them cannot be turned back into
			// messages, so a field mapped to one has no plan.
			continue
		}
		if tag, ok := sf.Tag.Lookup("protobuf"); ok {
			parts := strings.Split(tag, ",")
			if len(parts) < 2 {
				return nil
			}
			n, err := strconv.Atoi(parts[1])
			if err != nil {
				return nil
			}
			byNumber[protoreflect.FieldNumber(n)] = i
		}
		if name, ok := sf.Tag.Lookup("protobuf_oneof"); ok {
			byOneof[protoreflect.Name(name)] = i
		}
	}
	for _, fd := range anyFields(md) {
		if od := fd.ContainingOneof(); od != nil && !od.IsSynthetic() {
			i, ok := byOneof[od.Name()]
			if !ok || st.Field(i).Type.Kind() != reflect.Interface {
				return nil
			}
			// A oneof's members are declared together, so they come
			// one after the other in anyFields: one entry visits them
			// where walkAnys visits the first (at most one is set).
			var pf *planField
			if n := len(p.fields); n > 0 && p.fields[n-1].kind == 'o' && p.fields[n-1].index == i {
				pf = p.fields[n-1]
			} else {
				for _, f := range p.fields {
					if f.kind == 'o' && f.index == i {
						return nil // not adjacent: the order would differ
					}
				}
				pf = &planField{index: i, kind: 'o', cases: map[reflect.Type]*planCase{}}
				p.fields = append(p.fields, pf)
			}
			wt, et := oneofWrapper(t, i, fd)
			if wt == nil {
				return nil
			}
			pf.cases[wt] = &planCase{name: string(fd.Name()), elemType: et}
			continue
		}
		i, ok := byNumber[fd.Number()]
		if !ok {
			return nil
		}
		ft := st.Field(i).Type
		f := &planField{index: i, name: string(fd.Name())}
		switch {
		case fd.IsList():
			if ft.Kind() != reflect.Slice || ft.Elem().Kind() != reflect.Pointer {
				return nil
			}
			f.kind, f.elemType = 'l', ft.Elem()
		case fd.IsMap():
			if ft.Kind() != reflect.Map || ft.Elem().Kind() != reflect.Pointer {
				return nil
			}
			f.kind, f.elemType = 'p', ft.Elem()
		default:
			if ft.Kind() != reflect.Pointer {
				return nil
			}
			f.kind, f.elemType = 'm', ft
		}
		p.fields = append(p.fields, f)
	}
	return p
}

// oneofWrapper finds the Go wrapper type of oneof member fd (held in
// struct field i of t) and the Go type of the message it wraps, by setting
// the member on a new message and looking at the field.
func oneofWrapper(t reflect.Type, i int, fd protoreflect.FieldDescriptor) (wrapper, elem reflect.Type) {
	m, ok := reflect.New(t.Elem()).Interface().(proto.Message)
	if !ok || fd.Message() == nil || fd.IsList() || fd.IsMap() {
		return nil, nil
	}
	pm := m.ProtoReflect()
	pm.Set(fd, pm.NewField(fd))
	v := reflect.ValueOf(m).Elem().Field(i)
	if v.IsNil() {
		return nil, nil
	}
	w := v.Elem() // *Parent_Member
	if w.Kind() != reflect.Pointer || w.Elem().Kind() != reflect.Struct || w.Elem().NumField() != 1 || w.Elem().Field(0).Kind() != reflect.Pointer || !w.Elem().Type().Field(0).IsExported() {
		return nil, nil
	}
	return w.Type(), w.Elem().Field(0).Type()
}
