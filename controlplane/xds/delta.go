package xds

import (
	"context"
	"maps"
	"slices"

	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	cachev3 "github.com/envoyproxy/go-control-plane/pkg/cache/v3"
	"google.golang.org/protobuf/encoding/protowire"
)

type deltaWatch struct {
	req *cachev3.DeltaRequest
	sub cachev3.Subscription
	out func(cachev3.DeltaResponse) // queues the answer; never waits
}

// CreateDeltaWatch answers at once when the node lacks a resource version
// or holds a removed resource (or this is its first wildcard request), and
// otherwise parks the watch until a snapshot of its group changes
// something for it.
func (c *watchCache) CreateDeltaWatch(req *cachev3.DeltaRequest, sub cachev3.Subscription, out func(cachev3.DeltaResponse)) (func(), error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	g := c.group(GroupHash{}.ID(req.GetNode()))
	return answerOrPark(c, g, g.deltas, deltaWatch{req: req, sub: sub, out: out}, g.deltaAnswer)
}

// deltaAnswer is delta in the shape answer and answerOrPark take.
func (g *sharedGroup) deltaAnswer(w deltaWatch) (cachev3.DeltaResponse, bool, error) {
	resp, err := g.delta(w)
	if err != nil || resp == nil {
		return nil, false, err
	}
	return resp, true, nil
}

// delta is the answer to w from the group's snapshot, nil when there is
// nothing to send.
func (g *sharedGroup) delta(w deltaWatch) (*deltaResponse, error) {
	t := w.req.GetTypeUrl()
	enc, err := g.encoded(t)
	if err != nil {
		return nil, err
	}
	enc.buildDelta(t)
	g.rememberHeld(t, enc)
	sent, known := g.heldBy(t, w.sub.ReturnedResources())
	var changed, removed []string
	var next map[string]string
	// all: changed is every resource, enc.names itself (shared, sorted,
	// never modified): a node that holds nothing yet, as every node of a
	// fleet that connects.
	all := false
	if w.sub.IsWildcard() {
		if all = len(sent) == 0; all {
			changed = enc.names
		}
		for _, n := range enc.names {
			if all {
				break
			}
			if prev, ok := sent[n]; !ok || prev != enc.versions[n] {
				changed = append(changed, n)
			}
		}
		if !known {
			// What the node holds is forgotten: every resource is sent,
			// and every other name the group was ever served is removed
			// (a client ignores the removal of a name it does not hold).
			sent = g.ever[t]
		}
		for n := range sent {
			if _, ok := enc.raw[n]; !ok {
				removed = append(removed, n)
			}
		}
		// The node will hold every resource of this encoding: its stream
		// keeps a token naming it instead of its own copy of the versions
		// (one map per encoding, shared).
		if enc.token == nil {
			enc.token = map[string]string{heldKey: enc.version}
		}
		next = enc.token
	} else if subs := w.sub.SubscribedResources(); len(sent) == 0 && len(enc.names) > 0 && covers(subs, enc.names) {
		all, changed = true, enc.names
		next = enc.namedNext(w.sub)
	} else {
		for n := range subs {
			prev, held := sent[n]
			if v, ok := enc.versions[n]; ok {
				if prev != v {
					changed = append(changed, n)
				}
			} else if held {
				removed = append(removed, n)
			}
		}
		next = enc.namedNext(w.sub)
	}
	if len(changed) == 0 && len(removed) == 0 && (!w.sub.IsWildcard() || w.req.GetResponseNonce() != "") {
		return nil, nil
	}
	if !all {
		slices.Sort(changed)
	}
	slices.Sort(removed)
	return &deltaResponse{req: w.req, version: enc.version, body: concatKey(enc.deltaBodies, enc.deltaEntries, enc.key(changed), changed), removed: removed, next: next}, nil
}

// covers reports whether set holds every name of names.
func covers(set map[string]struct{}, names []string) bool {
	if len(set) < len(names) {
		return false
	}
	for _, n := range names {
		if _, ok := set[n]; !ok {
			return false
		}
	}
	return true
}

// namedNext is what a named delta subscription holds once answered from
// e: the version of each subscribed resource that exists. Streams with
// the same interned name set (subscription) share one map.
func (e *encodedType) namedNext(sub cachev3.Subscription) map[string]string {
	var ns *nameSet
	if s, ok := sub.(subscription); ok {
		ns = s.names
		if next, ok := e.deltaNext[ns]; ok && ns != nil {
			return next
		}
	}
	next := make(map[string]string, len(sub.SubscribedResources()))
	for n := range sub.SubscribedResources() {
		if v, ok := e.versions[n]; ok {
			next[n] = v
		}
	}
	if ns != nil && len(e.deltaNext) < maxBodies {
		if e.deltaNext == nil {
			e.deltaNext = map[*nameSet]map[string]string{}
		}
		e.deltaNext[ns] = next
	}
	return next
}

