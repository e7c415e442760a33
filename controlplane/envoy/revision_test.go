package envoy

import (
	"fmt"
	"testing"

	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	grpcalsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/access_loggers/grpc/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	"github.com/gatehouse-edge/gatehouse/contract"
	"github.com/google/go-cmp/cmp"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/testing/protocmp"
)

// TestAccessLogCarriesConfigVersionTag: the listener's gRPC access log
// asks Envoy for the custom tag config_version, read from the route's
// metadata gatehouse.revision (metadata kind Route), so ALS entries of
// routes without ext_authz name their version too.
func TestAccessLogCarriesConfigVersionTag(t *testing.T) {
	l, err := Listener(ListenerOptions{Name: HTTPListener, Address: "0.0.0.0:8080", RouteConfig: RouteConfigName})
	if err != nil {
		t.Fatal(err)
	}
	hcm := &hcmv3.HttpConnectionManager{}
	if err := l.GetFilterChains()[0].GetFilters()[0].GetTypedConfig().UnmarshalTo(hcm); err != nil {
		t.Fatal(err)
	}
	if len(hcm.GetAccessLog()) != 1 {
		t.Fatalf("access logs: %d, want 1", len(hcm.GetAccessLog()))
	}
	alc := &grpcalsv3.HttpGrpcAccessLogConfig{}
	if err := hcm.GetAccessLog()[0].GetTypedConfig().UnmarshalTo(alc); err != nil {
		t.Fatal(err)
	}
	if err := alc.ValidateAll(); err != nil {
		t.Fatal(err)
	}
	tags := alc.GetCommonConfig().GetCustomTags()
	if len(tags) != 1 {
		t.Fatalf("custom tags %v, want one", tags)
	}
	tag := tags[0]
	md := tag.GetMetadata()
	if tag.GetTag() != "config_version" || md.GetKind().GetRoute() == nil ||
		md.GetMetadataKey().GetKey() != "gatehouse" || len(md.GetMetadataKey().GetPath()) != 1 ||
		md.GetMetadataKey().GetPath()[0].GetKey() != "revision" {
		t.Errorf("custom tag %v, want config_version from route metadata gatehouse.revision", tag)
	}
}

// TestWithRevisionStampsEveryRoute: every route of every virtual host
// carries filter_metadata gatehouse.revision = the version, public
// routes (ext_authz disabled) included; everything else is as built, and
// the compiled virtual host (shared by other groups and versions) is
// untouched.
func TestWithRevisionStampsEveryRoute(t *testing.T) {
	vh, err := VirtualHost(petstoreExample(t))
	if err != nil {
		t.Fatal(err)
	}
	before := proto.Clone(vh).(*routev3.VirtualHost)
	public := 0
	got := WithRevision([]*routev3.VirtualHost{vh}, "3f2a9c01")
	if len(got) != 1 || len(got[0].GetRoutes()) != len(vh.GetRoutes()) || len(vh.GetRoutes()) == 0 {
		t.Fatalf("WithRevision: %d vhosts", len(got))
	}
	if d := cmp.Diff(before, vh, protocmp.Transform()); d != "" {
		t.Fatalf("the compiled virtual host changed (-before +after):\n%s", d)
	}
	if err := got[0].ValidateAll(); err != nil {
		t.Fatal(err)
	}
	for i, rt := range got[0].GetRoutes() {
		v := rt.GetMetadata().GetFilterMetadata()["gatehouse"].GetFields()["revision"].GetStringValue()
		if v != "3f2a9c01" {
			t.Errorf("route %s: metadata %v, want gatehouse.revision 3f2a9c01", rt.GetName(), rt.GetMetadata())
		}
		if perRouteAuthzDisabled(t, rt) {
			public++
		}
		want := proto.Clone(vh.GetRoutes()[i]).(*routev3.Route)
		want.Metadata = RevisionMetadata("3f2a9c01")
		if d := cmp.Diff(want, rt, protocmp.Transform()); d != "" {
			t.Errorf("route %s differs beyond its metadata (-want +got):\n%s", rt.GetName(), d)
		}
	}
	if public == 0 {
		t.Fatal("the petstore example has no public route to check")
	}
	want := proto.Clone(vh).(*routev3.VirtualHost)
	want.Routes = nil
	c := proto.Clone(got[0]).(*routev3.VirtualHost)
	c.Routes = nil
	if d := cmp.Diff(want, c, protocmp.Transform()); d != "" {
		t.Errorf("virtual host differs beyond its routes (-want +got):\n%s", d)
	}
}

