// Package contract is the wire contract between Gatehouse's processes:
// which xDS resource types carry sidecar config, how they are named, how a
// payload is wrapped, and every name two processes must agree on
// (names.go: context extensions, the ext_authz filter name and metadata
// namespace, the config-version key and access-log tag, x-gatehouse-*
// headers, cluster names, default addresses). It keeps no
// global state and imports no Gatehouse package, so every side can depend
// on it (internal/archtest checks both).
//
// Sidecar payloads travel as envoy.config.core.v3.TypedExtensionConfig
// resources (the ECDS type, which carries a name) whose typed_config is an
// xds.type.v3.TypedStruct: the payload type URL plus the payload as a
// google.protobuf.Struct built from its JSON form. One resource per spec and
// concern, named "<prefix><spec name>", so one changed spec changes one
// resource. The RateLimitConfig of domain "gatehouse" is served as well, for
// envoyproxy/ratelimit. A Wrapper does the wrapping in memory it reuses,
// for the control plane's compile workers.
package contract

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strings"

	"github.com/cncf/xds/go/xds/type/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/structpb"
)

// xDS type URLs the sidecars subscribe to.
const (
	ExtensionConfigType = "type.googleapis.com/envoy.config.core.v3.TypedExtensionConfig"
	RateLimitConfigType = "type.googleapis.com/ratelimit.config.ratelimit.v3.RateLimitConfig"
)

// Payload type URLs inside the TypedStruct, and the resource name prefix of
// each concern.
const (
	AuthzPolicyType      = "type.googleapis.com/gatehouse.authz.v1.SpecPolicy"
	AuthzPrefix          = "gatehouse.authz/"
	RateLimitRulesType   = "type.googleapis.com/gatehouse.ratelimit.v1.SpecRules"
	RateLimitPrefix      = "gatehouse.ratelimit/"
	AccessLogSettingType = "type.googleapis.com/gatehouse.accesslog.v1.SpecSettings"
	AccessLogPrefix      = "gatehouse.accesslog/"
)

// RateLimitDomain is the rate-limit domain of every EdgeRoute limit.
const RateLimitDomain = "gatehouse"

// typedStructURL is the type URL anypb.New gives a TypedStruct.
var typedStructURL = "type.googleapis.com/" + string((&v3.TypedStruct{}).ProtoReflect().Descriptor().FullName())

// Wrap encodes v (any JSON-marshalable value) as a named extension config
// with the given payload type.
func Wrap(name, payloadType string, v any) (*corev3.TypedExtensionConfig, error) {
	tec, _, err := WrapTyped(name, payloadType, v)
	return tec, err
}

// WrapTyped is Wrap that also returns the TypedStruct packed into the
// resource's typed_config, so a caller can check it without decoding the
// Any again. The TypedStruct must not be modified.
func WrapTyped(name, payloadType string, v any) (*corev3.TypedExtensionConfig, *v3.TypedStruct, error) {
	return new(Wrapper).WrapTyped(name, payloadType, v)
}

// WrapTypedJSON is WrapTyped for a payload already encoded: raw must be
// what json.Marshal wrote for it (a caller that also needs those bytes,
// e.g. to hash them, then encodes only once).
func WrapTypedJSON(name, payloadType string, raw []byte) (*corev3.TypedExtensionConfig, *v3.TypedStruct, error) {
	return new(Wrapper).WrapTypedJSON(name, payloadType, raw)
}

// A Wrapper wraps payloads as WrapTypedJSON does, but builds the
// TypedStructs it returns in memory it reuses: they are valid only until
// the next Reset. Use one where the TypedStructs are only looked at
// briefly (the control plane validates them, then drops them) and many
// payloads are wrapped, so their memory is not garbage each time. The
// extension configs it returns own their memory and stay valid. A Wrapper
// is used by one goroutine at a time; the zero value is ready to use.
type Wrapper struct {
	m       messages
	scratch []byte        // the Struct's wire form being built
	keys    []string      // wireOf's duplicate-key check
	buf     bytes.Buffer  // Encode's output
	enc     *json.Encoder // writes to buf
}

