package xds

import (
	"fmt"
	"slices"
	"sync"
	"unicode/utf8"
	"unique"

	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/encoding"
	"google.golang.org/grpc/mem"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"

	// Registers the "proto" codec this one delegates to.
	_ "google.golang.org/grpc/encoding/proto"
)

// ServerOptions are the gRPC server options the ADS service wants: a codec
// that sends a response's shared, pre-encoded resources (watchCache)
// as they are, without copying them into a fresh buffer per stream (gRPC's
// own codec would allocate (and zero) a buffer of the response's size for
// every node: for a change pushed to thousands of nodes that is most of
// the control plane's CPU); and a tap that lets a stream's handler end its
// stream (streamContext): the stream reads requests on the handler's
// goroutine, and without the tap it ends when the node or gRPC ends it,
// not when the Server's context ends.
func ServerOptions() []grpc.ServerOption {
	return []grpc.ServerOption{grpc.ForceServerCodecV2(newCodec()), grpc.InTapHandle(streamContext)}
}

// newCodec is the codec ServerOptions installs: SotW name lists are
// decoded to requestNames' lists.
func newCodec() codec { return codec{proto: encoding.GetCodecV2("proto"), names: requestNames} }

// requestNames interns the name lists of SotW requests, for the codec
// and every ADS server (newADSServer): a node repeats its whole list in
// every request, every node of a group asks for the same list, and a
// list decoded to the one its stream's subscription already holds costs
// no allocation. Like unique.Make's strings, a list no stream holds any
// more is collected.
var requestNames = newNameSets()

// nameScratch holds the lists a request's names are decoded into before
// their interned list is found (*[]string).
var nameScratch sync.Pool

// codec is gRPC's proto codec except for (Delta)DiscoveryResponses
// carrying a shared body, which it sends as two buffers: the small header fields,
// encoded per message, and the body itself; and for SotW requests, whose
// name lists it decodes to the interned list of names when names is set.
type codec struct {
	proto encoding.CodecV2
	names *nameSets
}

func (codec) Name() string { return "proto" }

// Unmarshal decodes as gRPC's codec, then makes the resource names of a
// request canonical (unique.Make): every node of a group asks for the same
// hundreds of EDS names, and go-control-plane keeps each stream's request
// and subscription for as long as the stream lives, so without this every
// connected node holds its own copy of every name. The canonical strings
// are weak references: a name no stream holds any more is collected.
func (c codec) Unmarshal(data mem.BufferSlice, v any) error {
	if m, ok := v.(*discoveryv3.DiscoveryRequest); ok {
		return unmarshalRequest(data, m, c.names)
	}
	if err := c.proto.Unmarshal(data, v); err != nil {
		return err
	}
	switch m := v.(type) {
	case *discoveryv3.DeltaDiscoveryRequest:
		canonical(m.ResourceNamesSubscribe)
		canonical(m.ResourceNamesUnsubscribe)
		if len(m.InitialResourceVersions) > 0 {
			iv := make(map[string]string, len(m.InitialResourceVersions))
			for k, x := range m.InitialResourceVersions {
				iv[unique.Make(k).Value()] = x
			}
			m.InitialResourceVersions = iv
		}
	}
	return nil
}

