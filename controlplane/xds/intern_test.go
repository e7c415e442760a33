package xds

import (
	"fmt"
	"runtime"
	"sync"
	"testing"
	"time"
	"unsafe"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"google.golang.org/grpc/mem"
	"google.golang.org/protobuf/proto"
)

// TestCanonicalNamesSurviveGC: a request decoded after garbage
// collections gets the very strings (the same data) of a request decoded
// before them, for as long as those are held: every node of a fleet that
// connects over minutes, many collections apart, shares one copy of each
// name. (With unique.Make, which keeps an entry only while a Handle is
// reachable, the second decode cloned every name.) Short names (which
// the runtime may pack into one allocation) and long ones, delta and
// SotW, type URL and version.
func TestCanonicalNamesSurviveGC(t *testing.T) {
	c := newCodec()
	var names []string
	for i := range 200 {
		names = append(names, fmt.Sprintf("gc-%d", i), fmt.Sprintf("gc-survive-a-collection/svc-%04d/api", i))
	}
	delta, err := proto.Marshal(&discoveryv3.DeltaDiscoveryRequest{
		Node: &corev3.Node{Id: "n1", Cluster: "edge"}, TypeUrl: resourcev3.EndpointType,
		ResourceNamesSubscribe: names, InitialResourceVersions: map[string]string{names[1]: "h1"},
	})
	if err != nil {
		t.Fatal(err)
	}
	sotw, err := proto.Marshal(&discoveryv3.DiscoveryRequest{
		Node: &corev3.Node{Id: "n1", Cluster: "edge"}, TypeUrl: resourcev3.EndpointType,
		VersionInfo: "gc-version-0123456789abcdef", ResourceNames: names,
	})
	if err != nil {
		t.Fatal(err)
	}
	decodeDelta := func() *discoveryv3.DeltaDiscoveryRequest {
		var r discoveryv3.DeltaDiscoveryRequest
		if err := c.Unmarshal(mem.BufferSlice{mem.SliceBuffer(delta)}, &r); err != nil {
			t.Fatal(err)
		}
		return &r
	}
	decodeSotw := func() *discoveryv3.DiscoveryRequest {
		var r discoveryv3.DiscoveryRequest
		if err := c.Unmarshal(mem.BufferSlice{mem.SliceBuffer(sotw)}, &r); err != nil {
			t.Fatal(err)
		}
		return &r
	}
	d1, s1 := decodeDelta(), decodeSotw()
	// d1 and s1 hold every string: nothing else does.
	runtime.GC()
	runtime.GC()
	d2, s2 := decodeDelta(), decodeSotw()
	same := func(what string, a, b string) {
		t.Helper()
		if a != b || unsafe.StringData(a) != unsafe.StringData(b) {
			t.Fatalf("%s %q: decoded again after two collections, it is a new copy, not the string the first request holds", what, a)
		}
	}
	for i := range names {
		same("delta name", d1.ResourceNamesSubscribe[i], d2.ResourceNamesSubscribe[i])
		same("SotW name", s1.ResourceNames[i], s2.ResourceNames[i])
		same("delta and SotW name", d1.ResourceNamesSubscribe[i], s2.ResourceNames[i])
	}
	same("type URL", d1.TypeUrl, s2.TypeUrl)
	same("version", s1.VersionInfo, s2.VersionInfo)
	for k := range d2.InitialResourceVersions {
		same("initial version key", d1.ResourceNamesSubscribe[1], k)
	}
	runtime.KeepAlive(d1)
	runtime.KeepAlive(s1)
}

// TestCanonStringsDropCollected: the table keeps an entry per live
// string only: once nothing holds a string, a garbage collection
// collects it and its entry goes; a held one stays canonical.
func TestCanonStringsDropCollected(t *testing.T) {
	tab := newCanonStrings()
	const n = 400
	var held []string
	for i := range n {
		// 16 bytes or more: each string its own allocation (shorter
		// ones may share one, and then go with it).
		s := tab.bytes(fmt.Appendf(nil, "drop-collected/svc-%04d/api", i))
		if i%2 == 0 {
			held = append(held, s)
		}
	}
	waitSize := func(want int) {
		t.Helper()
		got := tab.size()
		for i := 0; i < 100 && got != want; i++ {
			runtime.GC()
			time.Sleep(5 * time.Millisecond)
			got = tab.size()
		}
		if got != want {
			t.Fatalf("the table has %d entries after collections, want %d (one per string still held)", got, want)
		}
	}
	waitSize(n / 2)
	for _, s := range held {
		if again := tab.string(s); unsafe.StringData(again) != unsafe.StringData(s) {
			t.Fatalf("%q, still held, is no longer the canonical string", s)
		}
	}
	held = nil
	waitSize(0)
	runtime.KeepAlive(held)
}

// TestCanonStringsConcurrent: decoders on many goroutines, collections in
// between, agree on one string per name while the names are held (run
// with -race).
func TestCanonStringsConcurrent(t *testing.T) {
	c := newCodec()
	const decoders, rounds, names = 6, 20, 120
	reqs := make([][]byte, 3)
	for r := range reqs {
		var ns []string
		for i := range names {
			// Overlapping lists: request r names i..i+names of a longer range.
			ns = append(ns, fmt.Sprintf("concurrent/svc-%04d/api", i+r*names/2))
		}
		b, err := proto.Marshal(&discoveryv3.DeltaDiscoveryRequest{TypeUrl: resourcev3.EndpointType, ResourceNamesSubscribe: ns})
		if err != nil {
			t.Fatal(err)
		}
		reqs[r] = b
	}
	results := make([][]*discoveryv3.DeltaDiscoveryRequest, decoders)
	stop := make(chan struct{})
	gcDone := make(chan struct{})
	go func() {
		defer close(gcDone)
		for {
			select {
			case <-stop:
				return
			case <-time.After(time.Millisecond):
				runtime.GC()
			}
		}
	}()
	var wg sync.WaitGroup
	for d := range decoders {
		wg.Go(func() {
			for i := range rounds {
				var r discoveryv3.DeltaDiscoveryRequest
				if err := c.Unmarshal(mem.BufferSlice{mem.SliceBuffer(reqs[(d+i)%len(reqs)])}, &r); err != nil {
					t.Error(err)
					return
				}
				results[d] = append(results[d], &r)
				if i%5 == 4 {
					runtime.GC() // besides the background ones: between this decoder's rounds
				}
			}
		})
	}
	wg.Wait()
	close(stop)
	<-gcDone
	canon := map[string]*byte{}
	for _, rs := range results {
		for _, r := range rs {
			for _, n := range r.ResourceNamesSubscribe {
				if p, ok := canon[n]; !ok {
					canon[n] = unsafe.StringData(n)
				} else if p != unsafe.StringData(n) {
					t.Fatalf("%q decoded concurrently is two strings while both are held", n)
				}
			}
		}
	}
	if len(canon) != names*2 {
		t.Fatalf("%d distinct names decoded, want %d", len(canon), names*2)
	}
}
