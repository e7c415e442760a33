package frontdoor

import (
	"os"
	"strconv"
	"strings"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	metadatav3 "github.com/envoyproxy/go-control-plane/envoy/type/metadata/v3"
	tracingv3 "github.com/envoyproxy/go-control-plane/envoy/type/tracing/v3"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/types/known/structpb"
)

// customTags plays CommonGrpcAccessLogConfig.custom_tags as Envoy fills
// AccessLogCommon.custom_tags: each tag's value (a literal, an
// environment variable, a request header, or a metadata value of the
// matched route or of the request's dynamic metadata), its default_value
// when there is none; a tag whose value is empty is left out. Kinds the
// door has no data for (cluster and host metadata, formatted values) get
// their default value.
func customTags(tags []*tracingv3.CustomTag, rt *routev3.Route, r Request, dynamic *corev3.Metadata) map[string]string {
	var out map[string]string
	for _, t := range tags {
		var v string
		switch {
		case t.GetLiteral() != nil:
			v = t.GetLiteral().GetValue()
		case t.GetEnvironment() != nil:
			e := t.GetEnvironment()
			if v = os.Getenv(e.GetName()); v == "" {
				v = e.GetDefaultValue()
			}
		case t.GetRequestHeader() != nil:
			h := t.GetRequestHeader()
			if v = r.Headers[strings.ToLower(h.GetName())]; v == "" {
				v = h.GetDefaultValue()
			}
		case t.GetMetadata() != nil:
			m := t.GetMetadata()
			var md *corev3.Metadata
			switch m.GetKind().GetKind().(type) {
			case *metadatav3.MetadataKind_Route_:
				md = rt.GetMetadata() // nil without a matched route
			case *metadatav3.MetadataKind_Request_:
				md = dynamic
			}
			if v = metadataString(md, m.GetMetadataKey()); v == "" {
				v = m.GetDefaultValue()
			}
		}
		if v == "" {
			continue
		}
		if out == nil {
			out = map[string]string{}
		}
		out[t.GetTag()] = v
	}
	return out
}

// metadataString is the value at key (namespace, then path) as Envoy
// renders a metadata custom tag: strings as they are, numbers and bools
// printed, structs and lists as JSON; "" when absent.
func metadataString(md *corev3.Metadata, key *metadatav3.MetadataKey) string {
	s := md.GetFilterMetadata()[key.GetKey()]
	if s == nil {
		return ""
	}
	val := structpb.NewStructValue(s)
	for _, seg := range key.GetPath() {
		val = val.GetStructValue().GetFields()[seg.GetKey()]
		if val == nil {
			return ""
		}
	}
	switch k := val.GetKind().(type) {
	case *structpb.Value_StringValue:
		return k.StringValue
	case *structpb.Value_NumberValue:
		return strconv.FormatFloat(k.NumberValue, 'f', -1, 64)
	case *structpb.Value_BoolValue:
		return strconv.FormatBool(k.BoolValue)
	case *structpb.Value_StructValue, *structpb.Value_ListValue:
		b, err := protojson.Marshal(val)
		if err != nil {
			return ""
		}
		return string(b)
	}
	return ""
}