// Encode is json.Marshal(v) written into w's memory: the bytes are valid
// until the next Encode or WrapTyped.
func (w *Wrapper) Encode(v any) ([]byte, error) {
	if w.enc == nil {
		w.enc = json.NewEncoder(&w.buf)
	}
	w.buf.Reset()
	if err := w.enc.Encode(v); err != nil {
		return nil, err
	}
	b := w.buf.Bytes()
	return b[:len(b)-1], nil // Encode adds a newline; json.Marshal does not
}

// Reset hands the memory of every TypedStruct returned so far out again:
// they must not be used after it.
func (w *Wrapper) Reset() { w.m.reset() }

// WrapTyped is WrapTyped building the TypedStruct in w's memory.
func (w *Wrapper) WrapTyped(name, payloadType string, v any) (*corev3.TypedExtensionConfig, *v3.TypedStruct, error) {
	raw, err := w.Encode(v)
	if err != nil {
		return nil, nil, fmt.Errorf("resource %s: encoding payload: %w", name, err)
	}
	return w.WrapTypedJSON(name, payloadType, raw)
}

// WrapTypedJSON is WrapTypedJSON building the TypedStruct in w's memory.
func (w *Wrapper) WrapTypedJSON(name, payloadType string, raw []byte) (*corev3.TypedExtensionConfig, *v3.TypedStruct, error) {
	// The JSON form decoded straight into structpb values: what
	// protojson.Unmarshal into a Struct gives (numbers as float64), at a
	// fraction of its cost, and in the same pass the Struct's wire form,
	// so the Any needs no proto.Marshal. structAndWire is the fast path;
	// encoding/json decodes what it does not take.
	st, structWire, err := w.m.structAndWire(raw, w.scratch[:0])
	if err == nil {
		w.scratch = structWire
		ts := &v3.TypedStruct{TypeUrl: payloadType, Value: st}
		return &corev3.TypedExtensionConfig{Name: name, TypedConfig: typedStructAny(payloadType, structWire)}, ts, nil
	}
	var m map[string]any
	if err := json.Unmarshal(raw, &m); err != nil || m == nil {
		if err == nil {
			err = errors.New("got null")
		}
		return nil, nil, fmt.Errorf("resource %s: payload must be a JSON object: %w", name, err)
	}
	if st, err = structpb.NewStruct(m); err != nil {
		return nil, nil, fmt.Errorf("resource %s: payload must be a JSON object: %w", name, err)
	}
	ts := &v3.TypedStruct{TypeUrl: payloadType, Value: st}
	a, err := anypb.New(ts)
	if err != nil {
		return nil, nil, fmt.Errorf("resource %s: %w", name, err)
	}
	return &corev3.TypedExtensionConfig{Name: name, TypedConfig: a}, ts, nil
}

// WrapTypedNoStruct is WrapTyped with the TypedStruct of
// WrapTypedJSONNoStruct (no Value).
func (w *Wrapper) WrapTypedNoStruct(name, payloadType string, v any) (*corev3.TypedExtensionConfig, *v3.TypedStruct, error) {
	raw, err := w.Encode(v)
	if err != nil {
		return nil, nil, fmt.Errorf("resource %s: encoding payload: %w", name, err)
	}
	return w.WrapTypedJSONNoStruct(name, payloadType, raw)
}

