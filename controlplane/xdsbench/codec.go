package main

import (
	"fmt"

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
// Every other message is decoded in full.
type headerCodec struct{ proto encoding.CodecV2 }

func newHeaderCodec() headerCodec { return headerCodec{proto: encoding.GetCodecV2("proto")} }

func (c headerCodec) Name() string { return "proto" }

func (c headerCodec) Marshal(v any) (mem.BufferSlice, error) { return c.proto.Marshal(v) }

func (c headerCodec) Unmarshal(data mem.BufferSlice, v any) error {
	switch m := v.(type) {
	case *discoveryv3.DiscoveryResponse:
		return decodeHeader(data, &m.VersionInfo, &m.TypeUrl, &m.Nonce)
	case *discoveryv3.DeltaDiscoveryResponse:
		return decodeHeader(data, &m.SystemVersionInfo, &m.TypeUrl, &m.Nonce)
	}
	return c.proto.Unmarshal(data, v)
}

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
