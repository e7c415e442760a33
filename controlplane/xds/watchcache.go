package xds

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"

	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"github.com/envoyproxy/go-control-plane/pkg/cache/types"
	cachev3 "github.com/envoyproxy/go-control-plane/pkg/cache/v3"
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"google.golang.org/protobuf/encoding/protowire"
)

// watchCache answers state-of-the-world and delta watches itself and
// leaves snapshot storage and lookups to go-control-plane's snapshot
// cache. The reason is cost: go-control-plane builds every response
// resource by resource, per stream (a fresh marshal, Any, and for delta a
// SHA-256 of every resource sent, for each of hundreds of resources, for
// each of thousands of nodes), although every node of a node group that is
// in the same state gets the same bytes. Here each resource is encoded
// (and, for delta, hashed) once per snapshot, and each response body (the
// resources field of a group's answer for one set of names) once per
// snapshot too, then shared: a response is a DiscoveryResponse or
// DeltaDiscoveryResponse whose resources field is those bytes, carried as
// the message's unknown fields (protobuf fields may come in any order on
// the wire, so a client reads the same message), and the ADS codec sends
// them by reference. The semantics are go-control-plane's (non-ADS mode).
// SotW: answer when the version differs from the request's, or when a
// subscribed name exists that the node has not been sent; named requests
// get the named resources that exist, except that a named RDS or EDS
// request that ACKs the last response gets only the resources whose
// content changed or that it lacks (partialSotW). Delta: send the resources whose
// version differs from what the node holds and the removed ones; answer
// the first wildcard request even when empty. Resources are listed in
// name order.
type watchCache struct {
	cachev3.SnapshotCache // snapshot storage and lookups

	mu     sync.Mutex
	groups map[string]*sharedGroup
	nextID int64
}

type sharedGroup struct {
	snap    cachev3.ResourceSnapshot
	history []revision              // the revisions set, newest last (at most historyLen)
	types   map[string]*encodedType // type URL → encodings of snap's resources
	watches map[int64]sotwWatch
	deltas  map[int64]deltaWatch
	held    map[string][]heldEncoding    // type URL → encodings named by heldKey tokens, oldest first
	ever    map[string]map[string]string // type URL → every resource name served with a heldKey encoding (values unused)
}

type sotwWatch struct {
	req *cachev3.Request
	sub cachev3.Subscription
	out func(cachev3.Response) // queues the answer; never waits
}

// encodedType is one type of one snapshot, encoded.
type encodedType struct {
	version string
	names   []string          // sorted
	raw     map[string][]byte // name → the resource's encoding
	entries map[string][]byte // name → SotW resources-field entry (tag, length, Any)
	bodies  map[string][]byte // requested name set → concatenated entries
	// returned is, per name set answered (the keys of bodies), the
	// returned resources of that answer: one map shared by every stream
	// given it (subscriptions never modify it).
	returned map[string]map[string]string

	// Delta, built on first use.
	versions     map[string]string // name → content hash
	held         map[string]string // name → "<version> <hash>" (partial SotW, on first use)
	deltaEntries map[string][]byte // name → delta resources-field entry (Resource)
	deltaBodies  map[string][]byte
	// deltaNext is, per interned subscribed name set, the resource
	// versions a named delta subscription holds once answered: shared
	// by every stream subscribed to the same names.
	deltaNext map[*nameSet]map[string]string
	// askedBy is, per interned SotW name set, the names of the set
	// that exist, sorted (asked).
	askedBy map[*nameSet][]string
	// token is a wildcard delta subscription's returned resources once
	// answered from this encoding ({heldKey: version}), shared.
	token map[string]string
}

// revision is one revision of a group as set (Server.SetSnapshot): its
// name and the version of each resource type it carried.
type revision struct {
	name     string
	versions map[string]string // type URL → version
}

// historyLen bounds the revisions kept per group to map a node's ACKed
// type versions back to the revision it runs.
const historyLen = 32

// maxBodies bounds the shared bodies per type and snapshot; requests for
// more distinct name sets are encoded per response.
const maxBodies = 64

func newWatchCache(inner cachev3.SnapshotCache) *watchCache {
	return &watchCache{SnapshotCache: inner, groups: map[string]*sharedGroup{}}
}

func (c *watchCache) group(name string) *sharedGroup {
	g := c.groups[name]
	if g == nil {
		g = &sharedGroup{watches: map[int64]sotwWatch{}, deltas: map[int64]deltaWatch{}}
		c.groups[name] = g
	}
	return g
}

