package xds

import (
	"testing"
	"time"
	"unsafe"

	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"github.com/envoyproxy/go-control-plane/pkg/cache/types"
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"google.golang.org/grpc/encoding"
	"google.golang.org/grpc/mem"
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
}