// buildDelta hashes and encodes e's resources for delta responses, once.
// The version of a resource is the hash of its encoding, as
// go-control-plane computes it.
func (e *encodedType) buildDelta(t string) {
	if e.versions != nil {
		return
	}
	e.versions = make(map[string]string, len(e.raw))
	e.deltaEntries = make(map[string][]byte, len(e.raw))
	e.deltaBodies = map[string][]byte{}
	for name, b := range e.raw {
		v := cachev3.HashResource(b)
		e.versions[name] = v
		// Resource{version: 1, resource: 2 (Any{type_url: 1, value: 2}), name: 3}
		anyLen := anySize(t, b)
		resLen := protowire.SizeTag(1) + protowire.SizeBytes(len(v)) + protowire.SizeTag(2) + protowire.SizeBytes(anyLen) + protowire.SizeTag(3) + protowire.SizeBytes(len(name))
		entry := make([]byte, 0, protowire.SizeTag(2)+protowire.SizeBytes(resLen))
		entry = protowire.AppendTag(entry, 2, protowire.BytesType)
		entry = protowire.AppendVarint(entry, uint64(resLen))
		entry = protowire.AppendTag(entry, 1, protowire.BytesType)
		entry = protowire.AppendString(entry, v)
		entry = protowire.AppendTag(entry, 2, protowire.BytesType)
		entry = protowire.AppendVarint(entry, uint64(anyLen))
		entry = appendAny(entry, t, b)
		entry = protowire.AppendTag(entry, 3, protowire.BytesType)
		entry = protowire.AppendString(entry, name)
		e.deltaEntries[name] = entry
	}
}

// deltaResponse is a cachev3.DeltaResponse whose resources are
// pre-encoded bytes shared by every stream that gets the same answer.
type deltaResponse struct {
	req     *cachev3.DeltaRequest
	version string
	body    []byte
	removed []string
	next    map[string]string // the node's resource versions once it has this
}

// GetDeltaDiscoveryResponse builds a fresh message (the server sets its
// nonce) around the shared body, which the message never modifies.
func (r *deltaResponse) GetDeltaDiscoveryResponse() (*discoveryv3.DeltaDiscoveryResponse, error) {
	out := &discoveryv3.DeltaDiscoveryResponse{SystemVersionInfo: r.version, TypeUrl: r.req.GetTypeUrl(), RemovedResources: r.removed}
	if len(r.body) > 0 {
		out.ProtoReflect().SetUnknown(r.body[:len(r.body):len(r.body)])
	}
	return out, nil
}

func (r *deltaResponse) GetDeltaRequest() *discoveryv3.DeltaDiscoveryRequest { return r.req }
func (r *deltaResponse) GetSystemVersion() (string, error)                   { return r.version, nil }
func (r *deltaResponse) GetResponseVersion() string                          { return r.version }
func (r *deltaResponse) GetNextVersionMap() map[string]string                { return r.next }
func (r *deltaResponse) GetReturnedResources() map[string]string             { return r.next }
func (r *deltaResponse) GetContext() context.Context                         { return context.Background() }

// heldKey is the entry of a wildcard delta subscription's returned
// resources that stands for "every resource of the type's encoding at
// this version, at its content hash": hundreds of name → hash entries
// that every node of the group holds alike, kept once per group
// (sharedGroup.held) instead of once per stream. No resource has an empty
// name. go-control-plane changes a stream's returned resources only on an
// unsubscription (deleting the name, or, on a wildcard stream, setting it
// to ""); such entries stay next to the token and override it.
const heldKey = ""

// heldVersions bounds the encodings remembered per type for heldKey
// tokens; a node whose token is older is sent every resource again, and
// the removal of every other name the group was ever served
// (sharedGroup.ever).
const heldVersions = 4

// rememberHeld keeps enc's resource versions for the heldKey tokens of
// type t. Caller holds c.mu.
func (g *sharedGroup) rememberHeld(t string, enc *encodedType) {
	if g.held == nil {
		g.held = map[string][]heldEncoding{}
	}
	h := g.held[t]
	for _, e := range h {
		if e.version == enc.version {
			return
		}
	}
	h = append(h, heldEncoding{version: enc.version, versions: enc.versions})
	if g.ever == nil {
		g.ever = map[string]map[string]string{}
	}
	if g.ever[t] == nil {
		g.ever[t] = map[string]string{}
	}
	for n := range enc.versions {
		g.ever[t][n] = ""
	}
	if len(h) > heldVersions {
		h = slices.Delete(h, 0, len(h)-heldVersions)
	}
	g.held[t] = h
}

// heldBy is what a node holds (name → content hash) given its stream's
// returned resources: those themselves, or, with a heldKey token, the
// remembered encoding it names with the other entries applied over it.
// known is false when that encoding is forgotten (the node is more than
// heldVersions encodings behind). The result is read only. Caller holds
// c.mu.
func (g *sharedGroup) heldBy(t string, returned map[string]string) (held map[string]string, known bool) {
	version, ok := returned[heldKey]
	if !ok {
		return returned, true
	}
	var base map[string]string
	for _, e := range g.held[t] {
		if e.version == version {
			base = e.versions
			break
		}
	}
	if base == nil {
		return nil, false
	}
	if len(returned) == 1 {
		return base, true
	}
	out := maps.Clone(base)
	for n, v := range returned {
		if n == heldKey {
			continue
		}
		if v == "" {
			delete(out, n) // unsubscribed from a wildcard stream: send it again if it exists
		} else {
			out[n] = v
		}
	}
	return out, true
}

// heldEncoding is one remembered encoding of a type.
type heldEncoding struct {
	version  string
	versions map[string]string // name → content hash (encodedType.versions, shared)
}