// perRouteAuthzDisabled reports whether a route turns ext_authz off.
func perRouteAuthzDisabled(t *testing.T, rt *routev3.Route) bool {
	t.Helper()
	per := rt.GetTypedPerFilterConfig()[contract.ExtAuthzFilter]
	if per == nil {
		return false
	}
	m, err := per.UnmarshalNew()
	if err != nil {
		t.Fatal(err)
	}
	type disabler interface{ GetDisabled() bool }
	d, ok := m.(disabler)
	return ok && d.GetDisabled()
}

// fillEveryField sets every field of m (one member of each oneof) to a
// value that is not its default.
func fillEveryField(m protoreflect.Message) {
	fields := m.Descriptor().Fields()
	for i := 0; i < fields.Len(); i++ {
		fd := fields.Get(i)
		if od := fd.ContainingOneof(); od != nil && m.WhichOneof(od) != nil {
			continue
		}
		switch {
		case fd.IsList():
			l := m.Mutable(fd).List()
			l.Append(scalarOrMessage(fd, l.NewElement))
		case fd.IsMap():
			mp := m.Mutable(fd).Map()
			mp.Set(protoreflect.ValueOfString("k").MapKey(), scalarOrMessage(fd.MapValue(), mp.NewValue))
		case fd.Message() != nil:
			m.Set(fd, m.NewField(fd))
		default:
			m.Set(fd, scalarOrMessage(fd, nil))
		}
	}
	m.SetUnknown(protoreflect.RawFields{0xf8, 0x7f, 0x01}) // field 2047, varint 1
}

func scalarOrMessage(fd protoreflect.FieldDescriptor, newMsg func() protoreflect.Value) protoreflect.Value {
	switch fd.Kind() {
	case protoreflect.MessageKind, protoreflect.GroupKind:
		return newMsg()
	case protoreflect.StringKind:
		return protoreflect.ValueOfString("x")
	case protoreflect.BytesKind:
		return protoreflect.ValueOfBytes([]byte("x"))
	case protoreflect.BoolKind:
		return protoreflect.ValueOfBool(true)
	case protoreflect.EnumKind:
		return protoreflect.ValueOfEnum(1)
	case protoreflect.Int32Kind, protoreflect.Sint32Kind, protoreflect.Sfixed32Kind:
		return protoreflect.ValueOfInt32(1)
	case protoreflect.Int64Kind, protoreflect.Sint64Kind, protoreflect.Sfixed64Kind:
		return protoreflect.ValueOfInt64(1)
	case protoreflect.Uint32Kind, protoreflect.Fixed32Kind:
		return protoreflect.ValueOfUint32(1)
	case protoreflect.Uint64Kind, protoreflect.Fixed64Kind:
		return protoreflect.ValueOfUint64(1)
	case protoreflect.FloatKind:
		return protoreflect.ValueOfFloat32(1)
	case protoreflect.DoubleKind:
		return protoreflect.ValueOfFloat64(1)
	}
	panic(fmt.Sprintf("field %s: kind %v", fd.FullName(), fd.Kind()))
}

// TestTypedCopiesCopyEveryField: the typed shallow copies WithRevision
// makes carry every field of the generated VirtualHost and Route (and
// their unknown fields), sharing the values; a field added to the
// generated types that the copies do not know fails here.
func TestTypedCopiesCopyEveryField(t *testing.T) {
	vh, rt := &routev3.VirtualHost{}, &routev3.Route{}
	fillEveryField(vh.ProtoReflect())
	fillEveryField(rt.ProtoReflect())
	vh.Routes = []*routev3.Route{rt}
	got := WithRevision([]*routev3.VirtualHost{vh}, "v1")[0]
	if got == vh || got.Routes[0] == rt {
		t.Fatal("WithRevision returned the originals")
	}
	checkCopy := func(name string, orig, c protoreflect.Message) {
		fields := orig.Descriptor().Fields()
		for i := 0; i < fields.Len(); i++ {
			fd := fields.Get(i)
			if orig.Has(fd) && !c.Has(fd) {
				t.Errorf("%s: the copy lacks %s", name, fd.Name())
			}
		}
		if string(c.GetUnknown()) != string(orig.GetUnknown()) {
			t.Errorf("%s: unknown fields %x, want %x", name, c.GetUnknown(), orig.GetUnknown())
		}
	}
	checkCopy("virtual host", vh.ProtoReflect(), got.ProtoReflect())
	checkCopy("route", rt.ProtoReflect(), got.Routes[0].ProtoReflect())
	want := proto.Clone(rt).(*routev3.Route)
	want.Metadata = RevisionMetadata("v1")
	if d := cmp.Diff(want, got.Routes[0], protocmp.Transform()); d != "" {
		t.Errorf("route differs beyond its metadata (-want +got):\n%s", d)
	}
	//lint:ignore SA1019 Cors is one field the copy must share, deprecated or not
	if got.Routes[0].Match != rt.Match || got.Cors != vh.Cors {
		t.Error("the copies do not share the sub-messages")
	}
}
