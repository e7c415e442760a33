package snapshot

import (
	"sync"

	"github.com/envoyproxy/go-control-plane/pkg/cache/types"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/emptypb"
)

// premarshaled carries a resource already encoded once: go-control-plane
// marshals every resource of every response anew, per stream, which for a
// fleet of thousands of nodes of a few node groups is the same bytes
// thousands of times. An Empty whose unknown fields hold the encoding
// marshals to exactly those bytes with a copy, and the name methods let the
// cache index it. Referential checks are done before this wrapping
// (compile.CheckReferences), because go-control-plane cannot see inside.
type premarshaled struct {
	*emptypb.Empty
	name string
}

// GetName is the resource name the snapshot cache indexes by.
func (p premarshaled) GetName() string { return p.name }

// marshaler encodes each resource once and reuses the bytes while the
// same resource object stays published (across node groups, and across
// results for specs that did not change).
type marshaler struct {
	mu   sync.Mutex
	cur  map[types.Resource][]byte
	prev map[types.Resource][]byte
}

func newMarshaler() *marshaler {
	return &marshaler{cur: map[types.Resource][]byte{}, prev: map[types.Resource][]byte{}}
}

var deterministic = proto.MarshalOptions{Deterministic: true}

// wrap returns r as a premarshaled resource and its encoding.
func (m *marshaler) wrap(name string, r types.Resource) (types.Resource, []byte, error) {
	m.mu.Lock()
	b, ok := m.cur[r]
	if !ok {
		if b, ok = m.prev[r]; ok {
			m.cur[r] = b
		}
	}
	m.mu.Unlock()
	if !ok {
		var err error
		if b, err = deterministic.Marshal(r); err != nil {
			return nil, nil, err
		}
		m.mu.Lock()
		m.cur[r] = b
		m.mu.Unlock()
	}
	e := &emptypb.Empty{}
	e.ProtoReflect().SetUnknown(b)
	return premarshaled{Empty: e, name: name}, b, nil
}

// rotate forgets encodings not used since the previous rotation; called
// after each publication so the cache holds at most two generations.
func (m *marshaler) rotate() {
	m.mu.Lock()
	m.prev, m.cur = m.cur, map[types.Resource][]byte{}
	m.mu.Unlock()
}
