package xds

import (
	"context"
	"hash/maphash"
	"iter"
	"maps"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	cachev3 "github.com/envoyproxy/go-control-plane/pkg/cache/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/grpc/tap"
)

// adsServer is the ADS service, SotW and delta: a stream loop of its own
// in place of go-control-plane's server, with the same protocol
// behaviour (go-control-plane v0.14 without ordered ADS: a SotW request
// whose nonce is not the last one sent for its type is ignored; legacy
// wildcard on; an answer not yet sent when a request of its type
// replaces its watch is dropped, SotW and delta alike: the new watch is
// answered from what the node was last sent, so its answer carries the
// dropped one's changes), so that what every stream keeps is small and
// shared:
//
//   - a subscription's name set is interned (nameSets): every node of a
//     group asks for the same hundreds of endpoint names, and holds one
//     map of them, not one each;
//   - a subscription's returned resources are the response's own map,
//     which watchCache shares between the streams that get the same
//     answer; a subscription change that drops names builds a new map
//     instead of modifying it (go-control-plane modifies it, so it cannot
//     be shared);
//   - one goroutine per stream, gRPC's handler, reading requests (go-
//     control-plane has two: one reading, one sending); the cache queues
//     its answers without waiting, and a goroutine started for them sends
//     them in order and ends when the queue is empty, so an idle stream
//     holds one goroutine stack, not two.
type adsServer struct {
	ctx   context.Context
	cache *nackCache
	t     *tracker
	sets  *nameSets
	ids   atomic.Int64
}

func newADSServer(ctx context.Context, c *nackCache, t *tracker) *adsServer {
	return &adsServer{ctx: ctx, cache: c, t: t, sets: requestNames}
}

// loop is one stream's state: its watches by type and the answers the
// cache gave them, which a goroutine started when the first one arrives
// sends in order (and ends when none is left).
type loop[R any, M any] struct {
	// prepare makes the message for an answer to w, and records it on
	// w (nonce, returned resources) and in the tracker. Caller holds mu.
	prepare func(r R, w *typeWatch, nonce string) (M, error)
	send    func(M) error
	cancel  context.CancelFunc // ends the stream's context (streamContext); nil without it

	mu      sync.Mutex // the fields below; taken before the cache's lock
	watches map[string]*typeWatch
	nonce   int64
	gen     int64
	closed  bool

	omu     sync.Mutex // the fields below; the cache delivers under its lock
	pending []queued[R]
	running bool
	err     error // the first error sending
	senders sync.WaitGroup
}

type queued[R any] struct {
	typeURL string
	gen     int64 // the watch it answers
	resp    R
}

func newLoop[R, M any](ctx context.Context, prepare func(R, *typeWatch, string) (M, error), send func(M) error) *loop[R, M] {
	l := &loop[R, M]{prepare: prepare, send: send, watches: map[string]*typeWatch{}}
	l.cancel, _ = ctx.Value(streamCancelKey{}).(context.CancelFunc)
	return l
}

// deliver is what the watch of type typeURL and generation gen answers
// with: the answer is queued, and a sender started if none runs. It never
// waits (the cache calls it under its lock).
func (l *loop[R, M]) deliver(typeURL string, gen int64) func(R) {
	return func(r R) {
		l.omu.Lock()
		l.pending = append(l.pending, queued[R]{typeURL, gen, r})
		start := !l.running
		l.running = true
		if start {
			l.senders.Add(1)
		}
		l.omu.Unlock()
		if start {
			go l.drain()
		}
	}
}

// drain sends the queued answers, in order, until none is left.
func (l *loop[R, M]) drain() {
	defer l.senders.Done()
	for {
		l.omu.Lock()
		batch := l.pending
		l.pending = nil
		if l.err != nil { // the stream is ending: nothing more is sent
			l.running = false
			l.omu.Unlock()
			return
		}
		l.omu.Unlock()
		var msgs []M
		var err error
		l.mu.Lock()
		for _, q := range batch {
			w := l.watches[q.typeURL]
			if l.closed || w == nil || w.gen != q.gen {
				continue // the answer of a watch a later request replaced
			}
			l.nonce++
			m, perr := l.prepare(q.resp, w, strconv.FormatInt(l.nonce, 10))
			if perr != nil {
				err = perr
				break
			}
			msgs = append(msgs, m)
		}
		l.mu.Unlock()
		for _, m := range msgs {
			if err != nil {
				break
			}
			err = l.send(m)
		}
		l.omu.Lock()
		if err != nil && l.err == nil {
			// gRPC ends a stream whose SendMsg failed (it writes the
			// status), so the handler's Recv returns.
			l.err = err
		}
		if len(l.pending) == 0 || l.err != nil {
			l.pending = nil
			l.running = false
			l.omu.Unlock()
			return
		}
		l.omu.Unlock()
	}
}

