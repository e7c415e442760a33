package xds

import (
	"fmt"
	"hash/maphash"
	"unicode/utf8"
	"unsafe"

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
// no allocation. Like a canonical name (requestStrings), a list no stream
// holds any more is collected.
var requestNames = newNameSets()

// codec is gRPC's proto codec except for (Delta)DiscoveryResponses
// carrying a shared body, which it sends as two buffers: the small header fields,
// encoded per message, and the body itself; and for SotW requests, whose
// name lists it decodes to the interned list of names when names is set.
type codec struct {
	proto encoding.CodecV2
	names *nameSets
}

func (codec) Name() string { return "proto" }

// requestStrings makes the strings of requests canonical, for the codec:
// resource names, type URLs and versions.
var requestStrings = newCanonStrings()

// Unmarshal decodes as gRPC's codec, then makes the resource names of a
// request canonical (requestStrings): every node of a group asks for the
// same hundreds of EDS names, and each stream keeps its watches' requests
// and subscriptions for as long as it lives, so without this every
// connected node would hold its own copy of every name. A name stays
// canonical for as long as any stream (any string of it) holds it,
// garbage collections in between or not (unique.Make, used before, kept
// an entry only while a Handle was reachable, and the codec keeps only
// strings: after every collection the next node's request cloned every
// name again); a name nothing holds is collected, and its entry dropped.
func (c codec) Unmarshal(data mem.BufferSlice, v any) error {
	switch m := v.(type) {
	case *discoveryv3.DiscoveryRequest:
		lists, err := decodeNamed(data, m, c.names, sotwNameFields)
		if err != nil {
			return err
		}
		m.ResourceNames = lists[0]
		// A stream's watch keeps its type's last request: the type URL
		// and the version every node of a group ACKs, once each.
		m.TypeUrl = requestStrings.string(m.TypeUrl)
		m.VersionInfo = requestStrings.string(m.VersionInfo)
		return nil
	case *discoveryv3.DeltaDiscoveryRequest:
		lists, err := decodeNamed(data, m, c.names, deltaNameFields)
		if err != nil {
			return err
		}
		m.ResourceNamesSubscribe, m.ResourceNamesUnsubscribe = lists[0], lists[1]
		m.TypeUrl = requestStrings.string(m.TypeUrl)
		if len(m.InitialResourceVersions) > 0 {
			iv := make(map[string]string, len(m.InitialResourceVersions))
			for k, x := range m.InitialResourceVersions {
				iv[requestStrings.string(k)] = x
			}
			m.InitialResourceVersions = iv
		}
		return nil
	}
	return c.proto.Unmarshal(data, v)
}

// nameField is a request's repeated field of resource names.
type nameField struct {
	num  protowire.Number
	name string // for errors
}

var (
	// DiscoveryRequest.resource_names.
	sotwNameFields = [2]nameField{{3, "resource_names"}}
	// DeltaDiscoveryRequest.resource_names_subscribe and _unsubscribe.
	deltaNameFields = [2]nameField{{3, "resource_names_subscribe"}, {4, "resource_names_unsubscribe"}}
)

// decodeNamed decodes a request whose fields (one or two; a zero field
// number is none) are lists of resource names: every other field is
// decoded into m by protobuf, and the names straight into their
// canonical strings (a SotW node repeats every name it subscribes to in
// every request, hundreds of endpoint names in each ACK, and the
// canonical string of a name seen before costs no allocation where
// decoding it would allocate it each time). Each list is the interned
// one of sets when there is one (a list a stream's subscription holds
// costs no allocation either: it is found from the encoded names), else
// a new list of its exact size; an empty list is nil.
func decodeNamed(data mem.BufferSlice, m proto.Message, sets *nameSets, fields [2]nameField) ([2][]string, error) {
	var lists [2][]string
	buf := data.MaterializeToBuffer(mem.DefaultBufferPool())
	defer buf.Free()
	b := buf.ReadOnlyData()
	field := func(num protowire.Number, typ protowire.Type) int {
		for i, f := range fields {
			if f.num != 0 && f.num == num && typ == protowire.BytesType {
				return i
			}
		}
		return -1
	}
	// A first pass counts the names, hashes each list as nameSets does and
	// sizes the other fields: appending to empty lists would leave a trail
	// of outgrown copies for every request (a fleet connecting sends
	// thousands of them).
	var count [2]int
	var hash [2]maphash.Hash
	if sets != nil {
		for i := range hash {
			hash[i].SetSeed(sets.seed)
		}
	}
	nRest := 0
	for p := b; len(p) > 0; {
		num, typ, n := protowire.ConsumeTag(p)
		if n < 0 {
			return lists, fmt.Errorf("xds: decoding a discovery request: %w", protowire.ParseError(n))
		}
		l := protowire.ConsumeFieldValue(num, typ, p[n:])
		if l < 0 {
			return lists, fmt.Errorf("xds: decoding a discovery request: %w", protowire.ParseError(l))
		}
		if i := field(num, typ); i >= 0 {
			v, _ := protowire.ConsumeBytes(p[n:])
			if !utf8.Valid(v) {
				return lists, fmt.Errorf("xds: decoding a discovery request: %s[%d] is not valid UTF-8", fields[i].name, count[i])
			}
			count[i]++
			if sets != nil {
				hash[i].Write(v)
				hash[i].WriteByte(0)
			}
		} else {
			nRest += n + l
		}
		p = p[n+l:]
	}
	var found [2]bool
	for i := range lists {
		if count[i] == 0 {
			continue
		}
		if sets != nil {
			if ns := sets.lookupEncoded(hash[i].Sum64(), count[i], func(yield func(string) bool) {
				encodedNames(b, fields[i].num, yield)
			}); ns != nil {
				lists[i], found[i] = ns.names, true
				continue
			}
		}
		lists[i] = make([]string, 0, count[i])
	}
	var rest []byte // every other field, as it came
	if nRest > 0 {
		rest = make([]byte, 0, nRest)
	}
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		l := protowire.ConsumeFieldValue(num, typ, b[n:])
		if i := field(num, typ); i < 0 {
			rest = append(rest, b[:n+l]...)
		} else if !found[i] {
			v, _ := protowire.ConsumeBytes(b[n:])
			lists[i] = append(lists[i], requestStrings.bytes(v))
		}
		b = b[n+l:]
	}
	if err := proto.Unmarshal(rest, m); err != nil {
		return lists, err
	}
	return lists, nil
}

// encodedNames yields the values of field num of an encoded message
// (checked by decodeNamed's first pass) as strings that live only for
// the call of yield.
func encodedNames(b []byte, num protowire.Number, yield func(string) bool) {
	for len(b) > 0 {
		fnum, typ, n := protowire.ConsumeTag(b)
		l := protowire.ConsumeFieldValue(fnum, typ, b[n:])
		if fnum == num && typ == protowire.BytesType {
			v, _ := protowire.ConsumeBytes(b[n:])
			if !yield(unsafe.String(unsafe.SliceData(v), len(v))) {
				return
			}
		}
		b = b[n+l:]
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