// WrapTypedJSONNoStruct is WrapTypedJSON for a caller that only
// validates the TypedStruct it gets back: the extension config is the
// same, byte for byte, but the TypedStruct carries the payload type URL
// and no Value (the Struct is not built, only its wire form). Validating
// it finds what validating the whole one would: PGV has no rules for a
// google.protobuf.Struct, and a Struct cannot hold an Any (its values are
// null, numbers, strings, bools, lists and Structs). On a payload the fast
// path does not take, it is WrapTypedJSON (the Struct is built).
func (w *Wrapper) WrapTypedJSONNoStruct(name, payloadType string, raw []byte) (*corev3.TypedExtensionConfig, *v3.TypedStruct, error) {
	structWire, keys, err := wireOf(raw, w.scratch[:0], w.keys)
	w.keys = keys
	if err != nil {
		return w.WrapTypedJSON(name, payloadType, raw)
	}
	w.scratch = structWire
	return &corev3.TypedExtensionConfig{Name: name, TypedConfig: typedStructAny(payloadType, structWire)}, &v3.TypedStruct{TypeUrl: payloadType}, nil
}

// typedStructAny is the Any of the TypedStruct of payloadType whose
// Struct's wire form is structWire.
func typedStructAny(payloadType string, structWire []byte) *anypb.Any {
	// The TypedStruct: type_url, then the Struct.
	n := len(payloadType) + len(structWire)
	wire := make([]byte, 0, 2+protowire.SizeVarint(uint64(len(payloadType)))+protowire.SizeVarint(uint64(len(structWire)))+n)
	wire = protowire.AppendTag(wire, 1, protowire.BytesType)
	wire = protowire.AppendString(wire, payloadType)
	wire = protowire.AppendTag(wire, 2, protowire.BytesType)
	wire = protowire.AppendBytes(wire, structWire)
	return &anypb.Any{TypeUrl: typedStructURL, Value: wire}
}

// Unwrap decodes a resource made by Wrap into v, checking the payload type.
func Unwrap(res *corev3.TypedExtensionConfig, payloadType string, v any) error {
	ts := &v3.TypedStruct{}
	if err := res.GetTypedConfig().UnmarshalTo(ts); err != nil {
		return fmt.Errorf("resource %s: typed_config is not an xds.type.v3.TypedStruct: %w", res.GetName(), err)
	}
	if ts.GetTypeUrl() != payloadType {
		return fmt.Errorf("resource %s: payload type is %q, want %q", res.GetName(), ts.GetTypeUrl(), payloadType)
	}
	raw, err := protojson.Marshal(ts.GetValue())
	if err != nil {
		return fmt.Errorf("resource %s: %w", res.GetName(), err)
	}
	dec := json.NewDecoder(strings.NewReader(string(raw)))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return fmt.Errorf("resource %s: decoding payload: %w", res.GetName(), err)
	}
	return nil
}

// SpecName returns the spec a resource belongs to, given its prefix, and
// whether the name carries that prefix.
func SpecName(resourceName, prefix string) (string, bool) {
	return strings.CutPrefix(resourceName, prefix)
}

// Collect decodes one concern's payloads from a set of TypedExtensionConfig
// resources (one xDS response): those whose name has prefix are unwrapped
// as payloadType into a T; the others belong to another concern and are
// skipped. specOf names the spec a payload says it is for, which must match
// the resource name. Any bad resource fails the whole set, so the caller
// NACKs and keeps its last good config.
func Collect[T any](resources []*anypb.Any, prefix, payloadType string, specOf func(*T) string) ([]*T, error) {
	var out []*T
	var problems []string
	for _, a := range resources {
		tec := &corev3.TypedExtensionConfig{}
		if err := a.UnmarshalTo(tec); err != nil {
			problems = append(problems, fmt.Sprintf("resource of type %s is not a TypedExtensionConfig: %v", a.GetTypeUrl(), err))
			continue
		}
		name, ok := SpecName(tec.GetName(), prefix)
		if !ok {
			continue
		}
		v := new(T)
		if err := Unwrap(tec, payloadType, v); err != nil {
			problems = append(problems, err.Error())
			continue
		}
		if got := specOf(v); got != name {
			problems = append(problems, fmt.Sprintf("resource %s carries the payload of spec %q", tec.GetName(), got))
			continue
		}
		out = append(out, v)
	}
	if len(problems) > 0 {
		return nil, errors.New(strings.Join(problems, "; "))
	}
	return out, nil
}