// watch replaces the watch of type t (nil when none) with a new one for
// req, from the cache's create. Caller holds mu.
func (l *loop[R, M]) watch(t string, w *typeWatch, create func(deliver func(R)) (func(), error)) error {
	l.gen++
	w.gen = l.gen
	l.watches[t] = w
	cancel, err := create(l.deliver(t, l.gen))
	if err != nil {
		w.cancel = func() {}
		return err
	}
	w.cancel = cancel
	return nil
}

// end cancels the watches and waits for a running sender; it returns the
// error that ended sending, if any.
func (l *loop[R, M]) end() error {
	l.mu.Lock()
	l.closed = true
	for _, w := range l.watches {
		if w.cancel != nil {
			w.cancel()
		}
	}
	l.mu.Unlock()
	// No watch answers any more: no sender starts after this.
	l.senders.Wait()
	l.omu.Lock()
	defer l.omu.Unlock()
	return l.err
}

// typeWatch is a stream's state for one type.
type typeWatch struct {
	gen    int64 // of the live watch; answers of older ones are dropped
	cancel func()
	sub    subscription
	nonce  string // of the last response sent
}

// streamCancelKey keys, in a stream's context, the function that cancels
// it (streamContext).
type streamCancelKey struct{}

// streamContext is the gRPC tap (ServerOptions) that makes every stream's
// context cancellable by the stream's handler: an ADS stream reads its
// requests on the handler's goroutine, so ending the stream (the server
// stops) must make Recv return.
func streamContext(ctx context.Context, _ *tap.Info) (context.Context, error) {
	ctx, cancel := context.WithCancel(ctx)
	return context.WithValue(ctx, streamCancelKey{}, cancel), nil
}

// serve is the life of a stream: requests are read here, answers sent
// by the loop's sender. It ends when the node ends the stream, the
// server's context ends (through streamContext), sending fails (gRPC
// then ends the stream), or handle refuses a request.
func serve[Req, R, M any](s *adsServer, l *loop[R, M], recv func() (*Req, error), handle func(*Req) error) error {
	if l.cancel != nil {
		defer context.AfterFunc(s.ctx, l.cancel)()
	}
	for {
		req, err := recv()
		if err != nil {
			if serr := l.end(); serr != nil {
				return serr
			}
			return nil
		}
		l.mu.Lock()
		err = handle(req)
		l.mu.Unlock()
		if err != nil {
			l.end()
			return err
		}
	}
}

// StreamAggregatedResources serves a SotW ADS stream.
func (s *adsServer) StreamAggregatedResources(st grpc.BidiStreamingServer[discoveryv3.DiscoveryRequest, discoveryv3.DiscoveryResponse]) error {
	id := s.ids.Add(1)
	key := streamKey{false, id}
	s.t.open(st.Context(), id, false)
	defer s.t.close(key)
	l := newLoop(st.Context(), func(r cachev3.Response, w *typeWatch, nonce string) (*discoveryv3.DiscoveryResponse, error) {
		resp, err := r.GetDiscoveryResponse()
		if err != nil {
			return nil, err
		}
		resp.Nonce = nonce
		w.sub.returned = r.GetReturnedResources()
		w.nonce = nonce
		s.t.response(key, resp.GetTypeUrl(), nonce, resp.GetVersionInfo())
		return resp, nil
	}, st.Send)
	var node streamNode
	return serve(s, l, st.Recv, func(req *discoveryv3.DiscoveryRequest) error {
		own := req.GetNode() != nil
		if !own {
			req.Node = node.get()
		}
		t := req.GetTypeUrl()
		if t == "" {
			return status.Errorf(codes.InvalidArgument, "type URL is required for ADS")
		}
		var msg *string
		if req.GetErrorDetail() != nil {
			m := req.GetErrorDetail().GetMessage()
			msg = &m
		}
		if err := s.t.request(key, req.GetNode(), t, req.GetResponseNonce(), req.GetVersionInfo(), msg); err != nil {
			return err
		}
		if own {
			req.Node = node.keep(req.Node)
		}
		w := l.watches[t]
		if w != nil {
			if w.nonce != "" && req.GetResponseNonce() != w.nonce {
				return nil // stale: the node has not seen the last response yet
			}
			w.cancel()
		} else {
			w = &typeWatch{sub: subscription{legacy: true, wildcard: len(req.GetResourceNames()) == 0}}
		}
		w.sub.setSotw(req.GetResourceNames(), s.sets)
		if w.sub.names != nil {
			req.ResourceNames = w.sub.names.names // the stream keeps the shared copy
		}
		return l.watch(t, w, func(deliver func(cachev3.Response)) (func(), error) {
			return s.cache.CreateWatch(req, w.sub, deliver)
		})
	})
}

