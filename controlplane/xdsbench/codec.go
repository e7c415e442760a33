package main

import (
	"fmt"
	"sync"

	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"google.golang.org/grpc/encoding"
	"google.golang.org/grpc/mem"
	"google.golang.org/protobuf/encoding/protowire"

	// Registers the "proto" codec this one delegates to.
	_ "google.golang.org/grpc/encoding/proto"
)

// headerCodec is the simulated nodes' gRPC codec. Requests are encoded as
// usual; responses are decoded only as far as a node needs to ACK them —
// version, type URL and nonce (fields 1, 4 and 5 of both
// DiscoveryResponse and DeltaDiscoveryResponse) — and the resources are
// skipped. A real Envoy decodes every resource on its own CPU; 2,000
// simulated nodes doing it here would share the two cores the control
// plane is being measured on, and the bench would measure its own client.
// Listeners and scopes, and every other message, are decoded in full.
// Response sizes are added to bytes, per type.
type headerCodec struct {
	proto encoding.CodecV2
	bytes *typeBytes
}

func newHeaderCodec(b *typeBytes) headerCodec {
	return headerCodec{proto: encoding.GetCodecV2("proto"), bytes: b}
}

// typeBytes counts the bytes of the responses received, per type URL.
type typeBytes struct {
	mu sync.Mutex
	n  map[string]int64
}

func newTypeBytes() *typeBytes { return &typeBytes{n: map[string]int64{}} }

func (t *typeBytes) add(typeURL string, n int) {
	if t == nil {
		return
	}
	t.mu.Lock()
	t.n[typeURL] += int64(n)
	t.mu.Unlock()
}

// snapshot copies the counts.
func (t *typeBytes) snapshot() map[string]int64 {
	t.mu.Lock()
	defer t.mu.Unlock()
	out := make(map[string]int64, len(t.n))
	for k, v := range t.n {
		out[k] = v
	}
	return out
}

func (c headerCodec) Name() string { return "proto" }

func (c headerCodec) Marshal(v any) (mem.BufferSlice, error) { return c.proto.Marshal(v) }

func (c headerCodec) Unmarshal(data mem.BufferSlice, v any) error {
	switch m := v.(type) {
	case *discoveryv3.DiscoveryResponse:
		err := decodeHeader(data, &m.VersionInfo, &m.TypeUrl, &m.Nonce)
		c.bytes.add(m.TypeUrl, data.Len())
		if err == nil && decodedInFull(m.TypeUrl) {
			return c.proto.Unmarshal(data, v)
		}
		return err
	case *discoveryv3.DeltaDiscoveryResponse:
		err := decodeHeader(data, &m.SystemVersionInfo, &m.TypeUrl, &m.Nonce)
		c.bytes.add(m.TypeUrl, data.Len())
		if err == nil && decodedInFull(m.TypeUrl) {
			return c.proto.Unmarshal(data, v)
		}
		return err
	}
	return c.proto.Unmarshal(data, v)
}

// decodedInFull are the types a node decodes as Envoy does, because what
// it subscribes to next follows from them: listeners (the route table or
// the scoped routes their connection managers name) and scopes (the route
// tables they name). Both are small and a change rarely re-sends them.
func decodedInFull(typeURL string) bool { return typeURL == ldsType || typeURL == srdsType }

// decodeHeader reads string fields 1, 4 and 5 of a response and skips the
// rest, checking the wire format as it goes.
func decodeHeader(data mem.BufferSlice, version, typeURL, nonce *string) error {
	b := data.Materialize()
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return fmt.Errorf("xdsbench: response: %w", protowire.ParseError(n))
		}
		b = b[n:]
		if typ == protowire.BytesType && (num == 1 || num == 4 || num == 5) {
			s, n := protowire.ConsumeString(b)
			if n < 0 {
				return fmt.Errorf("xdsbench: response field %d: %w", num, protowire.ParseError(n))
			}
			switch num {
			case 1:
				*version = s
			case 4:
				*typeURL = s
			case 5:
				*nonce = s
			}
			b = b[n:]
			continue
		}
		n = protowire.ConsumeFieldValue(num, typ, b)
		if n < 0 {
			return fmt.Errorf("xdsbench: response field %d: %w", num, protowire.ParseError(n))
		}
		b = b[n:]
	}
	return nil
}