// SetSnapshot stores snap for the group as revision rev and answers the
// group's watches it changes something for: a type whose version did not
// change is sent to nobody.
func (c *watchCache) SetSnapshot(ctx context.Context, group, rev string, snap cachev3.ResourceSnapshot) error {
	// Under c.mu, so the stored snapshot and the one watches are answered
	// from cannot be two different ones of concurrent calls.
	c.mu.Lock()
	defer c.mu.Unlock()
	if err := c.SnapshotCache.SetSnapshot(ctx, group, snap); err != nil {
		return err
	}
	g := c.group(group)
	g.snap, g.types = snap, nil
	g.record(rev, snap)
	if err := answer(g.watches, g.sotw); err != nil {
		return err
	}
	return answer(g.deltas, g.deltaAnswer)
}

// ClearSnapshot forgets a group's snapshot; its open watches stay open.
func (c *watchCache) ClearSnapshot(group string) {
	c.mu.Lock()
	c.SnapshotCache.ClearSnapshot(group)
	if g := c.groups[group]; g != nil {
		g.snap, g.types, g.history, g.held, g.ever = nil, nil, nil, nil, nil
		if len(g.watches) == 0 && len(g.deltas) == 0 {
			delete(c.groups, group)
		}
	}
	c.mu.Unlock()
}

// record appends rev to the group's history (replacing an entry of the
// same name, so the newest setting of a revision wins).
func (g *sharedGroup) record(rev string, snap cachev3.ResourceSnapshot) {
	r := revision{name: rev, versions: map[string]string{}}
	for i := types.ResponseType(0); i < types.UnknownType; i++ {
		t, err := cachev3.GetResponseTypeURL(i)
		if err != nil {
			continue
		}
		if v := snap.GetVersion(t); v != "" {
			r.versions[t] = v
		}
	}
	g.history = slices.DeleteFunc(g.history, func(h revision) bool { return h.name == rev })
	g.history = append(g.history, r)
	if len(g.history) > historyLen {
		g.history = slices.Delete(g.history, 0, len(g.history)-historyLen)
	}
}

// revisionOf is the newest revision of group whose type typeURL was at
// version: the revision a response of that version was sent for ("" when
// none is remembered).
func (c *watchCache) revisionOf(group, typeURL, version string) string {
	c.mu.Lock()
	defer c.mu.Unlock()
	g := c.groups[group]
	if g == nil || version == "" {
		return ""
	}
	for i := len(g.history) - 1; i >= 0; i-- {
		if g.history[i].versions[typeURL] == version {
			return g.history[i].name
		}
	}
	return ""
}

