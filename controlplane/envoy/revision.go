package envoy

import (
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	metadatav3 "github.com/envoyproxy/go-control-plane/envoy/type/metadata/v3"
	tracingv3 "github.com/envoyproxy/go-control-plane/envoy/type/tracing/v3"
	"github.com/gatehouse-edge/gatehouse/contract"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/known/structpb"
)

// Route metadata: every route of an Envoy node group carries the group's
// config version (the same value as the gatehouse.revision context
// extension) as filter_metadata["gatehouse"].revision, and the gRPC access
// log copies it into every entry as the custom tag config_version
// (AccessLogCommon.custom_tags), ext_authz or not.
const (
	// RouteMetadataNamespace is the filter_metadata namespace of the
	// metadata the control plane puts on every route.
	RouteMetadataNamespace = "gatehouse"
	// RouteRevisionKey is the field of that namespace holding the version;
	// the access log carries it as the tag contract.ConfigVersionTag.
	RouteRevisionKey = "revision"
)

// RevisionMetadata is the route metadata naming the config version.
func RevisionMetadata(revision string) *corev3.Metadata {
	return &corev3.Metadata{FilterMetadata: map[string]*structpb.Struct{
		RouteMetadataNamespace: {Fields: map[string]*structpb.Value{RouteRevisionKey: structpb.NewStringValue(revision)}},
	}}
}

// ConfigVersionCustomTag is the access log's custom tag reading the
// route's revision metadata (metadata kind Route).
func ConfigVersionCustomTag() *tracingv3.CustomTag {
	return &tracingv3.CustomTag{
		Tag: contract.ConfigVersionTag,
		Type: &tracingv3.CustomTag_Metadata_{Metadata: &tracingv3.CustomTag_Metadata{
			Kind: &metadatav3.MetadataKind{Kind: &metadatav3.MetadataKind_Route_{Route: &metadatav3.MetadataKind_Route{}}},
			MetadataKey: &metadatav3.MetadataKey{Key: RouteMetadataNamespace, Path: []*metadatav3.MetadataKey_PathSegment{
				{Segment: &metadatav3.MetadataKey_PathSegment_Key{Key: RouteRevisionKey}},
			}},
		}},
	}
}

// WithRevision returns vhosts with every route carrying
// RevisionMetadata(revision). The virtual hosts and routes are new
// messages sharing every other field with the originals, which are left
// as they are (compiled specs serve many groups and versions).
func WithRevision(vhosts []*routev3.VirtualHost, revision string) []*routev3.VirtualHost {
	meta := RevisionMetadata(revision)
	out := make([]*routev3.VirtualHost, len(vhosts))
	for i, vh := range vhosts {
		c := shallowCopy(vh)
		c.Routes = make([]*routev3.Route, len(vh.GetRoutes()))
		for j, rt := range vh.GetRoutes() {
			rc := shallowCopy(rt)
			rc.Metadata = meta
			c.Routes[j] = rc
		}
		out[i] = c
	}
	return out
}

// shallowCopy is a new message with m's populated fields: sub-messages,
// lists and maps are shared, not cloned. Callers replace the fields they
// change instead of mutating shared ones.
func shallowCopy[M proto.Message](m M) M {
	src := m.ProtoReflect()
	dst := src.New()
	src.Range(func(fd protoreflect.FieldDescriptor, v protoreflect.Value) bool {
		dst.Set(fd, v)
		return true
	})
	return dst.Interface().(M)
}