// unmarshalRequest decodes a SotW request, its resource names straight
// into their canonical strings: a SotW node repeats every name it
// subscribes to in every request (hundreds of endpoint names in each
// ACK), and the canonical string of a name seen before costs no
// allocation, where decoding it would allocate it each time. With sets,
// the list itself is sets' list of those names (a list seen before costs
// no allocation either); without, a list of its exact size.
func unmarshalRequest(data mem.BufferSlice, m *discoveryv3.DiscoveryRequest, sets *nameSets) error {
	buf := data.MaterializeToBuffer(mem.DefaultBufferPool())
	defer buf.Free()
	b := buf.ReadOnlyData()
	// A first pass sizes both lists: appending to empty ones would leave
	// a trail of outgrown copies for every request (a node's ACK repeats
	// hundreds of names, and a fleet connecting sends thousands of ACKs).
	nNames, nRest, err := requestSizes(b)
	if err != nil {
		return err
	}
	var rest []byte // every field but the names, as they came
	if nRest > 0 {
		rest = make([]byte, 0, nRest)
	}
	var names []string
	var scratch *[]string
	switch {
	case nNames == 0:
	case sets != nil:
		scratch, _ = nameScratch.Get().(*[]string)
		if scratch == nil {
			scratch = new([]string)
		}
		names = slices.Grow((*scratch)[:0], nNames)
		defer func() {
			clear(names)
			*scratch = names[:0]
			nameScratch.Put(scratch)
		}()
	default:
		names = make([]string, 0, nNames)
	}
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return fmt.Errorf("xds: decoding a discovery request: %w", protowire.ParseError(n))
		}
		l := protowire.ConsumeFieldValue(num, typ, b[n:])
		if l < 0 {
			return fmt.Errorf("xds: decoding a discovery request: %w", protowire.ParseError(l))
		}
		if num == resourceNamesField && typ == protowire.BytesType {
			v, _ := protowire.ConsumeBytes(b[n:])
			if !utf8.Valid(v) {
				return fmt.Errorf("xds: decoding a discovery request: resource_names[%d] is not valid UTF-8", len(names))
			}
			names = append(names, unique.Make(string(v)).Value())
		} else {
			rest = append(rest, b[:n+l]...)
		}
		b = b[n+l:]
	}
	if err := proto.Unmarshal(rest, m); err != nil {
		return err
	}
	if scratch != nil {
		m.ResourceNames = sets.get(names).names
	} else {
		m.ResourceNames = names
	}
	return nil
}

// requestSizes counts the resource names of an encoded SotW request and
// the bytes of its other fields.
func requestSizes(b []byte) (names, rest int, err error) {
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return 0, 0, fmt.Errorf("xds: decoding a discovery request: %w", protowire.ParseError(n))
		}
		l := protowire.ConsumeFieldValue(num, typ, b[n:])
		if l < 0 {
			return 0, 0, fmt.Errorf("xds: decoding a discovery request: %w", protowire.ParseError(l))
		}
		if num == resourceNamesField && typ == protowire.BytesType {
			names++
		} else {
			rest += n + l
		}
		b = b[n+l:]
	}
	return names, rest, nil
}

// resourceNamesField is DiscoveryRequest.resource_names.
const resourceNamesField = 3

func canonical(names []string) {
	for i, n := range names {
		names[i] = unique.Make(n).Value()
	}
}

// sharedBodyMin is the body size from which the body is sent by reference;
// smaller ones are cheaper to copy.
const sharedBodyMin = 4 << 10

func (c codec) Marshal(v any) (mem.BufferSlice, error) {
	var hdr proto.Message
	var body []byte
	switch m := v.(type) {
	case *discoveryv3.DiscoveryResponse:
		if len(m.GetResources()) == 0 {
			body = m.ProtoReflect().GetUnknown()
			// Every known field but resources (empty here); the body holds them.
			hdr = &discoveryv3.DiscoveryResponse{
				VersionInfo:    m.GetVersionInfo(),
				Canary:         m.GetCanary(),
				TypeUrl:        m.GetTypeUrl(),
				Nonce:          m.GetNonce(),
				ControlPlane:   m.GetControlPlane(),
				ResourceErrors: m.GetResourceErrors(),
			}
		}
	case *discoveryv3.DeltaDiscoveryResponse:
		if len(m.GetResources()) == 0 {
			body = m.ProtoReflect().GetUnknown()
			hdr = &discoveryv3.DeltaDiscoveryResponse{
				SystemVersionInfo:    m.GetSystemVersionInfo(),
				TypeUrl:              m.GetTypeUrl(),
				RemovedResources:     m.GetRemovedResources(),
				RemovedResourceNames: m.GetRemovedResourceNames(),
				Nonce:                m.GetNonce(),
				ControlPlane:         m.GetControlPlane(),
				ResourceErrors:       m.GetResourceErrors(),
			}
		}
	}
	if len(body) < sharedBodyMin {
		return c.proto.Marshal(v)
	}
	b, err := proto.Marshal(hdr)
	if err != nil {
		return nil, err
	}
	return mem.BufferSlice{mem.SliceBuffer(b), mem.SliceBuffer(body)}, nil
}