// running is the newest revision of group that a node which ACKed acked
// (type URL → version) runs: every type it ACKed is at that revision's
// version of the type. A type a rebuild left unchanged keeps its version
// and is not re-sent, so its old ACK counts for the new revision. ""
// when the node ACKed nothing or no remembered revision matches.
func (c *watchCache) running(group string, acked map[string]string) string {
	if len(acked) == 0 {
		return ""
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	g := c.groups[group]
	if g == nil {
		return ""
	}
next:
	for i := len(g.history) - 1; i >= 0; i-- {
		for t, v := range acked {
			if g.history[i].versions[t] != v {
				continue next
			}
		}
		return g.history[i].name
	}
	return ""
}

// CreateWatch answers at once when the node is behind or lacks a
// subscribed resource, and otherwise parks the watch until a snapshot of
// the node's group changes that.
func (c *watchCache) CreateWatch(req *cachev3.Request, sub cachev3.Subscription, out func(cachev3.Response)) (func(), error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	g := c.group(GroupHash{}.ID(req.GetNode()))
	return answerOrPark(c, g, g.watches, sotwWatch{req: req, sub: sub, out: out}, g.sotw)
}

// sotw is the answer to w, if it needs one.
func (g *sharedGroup) sotw(w sotwWatch) (cachev3.Response, bool, error) {
	if behind, err := g.behind(w); err != nil || !behind {
		return nil, false, err
	}
	resp, err := g.response(w)
	return resp, err == nil, err
}

// A watch is a parked SotW or delta request; R is its kind of answer.
type watch[R any] interface{ deliver(R) }

func (w sotwWatch) deliver(r cachev3.Response)       { w.out(r) }
func (w deltaWatch) deliver(r cachev3.DeltaResponse) { w.out(r) }

// answerOrPark gives w its answer now if respond has one, and otherwise
// keeps it in m until answer or the stream's cancel removes it. A
// stream queues an answer without waiting (adsServer). Caller holds c.mu.
func answerOrPark[W watch[R], R any](c *watchCache, g *sharedGroup, m map[int64]W, w W, respond func(W) (R, bool, error)) (func(), error) {
	if g.snap != nil {
		resp, ok, err := respond(w)
		if err != nil {
			return nil, err
		}
		if ok {
			w.deliver(resp)
			return func() {}, nil
		}
	}
	c.nextID++
	id := c.nextID
	m[id] = w
	return func() {
		c.mu.Lock()
		delete(m, id)
		c.mu.Unlock()
	}, nil
}

// answer gives each watch of m the answer respond has for it, if any, and
// forgets the watches answered. Caller holds c.mu.
func answer[W watch[R], R any](m map[int64]W, respond func(W) (R, bool, error)) error {
	for id, w := range m {
		resp, ok, err := respond(w)
		if err != nil {
			return err
		}
		if !ok {
			continue
		}
		delete(m, id)
		w.deliver(resp)
	}
	return nil
}

// behind reports whether w must be answered from the group's snapshot now.
func (g *sharedGroup) behind(w sotwWatch) (bool, error) {
	t := w.req.GetTypeUrl()
	if g.snap.GetVersion(t) != w.req.GetVersionInfo() {
		return true, nil
	}
	enc, err := g.encoded(t)
	if err != nil {
		return false, err
	}
	sent := w.sub.ReturnedResources()
	if w.sub.IsWildcard() {
		for _, r := range enc.names {
			if _, ok := sent[r]; !ok {
				return true, nil
			}
		}
		return false, nil
	}
	for r := range w.sub.SubscribedResources() {
		if _, ok := sent[r]; !ok {
			if _, ok := enc.entries[r]; ok {
				return true, nil
			}
		}
	}
	return false, nil
}

// response is the answer to w from the group's current snapshot.
func (g *sharedGroup) response(w sotwWatch) (*sharedResponse, error) {
	t := w.req.GetTypeUrl()
	enc, err := g.encoded(t)
	if err != nil {
		return nil, err
	}
	names := enc.names
	if asked := w.req.GetResourceNames(); len(asked) > 0 {
		names = enc.asked(w.sub, asked)
	}
	key := enc.key(names)
	if !partialSotW(t) || w.sub.IsWildcard() {
		returned := enc.returnedFor(key, names, func(string) string { return enc.version })
		return &sharedResponse{req: w.req, version: enc.version, body: enc.bodyFor(key, names), returned: returned}, nil
	}
	// A named RDS or EDS subscription: the stream remembers each resource
	// returned by version and content hash, and a node that ACKed the last
	// response sent on it is sent only the resources that changed or that
	// it lacks (go-control-plane forgets a resource the node unsubscribes
	// from, so one it subscribes to again is sent again).
	held := enc.sotwHeld(t)
	sent := w.sub.ReturnedResources()
	acked := w.req.GetErrorDetail() == nil && w.req.GetVersionInfo() != "" && sentVersion(sent) == w.req.GetVersionInfo()
	// (Its own key: a wildcard answer of the same names holds versions
	// only.)
	returned := enc.returnedFor(key+heldSuffix, names, func(n string) string { return held[n] })
	if !acked {
		return &sharedResponse{req: w.req, version: enc.version, body: enc.bodyFor(key, names), returned: returned}, nil
	}
	send := make([]string, 0, len(names))
	for _, n := range names {
		if contentHash(sent[n]) != contentHash(held[n]) {
			send = append(send, n)
		}
	}
	return &sharedResponse{req: w.req, version: enc.version, body: enc.body(send), returned: returned}, nil
}

// asked is the names of asked that exist, sorted, once per interned
// name set (sub's, when it is a stream loop's subscription) and encoding:
// every node of a group asks for the same names in every SotW request.
// Read only.
func (e *encodedType) asked(sub cachev3.Subscription, asked []string) []string {
	var ns *nameSet
	if s, ok := sub.(subscription); ok && s.names != nil && len(s.names.names) == len(asked) {
		ns = s.names
		if names, ok := e.askedBy[ns]; ok {
			return names
		}
	}
	names := make([]string, 0, len(asked))
	for _, n := range asked {
		if _, ok := e.entries[n]; ok {
			names = append(names, n)
		}
	}
	slices.Sort(names)
	names = slices.Compact(names)
	if len(names) == len(e.names) {
		names = e.names // the same names: share the encoding's list
	}
	if ns != nil && len(e.askedBy) < maxBodies {
		if e.askedBy == nil {
			e.askedBy = map[*nameSet][]string{}
		}
		e.askedBy[ns] = names
	}
	return names
}

// partialSotW reports whether a SotW response of type t may carry only
// the resources that changed: route tables and cluster load assignments.
// The xDS protocol ("Grouping Resources into Responses") requires the
// complete state of the world for listeners and clusters only; for the
// other types a client keeps the resources a response leaves out (Envoy
// updates only the RDS and EDS subscriptions whose resources a response
// carries). Scopes (SRDS) are not among them: Envoy subscribes to scopes
// as a wildcard and takes a SotW scope response as the whole set, removing
// the scopes it leaves out.
func partialSotW(t string) bool {
	return t == resourcev3.RouteType || t == resourcev3.EndpointType
}

// sotwHeld is, per resource, what a partial SotW subscription's returned
// resources hold for it: the type's version and the resource's content
// hash, "<version> <hash>", built once per snapshot and shared by every
// stream.
func (e *encodedType) sotwHeld(t string) map[string]string {
	if e.held == nil {
		e.buildDelta(t)
		e.held = make(map[string]string, len(e.versions))
		for n, h := range e.versions {
			e.held[n] = e.version + " " + h
		}
	}
	return e.held
}

// contentHash is the hash of a sotwHeld entry ("" for none).
func contentHash(held string) string {
	_, h, _ := strings.Cut(held, " ")
	return h
}

// sentVersion is the version of the response whose resources sent holds
// (each entry "<version> <hash>", all of one response), "" when none.
func sentVersion(sent map[string]string) string {
	for _, v := range sent {
		version, _, _ := strings.Cut(v, " ")
		return version
	}
	return ""
}

// held is what a node that presents version of typeURL on a new stream
// holds, as a response of that version would have returned it; nil when
// the group is not at that version.
func (c *watchCache) held(group, typeURL, version string) (map[string]string, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	g := c.groups[group]
	if g == nil || g.snap == nil || g.snap.GetVersion(typeURL) != version {
		return nil, nil
	}
	enc, err := g.encoded(typeURL)
	if err != nil {
		return nil, err
	}
	held := make(map[string]string, len(enc.names))
	if !partialSotW(typeURL) {
		for _, n := range enc.names {
			held[n] = version
		}
		return held, nil
	}
	for n, v := range enc.sotwHeld(typeURL) {
		held[n] = v
	}
	return held, nil
}

// encoded returns type t of the group's snapshot, encoding it on first use.
func (g *sharedGroup) encoded(t string) (*encodedType, error) {
	if e := g.types[t]; e != nil {
		return e, nil
	}
	res := g.snap.GetResources(t)
	e := &encodedType{version: g.snap.GetVersion(t), raw: make(map[string][]byte, len(res)), entries: make(map[string][]byte, len(res)), bodies: map[string][]byte{}, returned: map[string]map[string]string{}}
	enc := make(map[string][]byte, len(res))
	size := 0
	for name, r := range res {
		b, err := resourceBytes(r)
		if err != nil {
			return nil, fmt.Errorf("xds: encoding %s %q: %w", t, name, err)
		}
		enc[name] = b
		n := anySize(t, b)
		size += protowire.SizeTag(2) + protowire.SizeBytes(n)
		e.names = append(e.names, name)
	}
	slices.Sort(e.names)
	// One buffer holds every entry in name order: it is the body of the
	// wildcard answer, each entry is a slice of it, and each resource's
	// encoding a slice of its entry (no further copies).
	all := make([]byte, 0, size)
	for _, name := range e.names {
		b := enc[name]
		start := len(all)
		// The Any as field 2 (resources) of the response.
		all = protowire.AppendTag(all, 2, protowire.BytesType)
		all = protowire.AppendVarint(all, uint64(anySize(t, b)))
		all = appendAny(all, t, b)
		entry := all[start:len(all):len(all)]
		e.entries[name] = entry
		e.raw[name] = entry[len(entry)-len(b):]
	}
	if len(e.names) > 0 {
		e.bodies[allNames] = all
	}
	if g.types == nil {
		g.types = map[string]*encodedType{}
	}
	g.types[t] = e
	return e, nil
}

// resourceBytes is a resource's encoding: the bytes of a pre-encoded resource
// (an Empty carrying them as unknown fields, see snapshot.premarshaled)
// as they are, any other marshaled.
func resourceBytes(r types.Resource) ([]byte, error) {
	m := r.ProtoReflect()
	if m.Descriptor().Fields().Len() == 0 {
		return m.GetUnknown(), nil
	}
	return cachev3.MarshalResource(r)
}

// anySize is the encoded size of Any{type_url: t, value: b}.
func anySize(t string, b []byte) int {
	return protowire.SizeTag(1) + protowire.SizeBytes(len(t)) + protowire.SizeTag(2) + protowire.SizeBytes(len(b))
}

// appendAny appends the fields of Any{type_url: t, value: b}.
func appendAny(dst []byte, t string, b []byte) []byte {
	dst = protowire.AppendTag(dst, 1, protowire.BytesType)
	dst = protowire.AppendString(dst, t)
	dst = protowire.AppendTag(dst, 2, protowire.BytesType)
	return protowire.AppendBytes(dst, b)
}

// body concatenates the SotW entries of names (sorted, all present),
// sharing the result between requests for the same names.
func (e *encodedType) body(names []string) []byte { return e.bodyFor(e.key(names), names) }

// bodyFor is body with names' key (encodedType.key).
func (e *encodedType) bodyFor(key string, names []string) []byte {
	return concatKey(e.bodies, e.entries, key, names)
}

// heldSuffix marks, in returned, the answers of named partial SotW
// subscriptions, whose returned resources hold "<version> <hash>".
const heldSuffix = "\x00held"

// allNames is the key of every name of a type (its wildcard answer).
const allNames = "\x00*"

// key names a set of names (sorted, all present) in bodies and returned:
// allNames for all of them (no join of hundreds of names for every
// wildcard answer), else the names joined.
func (e *encodedType) key(names []string) string {
	if len(names) == len(e.names) && len(names) > 0 {
		return allNames
	}
	return strings.Join(names, "\x00")
}

// returnedFor is the returned resources of an answer of names (key its
// key), each at version(name), shared between the answers of the same
// names (up to maxBodies name sets).
func (e *encodedType) returnedFor(key string, names []string, version func(string) string) map[string]string {
	if r, ok := e.returned[key]; ok {
		return r
	}
	r := make(map[string]string, len(names))
	for _, n := range names {
		r[n] = version(n)
	}
	if len(e.returned) < maxBodies {
		e.returned[key] = r
	}
	return r
}

// concatKey joins the entries of names, remembering the result in bodies
// under key (names' key) for up to maxBodies name sets.
func concatKey(bodies, entries map[string][]byte, key string, names []string) []byte {
	if b, ok := bodies[key]; ok {
		return b
	}
	n := 0
	for _, name := range names {
		n += len(entries[name])
	}
	b := make([]byte, 0, n)
	for _, name := range names {
		b = append(b, entries[name]...)
	}
	if len(bodies) < maxBodies {
		bodies[key] = b
	}
	return b
}

// sharedResponse is a cachev3.Response whose resources are pre-encoded
// bytes shared by every stream that gets the same answer.
type sharedResponse struct {
	req      *cachev3.Request
	version  string
	body     []byte
	returned map[string]string
}

// GetDiscoveryResponse builds a fresh message (the server sets its nonce)
// around the shared body, which the message never modifies.
func (r *sharedResponse) GetDiscoveryResponse() (*discoveryv3.DiscoveryResponse, error) {
	out := &discoveryv3.DiscoveryResponse{VersionInfo: r.version, TypeUrl: r.req.GetTypeUrl()}
	if len(r.body) > 0 {
		out.ProtoReflect().SetUnknown(r.body[:len(r.body):len(r.body)])
	}
	return out, nil
}

func (r *sharedResponse) GetRequest() *discoveryv3.DiscoveryRequest { return r.req }
func (r *sharedResponse) GetVersion() (string, error)               { return r.version, nil }
func (r *sharedResponse) GetResponseVersion() string                { return r.version }
func (r *sharedResponse) GetReturnedResources() map[string]string   { return r.returned }
func (r *sharedResponse) GetContext() context.Context               { return context.Background() }
