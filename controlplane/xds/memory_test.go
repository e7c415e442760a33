package xds

import (
	"context"
	"fmt"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
	"unsafe"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"github.com/envoyproxy/go-control-plane/pkg/cache/types"
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"github.com/prometheus/client_golang/prometheus"
	statuspb "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc/encoding"
	"google.golang.org/grpc/mem"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
)

// within reports whether inner's bytes lie inside outer's.
func within(inner, outer []byte) bool {
	if len(inner) == 0 || len(outer) == 0 {
		return false
	}
	i, o := uintptr(unsafe.Pointer(unsafe.SliceData(inner))), uintptr(unsafe.Pointer(unsafe.SliceData(outer)))
	return i >= o && i+uintptr(len(inner)) <= o+uintptr(len(outer))
}

// TestEncodingsShareOneBuffer: a type of a snapshot is held once per
// group: every SotW entry is a slice of the wildcard body, and every
// resource's encoding a slice of its entry (a fleet's memory is these
// encodings plus what each stream holds).
func TestEncodingsShareOneBuffer(t *testing.T) {
	c := newWatchCache(nil)
	g := c.group("edge")
	g.snap = snapshot(t, "v1", []types.Resource{cluster("c-b", time.Second, 100), cluster("c-a", time.Second, 10)}, nil)
	e, err := g.encoded(resourcev3.ClusterType)
	if err != nil {
		t.Fatal(err)
	}
	all := e.body(e.names)
	for _, n := range e.names {
		if !within(e.entries[n], all) || !within(e.raw[n], e.entries[n]) {
			t.Fatalf("%s: its entry and encoding are copies, not slices of the type's one buffer", n)
		}
		var m discoveryv3.DiscoveryResponse
		if err := proto.Unmarshal(all, &m); err != nil || len(m.GetResources()) != 2 {
			t.Fatalf("body does not decode as the resources: %v", err)
		}
	}
}

// TestRequestNamesAreCanonical: the resource names of every request are
// one string each, however many streams ask for them (go-control-plane
// keeps each stream's request and subscription).
func TestRequestNamesAreCanonical(t *testing.T) {
	c := codec{proto: encoding.GetCodecV2("proto")}
	b, err := proto.Marshal(&discoveryv3.DiscoveryRequest{TypeUrl: resourcev3.EndpointType, ResourceNames: []string{"svc-0001/api", "svc-0002/api"}})
	if err != nil {
		t.Fatal(err)
	}
	var r1, r2 discoveryv3.DiscoveryRequest
	for _, r := range []*discoveryv3.DiscoveryRequest{&r1, &r2} {
		if err := c.Unmarshal(mem.BufferSlice{mem.SliceBuffer(b)}, r); err != nil {
			t.Fatal(err)
		}
	}
	for i := range r1.ResourceNames {
		if unsafe.StringData(r1.ResourceNames[i]) != unsafe.StringData(r2.ResourceNames[i]) {
			t.Fatalf("name %q decoded twice is two strings", r1.ResourceNames[i])
		}
	}
	d, err := proto.Marshal(&discoveryv3.DeltaDiscoveryRequest{TypeUrl: resourcev3.EndpointType, ResourceNamesSubscribe: []string{"svc-0001/api"}, InitialResourceVersions: map[string]string{"svc-0001/api": "h"}})
	if err != nil {
		t.Fatal(err)
	}
	var dr discoveryv3.DeltaDiscoveryRequest
	if err := c.Unmarshal(mem.BufferSlice{mem.SliceBuffer(d)}, &dr); err != nil {
		t.Fatal(err)
	}
	if unsafe.StringData(dr.ResourceNamesSubscribe[0]) != unsafe.StringData(r1.ResourceNames[0]) || dr.InitialResourceVersions["svc-0001/api"] != "h" {
		t.Fatalf("delta request names are not the canonical strings: %+v", &dr)
	}
	// The type URL and version a watch keeps with its request: one string
	// each, however many streams send them.
	v, err := proto.Marshal(&discoveryv3.DiscoveryRequest{TypeUrl: resourcev3.EndpointType, VersionInfo: "7f3a9c"})
	if err != nil {
		t.Fatal(err)
	}
	dv, err := proto.Marshal(&discoveryv3.DeltaDiscoveryRequest{TypeUrl: resourcev3.EndpointType})
	if err != nil {
		t.Fatal(err)
	}
	var v1, v2 discoveryv3.DiscoveryRequest
	var d1 discoveryv3.DeltaDiscoveryRequest
	for _, r := range []struct {
		b []byte
		m any
	}{{v, &v1}, {v, &v2}, {dv, &d1}} {
		if err := c.Unmarshal(mem.BufferSlice{mem.SliceBuffer(r.b)}, r.m); err != nil {
			t.Fatal(err)
		}
	}
	if unsafe.StringData(v1.TypeUrl) != unsafe.StringData(v2.TypeUrl) || unsafe.StringData(v1.VersionInfo) != unsafe.StringData(v2.VersionInfo) || unsafe.StringData(d1.TypeUrl) != unsafe.StringData(v1.TypeUrl) {
		t.Fatal("a request's type URL or version decoded twice is two strings")
	}
}

