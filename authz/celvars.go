package authz

import (
	"fmt"
	"reflect"

	"cel.dev/cel-go/common/types"
	"cel.dev/cel-go/common/types/ref"
	"cel.dev/cel-go/common/types/traits"
	"cel.dev/cel-go/interpreter"

	"github.com/gatehouse-edge/gatehouse/authn"
)

// The CEL variables `request` and `identity` (ROUTE_SPEC.md) are served by
// lazy maps over the Request and Identity: no Go map is built per check,
// and only the fields a rule reads are converted.

// activation resolves `request` and `identity` for one evaluation.
type activation struct {
	req Request
	r   fieldMap[requestFields]
	i   fieldMap[identityFields]
}

var _ interpreter.Activation = (*activation)(nil)

func (a *activation) ResolveName(name string) (any, bool) {
	switch name {
	case "request":
		return &a.r, true
	case "identity":
		return &a.i, true
	}
	return nil, false
}

func (a *activation) Parent() interpreter.Activation { return nil }

var requestKeys = []string{"method", "path", "host", "ip", "headers"}

type requestFields struct{ r *Request }

func (f requestFields) keys() []string { return requestKeys }

func (f requestFields) lookup(k string) (ref.Val, bool) {
	switch k {
	case "method":
		return types.String(f.r.Method), true
	case "path":
		return types.String(f.r.Path), true
	case "host":
		return types.String(f.r.Host), true
	case "ip":
		return types.String(f.r.SourceIP), true
	case "headers":
		h := f.r.Headers
		if h == nil {
			h = map[string]string{}
		}
		return types.NewStringStringMap(types.DefaultTypeAdapter, h), true
	}
	return nil, false
}

var identityKeys = []string{"provider", "kind", "subject", "claims", "scopes", "labels"}

type identityFields struct{ id *authn.Identity }

func (f identityFields) keys() []string { return identityKeys }

var (
	emptyClaims = map[string]any{}
	emptyLabels = map[string]string{}
)

func (f identityFields) lookup(k string) (ref.Val, bool) {
	id := f.id
	if id == nil {
		id = &authn.Identity{}
	}
	switch k {
	case "provider":
		return types.String(id.Provider), true
	case "kind":
		return types.String(id.Kind), true
	case "subject":
		return types.String(id.Subject), true
	case "claims":
		c := id.Claims()
		if c == nil {
			c = emptyClaims
		}
		return types.NewStringInterfaceMap(types.DefaultTypeAdapter, c), true
	case "scopes":
		return types.NewStringList(types.DefaultTypeAdapter, id.Scopes), true
	case "labels":
		l := id.Labels
		if l == nil {
			l = emptyLabels
		}
		return types.NewStringStringMap(types.DefaultTypeAdapter, l), true
	}
	return nil, false
}

type fielder interface {
	keys() []string
	lookup(string) (ref.Val, bool)
}

// fieldMap is a read-only CEL map over a fielder.
type fieldMap[F fielder] struct{ f F }

var _ traits.Mapper = (*fieldMap[requestFields])(nil)

func (m *fieldMap[F]) ConvertToNative(t reflect.Type) (any, error) {
	return nil, fmt.Errorf("type conversion of a request/identity map to %v is not supported", t)
}

func (m *fieldMap[F]) ConvertToType(t ref.Type) ref.Val {
	switch t {
	case types.MapType:
		return m
	case types.TypeType:
		return types.MapType
	}
	return types.NewErr("type conversion error from map to %s", t.TypeName())
}

func (m *fieldMap[F]) Equal(other ref.Val) ref.Val { return types.Bool(ref.Val(m) == other) }
func (m *fieldMap[F]) Type() ref.Type              { return types.MapType }
func (m *fieldMap[F]) Value() any                  { return m }
func (m *fieldMap[F]) Size() ref.Val               { return types.Int(len(m.f.keys())) }

func (m *fieldMap[F]) Contains(key ref.Val) ref.Val {
	_, ok := m.Find(key)
	return types.Bool(ok)
}

func (m *fieldMap[F]) Get(key ref.Val) ref.Val {
	v, ok := m.Find(key)
	if !ok {
		return types.ValOrErr(v, "no such key: %v", key)
	}
	return v
}

func (m *fieldMap[F]) Iterator() traits.Iterator {
	return types.NewStringList(types.DefaultTypeAdapter, m.f.keys()).Iterator()
}

func (m *fieldMap[F]) Find(key ref.Val) (ref.Val, bool) {
	k, ok := key.(types.String)
	if !ok {
		return nil, false
	}
	return m.f.lookup(string(k))
}
