package main

import (
	"testing"

	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"google.golang.org/grpc/mem"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"
)

func TestHeaderCodecReadsWhatAnACKNeeds(t *testing.T) {
	counted := newTypeBytes()
	c := newHeaderCodec(counted)
	res := []*anypb.Any{{TypeUrl: cdsType, Value: []byte("\x0a\x03abc")}, {TypeUrl: cdsType, Value: make([]byte, 70000)}}
	sotw, err := proto.Marshal(&discoveryv3.DiscoveryResponse{VersionInfo: "g1-42", Resources: res, TypeUrl: cdsType, Nonce: "7", Canary: true})
	if err != nil {
		t.Fatal(err)
	}
	var got discoveryv3.DiscoveryResponse
	if err := c.Unmarshal(mem.BufferSlice{mem.SliceBuffer(sotw[:100]), mem.SliceBuffer(sotw[100:])}, &got); err != nil {
		t.Fatal(err)
	}
	if got.VersionInfo != "g1-42" || got.TypeUrl != cdsType || got.Nonce != "7" || len(got.Resources) != 0 {
		t.Fatalf("sotw header = %q %q %q, %d resources", got.VersionInfo, got.TypeUrl, got.Nonce, len(got.Resources))
	}
	delta, err := proto.Marshal(&discoveryv3.DeltaDiscoveryResponse{SystemVersionInfo: "g2-9", TypeUrl: edsType, Nonce: "12", RemovedResources: []string{"x"}})
	if err != nil {
		t.Fatal(err)
	}
	var gotDelta discoveryv3.DeltaDiscoveryResponse
	if err := c.Unmarshal(mem.BufferSlice{mem.SliceBuffer(delta)}, &gotDelta); err != nil {
		t.Fatal(err)
	}
	if gotDelta.SystemVersionInfo != "g2-9" || gotDelta.TypeUrl != edsType || gotDelta.Nonce != "12" {
		t.Fatalf("delta header = %+v", &gotDelta)
	}
	if n := counted.snapshot(); n[cdsType] != int64(len(sotw)) || n[edsType] != int64(len(delta)) {
		t.Fatalf("bytes counted per type = %v, want %s %d and %s %d", n, cdsType, len(sotw), edsType, len(delta))
	}
	if err := c.Unmarshal(mem.BufferSlice{mem.SliceBuffer(sotw[:1000])}, &got); err == nil {
		t.Fatal("a truncated response decoded without error")
	}
}

// TestHeaderCodecDecodesListenersAndScopes: the types a node follows to
// its route tables keep their resources.
func TestHeaderCodecDecodesListenersAndScopes(t *testing.T) {
	c := newHeaderCodec(newTypeBytes())
	for _, typ := range []string{ldsType, srdsType} {
		b, err := proto.Marshal(&discoveryv3.DiscoveryResponse{VersionInfo: "v1", Resources: []*anypb.Any{{TypeUrl: typ, Value: []byte("\x0a\x01a")}}, TypeUrl: typ, Nonce: "1"})
		if err != nil {
			t.Fatal(err)
		}
		var got discoveryv3.DiscoveryResponse
		if err := c.Unmarshal(mem.BufferSlice{mem.SliceBuffer(b)}, &got); err != nil {
			t.Fatal(err)
		}
		if got.VersionInfo != "v1" || len(got.Resources) != 1 {
			t.Errorf("%s: version %q, %d resources, want v1 and 1", typ, got.VersionInfo, len(got.Resources))
		}
	}
}
