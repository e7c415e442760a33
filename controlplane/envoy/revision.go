package envoy

import (
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	metadatav3 "github.com/envoyproxy/go-control-plane/envoy/type/metadata/v3"
	tracingv3 "github.com/envoyproxy/go-control-plane/envoy/type/tracing/v3"
	"github.com/gatehouse-edge/gatehouse/contract"
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
	n := 0
	for _, vh := range vhosts {
		n += len(vh.GetRoutes())
	}
	// One allocation each for the virtual hosts, the routes and the
	// route lists of all of them.
	vcs := make([]routev3.VirtualHost, len(vhosts))
	rcs := make([]routev3.Route, n)
	lists := make([]*routev3.Route, n)
	out := make([]*routev3.VirtualHost, len(vhosts))
	for i, vh := range vhosts {
		c := &vcs[i]
		copyVirtualHost(c, vh)
		routes := vh.GetRoutes()
		c.Routes = lists[:len(routes):len(routes)]
		lists = lists[len(routes):]
		for j, rt := range routes {
			rc := &rcs[0]
			rcs = rcs[1:]
			copyRoute(rc, rt)
			rc.Metadata = meta
			c.Routes[j] = rc
		}
		out[i] = c
	}
	return out
}

// copyVirtualHost sets every field of dst (a new message) to src's:
// sub-messages, lists and maps are shared, not cloned. It is a typed
// shallow copy (protoreflect's Range and Set cost several times more);
// TestTypedCopiesCopyEveryField fails when the generated type gains a
// field this does not copy.
func copyVirtualHost(dst, src *routev3.VirtualHost) {
	dst.Name = src.Name
	dst.Domains = src.Domains
	dst.Routes = src.Routes
	dst.Matcher = src.Matcher
	dst.RequireTls = src.RequireTls
	dst.VirtualClusters = src.VirtualClusters
	dst.RateLimits = src.RateLimits
	dst.RequestHeadersToAdd = src.RequestHeadersToAdd
	dst.RequestHeadersToRemove = src.RequestHeadersToRemove
	dst.ResponseHeadersToAdd = src.ResponseHeadersToAdd
	dst.ResponseHeadersToRemove = src.ResponseHeadersToRemove
	//lint:ignore SA1019 a copy keeps every field, deprecated ones too
	dst.Cors = src.Cors
	dst.TypedPerFilterConfig = src.TypedPerFilterConfig
	dst.IncludeRequestAttemptCount = src.IncludeRequestAttemptCount
	dst.IncludeAttemptCountInResponse = src.IncludeAttemptCountInResponse
	dst.RetryPolicy = src.RetryPolicy
	dst.RetryPolicyTypedConfig = src.RetryPolicyTypedConfig
	dst.HedgePolicy = src.HedgePolicy
	dst.IncludeIsTimeoutRetryHeader = src.IncludeIsTimeoutRetryHeader
	//lint:ignore SA1019 a copy keeps every field, deprecated ones too
	dst.PerRequestBufferLimitBytes = src.PerRequestBufferLimitBytes
	dst.RequestBodyBufferLimit = src.RequestBodyBufferLimit
	dst.RequestMirrorPolicies = src.RequestMirrorPolicies
	dst.Metadata = src.Metadata
	dst.RouteSpecifiers = src.RouteSpecifiers
	if u := src.ProtoReflect().GetUnknown(); len(u) > 0 {
		dst.ProtoReflect().SetUnknown(u)
	}
}

// copyRoute is copyVirtualHost for a route.
func copyRoute(dst, src *routev3.Route) {
	dst.Name = src.Name
	dst.Match = src.Match
	dst.Action = src.Action
	dst.Metadata = src.Metadata
	dst.Decorator = src.Decorator
	dst.TypedPerFilterConfig = src.TypedPerFilterConfig
	dst.RequestHeadersToAdd = src.RequestHeadersToAdd
	dst.RequestHeadersToRemove = src.RequestHeadersToRemove
	dst.ResponseHeadersToAdd = src.ResponseHeadersToAdd
	dst.ResponseHeadersToRemove = src.ResponseHeadersToRemove
	dst.Tracing = src.Tracing
	//lint:ignore SA1019 a copy keeps every field, deprecated ones too
	dst.PerRequestBufferLimitBytes = src.PerRequestBufferLimitBytes
	dst.StatPrefix = src.StatPrefix
	dst.RequestBodyBufferLimit = src.RequestBodyBufferLimit
	dst.RouteSpecifiers = src.RouteSpecifiers
	if u := src.ProtoReflect().GetUnknown(); len(u) > 0 {
		dst.ProtoReflect().SetUnknown(u)
	}
}