// DeltaAggregatedResources serves a delta ADS stream.
func (s *adsServer) DeltaAggregatedResources(st grpc.BidiStreamingServer[discoveryv3.DeltaDiscoveryRequest, discoveryv3.DeltaDiscoveryResponse]) error {
	id := s.ids.Add(1)
	key := streamKey{true, id}
	s.t.open(st.Context(), id, true)
	defer s.t.close(key)
	l := newLoop(st.Context(), func(r cachev3.DeltaResponse, w *typeWatch, nonce string) (*discoveryv3.DeltaDiscoveryResponse, error) {
		resp, err := r.GetDeltaDiscoveryResponse()
		if err != nil {
			return nil, err
		}
		resp.Nonce = nonce
		w.nonce = nonce
		w.sub.returned = r.GetNextVersionMap()
		s.t.response(key, resp.GetTypeUrl(), nonce, resp.GetSystemVersionInfo())
		return resp, nil
	}, st.Send)
	var node streamNode
	return serve(s, l, st.Recv, func(req *discoveryv3.DeltaDiscoveryRequest) error {
		var msg *string
		if req.GetErrorDetail() != nil {
			m := req.GetErrorDetail().GetMessage()
			msg = &m
		}
		if err := s.t.request(key, req.GetNode(), req.GetTypeUrl(), req.GetResponseNonce(), "", msg); err != nil {
			return err
		}
		if req.GetNode() != nil {
			req.Node = node.keep(req.Node)
		} else {
			req.Node = node.get()
		}
		t := req.GetTypeUrl()
		if t == "" {
			return status.Errorf(codes.InvalidArgument, "type URL is required for ADS")
		}
		w := l.watches[t]
		if w == nil {
			w = &typeWatch{sub: subscription{legacy: true, wildcard: len(req.GetResourceNamesSubscribe()) == 0, returned: req.GetInitialResourceVersions()}}
		} else {
			w.cancel()
		}
		w.sub.updateDelta(req.GetResourceNamesSubscribe(), req.GetResourceNamesUnsubscribe(), s.sets)
		return l.watch(t, w, func(deliver func(cachev3.DeltaResponse)) (func(), error) {
			return s.cache.CreateDeltaWatch(req, w.sub, deliver)
		})
	})
}

// streamNode is the node a stream's kept requests carry: the first one
// the stream sent. Envoy repeats its node in every request by default
// (set_node_on_first_message_only is off), with its build, locality,
// metadata and a list of every extension it was built with, and each
// type's watch keeps its last request; sharing the first node keeps one
// copy per stream instead of one per type. The tracker has admitted each
// request's own node before it is replaced (the stream's id and group
// cannot change), and what the watches read of a node is its id and
// group.
type streamNode struct{ n *corev3.Node }

// keep returns the stream's node, n if it is the first.
func (s *streamNode) keep(n *corev3.Node) *corev3.Node {
	if s.n == nil {
		s.n = n
	}
	return s.n
}

// get returns the stream's node, an empty one before the first.
func (s *streamNode) get() *corev3.Node {
	if s.n == nil {
		return &corev3.Node{}
	}
	return s.n
}

// subscription is one type's subscription on one stream
// (cachev3.Subscription), with go-control-plane's semantics
// (stream/v3.Subscription), over maps that are never modified once
// set: names is interned, returned is a response's map (shared with the
// other streams that got the same answer) or a copy made to change it.
type subscription struct {
	wildcard bool
	// legacy: the stream has named no resource of the type yet, so an
	// empty request is a wildcard one.
	legacy   bool
	names    *nameSet // explicitly subscribed; nil for none
	returned map[string]string
}

func (s subscription) ReturnedResources() map[string]string { return s.returned }
func (s subscription) IsWildcard() bool                     { return s.wildcard }
func (s subscription) SubscribedResources() map[string]struct{} {
	if s.names == nil {
		return nil
	}
	return s.names.set
}

// setSotw is stream/v3.Subscription.SetResourceSubscription: the names
// of a SotW request are the whole subscription.
func (s *subscription) setSotw(names []string, sets *nameSets) {
	if s.legacy {
		if len(names) == 0 {
			return
		}
		s.legacy = false
	}
	ns := sets.get(names)
	if !ns.wildcard {
		// A resource no longer subscribed is forgotten, so that it is sent
		// again when it is subscribed again.
		s.returned = withoutUnsubscribed(s.returned, ns.set)
	}
	s.wildcard = ns.wildcard
	s.names = ns
}

// withoutUnsubscribed is returned without the names not in set: returned
// itself when it has none, else a copy.
func withoutUnsubscribed(returned map[string]string, set map[string]struct{}) map[string]string {
	var out map[string]string
	for n := range returned {
		if _, ok := set[n]; ok {
			continue
		}
		if out == nil {
			out = maps.Clone(returned)
		}
		delete(out, n)
	}
	if out == nil {
		return returned
	}
	return out
}