// TestRequestDecodesAsProto: the SotW request decoder that takes resource
// names from their canonical strings reads every field as protobuf does
// (names in order, duplicates and empty ones kept, the other fields and
// unknown ones as they are), refuses a name that is not UTF-8 as protobuf
// does, and does not allocate per name for names seen before (a node
// repeats hundreds in every ACK).
func TestRequestDecodesAsProto(t *testing.T) {
	c := codec{proto: encoding.GetCodecV2("proto")}
	var names []string
	for i := range 300 {
		names = append(names, fmt.Sprintf("svc-%04d/api", i))
	}
	names = append(names, "", "svc-0001/api")
	want := &discoveryv3.DiscoveryRequest{
		VersionInfo: "v7", Node: &corev3.Node{Id: "n1", Cluster: "edge", UserAgentName: "envoy"},
		ResourceNames: names, TypeUrl: resourcev3.EndpointType, ResponseNonce: "12",
		ErrorDetail: &statuspb.Status{Code: 3, Message: "rejected"},
	}
	want.ProtoReflect().SetUnknown(protowire.AppendString(protowire.AppendTag(nil, 99, protowire.BytesType), "later field"))
	b, err := proto.Marshal(want)
	if err != nil {
		t.Fatal(err)
	}
	var got discoveryv3.DiscoveryRequest
	if err := c.Unmarshal(mem.BufferSlice{mem.SliceBuffer(b)}, &got); err != nil {
		t.Fatal(err)
	}
	if !proto.Equal(&got, want) {
		t.Fatalf("the decoded request differs from the one encoded: %d names (want %d), version %q, nonce %q, node %v, error %v, unknown fields %q",
			len(got.GetResourceNames()), len(names), got.GetVersionInfo(), got.GetResponseNonce(), got.GetNode(), got.GetErrorDetail(), got.ProtoReflect().GetUnknown())
	}
	allocs := testing.AllocsPerRun(20, func() {
		var r discoveryv3.DiscoveryRequest
		if err := c.Unmarshal(mem.BufferSlice{mem.SliceBuffer(b)}, &r); err != nil {
			t.Fatal(err)
		}
	})
	if allocs > 50 {
		t.Errorf("decoding a request of %d known names: %.0f allocations, want no allocation per name", len(names), allocs)
	}
	bad, err := proto.Marshal(&discoveryv3.DiscoveryRequest{TypeUrl: resourcev3.EndpointType})
	if err != nil {
		t.Fatal(err)
	}
	bad = protowire.AppendBytes(protowire.AppendTag(bad, 3, protowire.BytesType), []byte{0xff, 0xfe})
	if err := c.Unmarshal(mem.BufferSlice{mem.SliceBuffer(bad)}, &got); err == nil {
		t.Fatal("a resource name that is not UTF-8 was accepted")
	}
}

// TestRequestDecodeSizesNamesOnce: decoding a SotW request allocates its
// list of names once, at its size, not by appending to an empty list (a
// node's every ACK repeats hundreds of names; a fleet connecting sends
// thousands of them, and the outgrown copies were most of what
// connecting it allocated, left as garbage under a high GC target).
func TestRequestDecodeSizesNamesOnce(t *testing.T) {
	c := codec{proto: encoding.GetCodecV2("proto")}
	var names []string
	for i := range 300 {
		names = append(names, fmt.Sprintf("svc-%04d/api", i))
	}
	req := &discoveryv3.DiscoveryRequest{
		VersionInfo: "v7", Node: &corev3.Node{Id: "n1", Cluster: "edge"},
		ResourceNames: names, TypeUrl: resourcev3.EndpointType, ResponseNonce: "12",
	}
	b, err := proto.Marshal(req)
	if err != nil {
		t.Fatal(err)
	}
	decode := func() *discoveryv3.DiscoveryRequest {
		var r discoveryv3.DiscoveryRequest
		if err := c.Unmarshal(mem.BufferSlice{mem.SliceBuffer(b)}, &r); err != nil {
			t.Fatal(err)
		}
		return &r
	}
	if got := decode(); !proto.Equal(got, req) || cap(got.ResourceNames) != len(names) {
		t.Fatalf("decoded %d names with room for %d, want %d exactly (request equal: %v)", len(got.ResourceNames), cap(got.ResourceNames), len(names), proto.Equal(got, req))
	}
	const runs = 50
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	for range runs {
		decode()
	}
	runtime.ReadMemStats(&after)
	perDecode := (after.TotalAlloc - before.TotalAlloc) / runs
	// The list itself is 16 bytes a name; the rest (the request, its
	// other fields, the buffer they are decoded from) is well under 2 KiB.
	if limit := uint64(16*len(names) + 2048); perDecode > limit {
		t.Errorf("decoding a request of %d names allocates %d bytes, want at most %d (the list once, at its size)", len(names), perDecode, limit)
	}
}