// updateDelta is stream/v3.Subscription.UpdateResourceSubscriptions: a
// delta request adds and removes names.
func (s *subscription) updateDelta(subscribe, unsubscribe []string, sets *nameSets) {
	if s.legacy {
		if len(subscribe) == 0 {
			return
		}
		s.legacy = false
	}
	cur := s.SubscribedResources()
	if len(cur) == 0 && len(unsubscribe) == 0 && !slices.Contains(subscribe, wildcardName) {
		// The first names (every node of a group sends the same list):
		// the list is the interned set's key as it came, so a set that
		// exists costs no copy.
		if len(subscribe) > 0 {
			s.names = sets.get(subscribe)
		}
		return
	}
	var next map[string]struct{} // a copy of cur, once changed
	edit := func() {
		if next == nil {
			next = make(map[string]struct{}, len(cur)+len(subscribe))
			for n := range cur {
				next[n] = struct{}{}
			}
		}
	}
	has := func(n string) bool {
		if next != nil {
			_, ok := next[n]
			return ok
		}
		_, ok := cur[n]
		return ok
	}
	for _, n := range subscribe {
		if n == wildcardName {
			s.wildcard = true
			continue
		}
		if !has(n) {
			edit()
			next[n] = struct{}{}
		}
	}
	copied := false
	setReturned := func(n string, v string, del bool) {
		if del {
			if _, ok := s.returned[n]; !ok {
				return
			}
		}
		if !copied {
			s.returned = maps.Clone(s.returned)
			if s.returned == nil {
				s.returned = map[string]string{}
			}
			copied = true
		}
		if del {
			delete(s.returned, n)
		} else {
			s.returned[n] = v
		}
	}
	for _, n := range unsubscribe {
		if n == wildcardName {
			s.wildcard = false
			continue
		}
		if has(n) && s.wildcard {
			// Unsubscribed by name from a wildcard stream: the protocol
			// wants the resource sent again, or its removal.
			setReturned(n, "", false)
		} else {
			setReturned(n, "", true)
		}
		if has(n) {
			edit()
			delete(next, n)
		}
	}
	if next != nil {
		names := slices.Sorted(maps.Keys(next))
		s.names = sets.get(names)
	}
}

// wildcardName is the explicit wildcard subscription.
const wildcardName = "*"

// nameSet is an interned list of subscribed names.
type nameSet struct {
	names    []string            // as asked (SotW) or sorted (delta)
	set      map[string]struct{} // names but the wildcard
	wildcard bool                // names include "*"
}

// nameSets interns name lists: a list asked for again (by any stream)
// is the same nameSet while some stream holds it; one no stream holds
// any more is collected.
type nameSets struct {
	seed maphash.Seed
	idx  *weakIndex[nameSet]
}

func newNameSets() *nameSets {
	return &nameSets{seed: maphash.MakeSeed(), idx: newWeakIndex[nameSet]()}
}

func (t *nameSets) hash(names []string) uint64 {
	var h maphash.Hash
	h.SetSeed(t.seed)
	for _, n := range names {
		h.WriteString(n)
		h.WriteByte(0)
	}
	return h.Sum64()
}

// lookupEncoded is the interned set of the n names that names yields
// (their hash is h; each string is valid only during its yield), if
// there is one, else nil.
func (t *nameSets) lookupEncoded(h uint64, n int, names iter.Seq[string]) *nameSet {
	t.idx.mu.Lock()
	defer t.idx.mu.Unlock()
	for _, r := range t.idx.m[h] {
		if r.n != n {
			continue
		}
		ns := r.p.Value()
		if ns == nil {
			continue
		}
		i, same := 0, true
		for v := range names {
			if ns.names[i] != v {
				same = false
				break
			}
			i++
		}
		if same {
			return ns
		}
	}
	return nil
}

// get is the interned set of names.
func (t *nameSets) get(names []string) *nameSet {
	h := t.hash(names)
	t.idx.mu.Lock()
	defer t.idx.mu.Unlock()
	for _, r := range t.idx.m[h] {
		if ns := r.p.Value(); ns != nil && r.n == len(names) && slices.Equal(ns.names, names) {
			return ns
		}
	}
	ns := &nameSet{names: slices.Clone(names), set: make(map[string]struct{}, len(names))}
	for _, n := range ns.names {
		if n == wildcardName {
			ns.wildcard = true
		} else {
			ns.set[n] = struct{}{}
		}
	}
	t.idx.add(h, len(names), ns)
	return ns
}

// size is the number of interned sets (tests).
func (t *nameSets) size() int { return t.idx.size() }