// TestRequestDecodeReusesInternedList: the codec ServerOptions installs
// decodes a SotW request's names to the interned list of them when a
// stream's subscription holds one, so a list seen before (every ACK
// repeats it) allocates no list at all; a request with other names does
// not change the lists decoded before.
func TestRequestDecodeReusesInternedList(t *testing.T) {
	c := newCodec()
	var names, others []string
	for i := range 300 {
		names = append(names, fmt.Sprintf("svc-%04d/api", i))
		others = append(others, fmt.Sprintf("svc-%04d/web", i))
	}
	encode := func(names []string) []byte {
		b, err := proto.Marshal(&discoveryv3.DiscoveryRequest{VersionInfo: "v7", Node: &corev3.Node{Id: "n1", Cluster: "edge"}, ResourceNames: names, TypeUrl: resourcev3.EndpointType, ResponseNonce: "12"})
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	b, ob := encode(names), encode(others)
	decode := func(b []byte) *discoveryv3.DiscoveryRequest {
		var r discoveryv3.DiscoveryRequest
		if err := c.Unmarshal(mem.BufferSlice{mem.SliceBuffer(b)}, &r); err != nil {
			t.Fatal(err)
		}
		return &r
	}
	first := decode(b)
	held := requestNames.get(first.ResourceNames) // a stream's subscription holds it
	second, other := decode(b), decode(ob)
	if !slices.Equal(first.ResourceNames, names) || !slices.Equal(other.ResourceNames, others) {
		t.Fatalf("decoded lists differ from the names sent (first %d names, other %d)", len(first.ResourceNames), len(other.ResourceNames))
	}
	if unsafe.SliceData(second.ResourceNames) != unsafe.SliceData(held.names) {
		t.Fatal("names a stream holds decoded again are a new list, not the interned one")
	}
	const runs = 50
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	for range runs {
		decode(b)
	}
	runtime.ReadMemStats(&after)
	if perDecode := (after.TotalAlloc - before.TotalAlloc) / runs; perDecode > 2048 {
		t.Errorf("decoding a request of %d names held by a stream allocates %d bytes, want under 2048 (no list: the interned one)", len(names), perDecode)
	}
	runtime.KeepAlive(held)
}

// TestDeltaRequestDecodesAsProto: a delta request's subscribe and
// unsubscribe names decode as protobuf decodes them (in order, fields
// interleaved or not, the other fields and unknown ones as they are), to
// canonical strings, without a string or an outgrown list per name, and
// a name that is not UTF-8 is refused as protobuf refuses it.
func TestDeltaRequestDecodesAsProto(t *testing.T) {
	c := newCodec()
	var sub []string
	for i := range 300 {
		sub = append(sub, fmt.Sprintf("svc-%04d/api", i))
	}
	want := &discoveryv3.DeltaDiscoveryRequest{
		Node: &corev3.Node{Id: "n1", Cluster: "edge"}, TypeUrl: resourcev3.EndpointType,
		ResourceNamesSubscribe: sub, ResourceNamesUnsubscribe: []string{"gone-1", "gone-2"},
		InitialResourceVersions: map[string]string{"svc-0001/api": "h1"}, ResponseNonce: "3",
		ErrorDetail: &statuspb.Status{Code: 3, Message: "rejected"},
	}
	want.ProtoReflect().SetUnknown(protowire.AppendString(protowire.AppendTag(nil, 99, protowire.BytesType), "later field"))
	b, err := proto.Marshal(want)
	if err != nil {
		t.Fatal(err)
	}
	decode := func(b []byte) (*discoveryv3.DeltaDiscoveryRequest, error) {
		var r discoveryv3.DeltaDiscoveryRequest
		return &r, c.Unmarshal(mem.BufferSlice{mem.SliceBuffer(b)}, &r)
	}
	got, err := decode(b)
	if err != nil || !proto.Equal(got, want) {
		t.Fatalf("the decoded request differs from the one encoded (%v): %d subscribed, unsubscribed %q, versions %v, nonce %q, unknown %q", err,
			len(got.GetResourceNamesSubscribe()), got.GetResourceNamesUnsubscribe(), got.GetInitialResourceVersions(), got.GetResponseNonce(), got.ProtoReflect().GetUnknown())
	}
	if unsafe.StringData(got.ResourceNamesSubscribe[7]) != unsafe.StringData(requestStrings.string(sub[7])) || unsafe.StringData(got.ResourceNamesUnsubscribe[1]) != unsafe.StringData(requestStrings.string("gone-2")) {
		t.Fatal("delta request names are not the canonical strings")
	}
	// Interleaved: unsubscribe, subscribe, unsubscribe.
	var mixed []byte
	for _, f := range []struct {
		num  protowire.Number
		name string
	}{{4, "u1"}, {3, "s1"}, {4, "u2"}} {
		mixed = protowire.AppendString(protowire.AppendTag(mixed, f.num, protowire.BytesType), f.name)
	}
	if got, err := decode(mixed); err != nil || !slices.Equal(got.ResourceNamesSubscribe, []string{"s1"}) || !slices.Equal(got.ResourceNamesUnsubscribe, []string{"u1", "u2"}) {
		t.Fatalf("interleaved fields: subscribe %q, unsubscribe %q, error %v", got.GetResourceNamesSubscribe(), got.GetResourceNamesUnsubscribe(), err)
	}
	const runs = 50
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	for range runs {
		if _, err := decode(b); err != nil {
			t.Fatal(err)
		}
	}
	runtime.ReadMemStats(&after)
	if perDecode, limit := (after.TotalAlloc-before.TotalAlloc)/runs, uint64(16*len(sub)+2048); perDecode > limit {
		t.Errorf("decoding a delta request of %d names allocates %d bytes, want at most %d (the list once, no string per name)", len(sub), perDecode, limit)
	}
	// got holds every name: they stay canonical, collections or not.
	runtime.KeepAlive(got)
	bad := protowire.AppendBytes(protowire.AppendTag(slices.Clone(mixed), 4, protowire.BytesType), []byte{0xff, 0xfe})
	if _, err := decode(bad); err == nil || !strings.Contains(err.Error(), "resource_names_unsubscribe[2]") {
		t.Fatalf("a name that is not UTF-8: %v, want an error naming resource_names_unsubscribe[2]", err)
	}
}

// TestTrackerStreamStateIsSmall: what the tracker keeps per stream (its
// ACKed versions, the last response of each type, per node the last
// response of each type) stays under 1.5 KiB for a node of five types
// (as maps of a few entries each it was about 2 KiB, a tenth of a
// connected node's heap), and still answers what the protocol asks:
// the version a nonce was sent with, what a node ACKed.
func TestTrackerStreamStateIsSmall(t *testing.T) {
	s := New(context.Background(), Options{Registry: prometheus.NewRegistry()})
	tr := s.tracker
	types := []string{resourcev3.ListenerType, resourcev3.ClusterType, resourcev3.EndpointType, resourcev3.RouteType, resourcev3.ScopedRouteType}
	const streams = 400
	nodes := make([]*corev3.Node, streams)
	for i := range nodes {
		nodes[i] = &corev3.Node{Id: fmt.Sprintf("node-%04d", i), Cluster: "edge"}
	}
	nonces := make([]string, 16)
	for i := range nonces {
		nonces[i] = strconv.Itoa(i + 1)
	}
	heap := func() uint64 {
		var m runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&m)
		return m.HeapAlloc
	}
	before := heap()
	for i := range streams {
		key := streamKey{false, int64(i + 1)}
		tr.open(context.Background(), key.id, false)
		for j, ty := range types {
			if err := tr.request(key, nodes[i], ty, "", "", nil); err != nil {
				t.Fatal(err)
			}
			tr.response(key, ty, nonces[j], "v1")
			if err := tr.request(key, nodes[i], ty, nonces[j], "v1", nil); err != nil {
				t.Fatal(err)
			}
			tr.response(key, ty, nonces[j+len(types)], "v2")
		}
	}
	per := float64(heap()-before) / streams
	if v, ok := tr.sentVersion("node-0007", resourcev3.RouteType, nonces[3+len(types)]); !ok || v != "v2" {
		t.Fatalf("sentVersion of the last route response: %q, %v; want v2", v, ok)
	}
	if _, ok := tr.sentVersion("node-0007", resourcev3.RouteType, nonces[3]); ok {
		t.Fatal("an older nonce of the type still maps to a version")
	}
	if !tr.hasSent("node-0007", resourcev3.ScopedRouteType) || tr.hasSent("node-0007", resourcev3.SecretType) {
		t.Fatal("hasSent wrong for a sent type or one never sent")
	}
	ns := s.Nodes()
	if len(ns) != streams || len(ns[0].Acked) != len(types) || ns[0].Acked[resourcev3.ClusterType] != "v1" {
		t.Fatalf("node status: %d streams, first acked %v", len(ns), ns[0].Acked)
	}
	t.Logf("%.0f bytes per stream", per)
	if per > 1536 {
		t.Errorf("the tracker keeps %.0f bytes per stream of %d types, want at most 1536", per, len(types))
	}
	runtime.KeepAlive(nodes)
}
