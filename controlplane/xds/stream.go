package xds

import (
	"context"
	"hash/maphash"
	"maps"
	"runtime"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"weak"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	cachev3 "github.com/envoyproxy/go-control-plane/pkg/cache/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// adsServer is the ADS service, SotW and delta: a stream loop of its own
// in place of go-control-plane's server, with the same protocol
// behaviour (go-control-plane v0.14 without ordered ADS: a SotW request
// whose nonce is not the last one sent for its type is ignored; delta
// sends what is queued before it reads the next request; legacy wildcard
// on), so that what every stream keeps is small and shared:
//
//   - a subscription's name set is interned (nameSets): every node of a
//     group asks for the same hundreds of endpoint names, and holds one
//     map of them, not one each;
//   - a subscription's returned resources are the response's own map,
//     which watchCache shares between the streams that get the same
//     answer; a subscription change that drops names builds a new map
//     instead of modifying it (go-control-plane modifies it, so it cannot
//     be shared);
//   - responses wait in a queue read by the stream's goroutine, not in
//     channels per watch.
//
// Per stream there are two goroutines: gRPC's handler, which sends, and
// one reading requests (as go-control-plane's).
type adsServer struct {
	ctx   context.Context
	cache *nackCache
	t     *tracker
	sets  *nameSets
	ids   atomic.Int64
}

func newADSServer(ctx context.Context, c *nackCache, t *tracker) *adsServer {
	return &adsServer{ctx: ctx, cache: c, t: t, sets: newNameSets()}
}

// outbox is a stream's queue of answers, filled by the cache (which never
// waits for it) and emptied by the stream's goroutine.
type outbox[R any] struct {
	mu      sync.Mutex
	pending []queued[R]
	ready   chan struct{} // has a value when pending may be non-empty
}

type queued[R any] struct {
	typeURL string
	gen     int64 // the watch it answers
	resp    R
}

func newOutbox[R any]() *outbox[R] { return &outbox[R]{ready: make(chan struct{}, 1)} }

// deliver returns the function a watch of generation gen answers with.
func (o *outbox[R]) deliver(typeURL string, gen int64) func(R) {
	return func(r R) {
		o.mu.Lock()
		o.pending = append(o.pending, queued[R]{typeURL, gen, r})
		o.mu.Unlock()
		select {
		case o.ready <- struct{}{}:
		default:
		}
	}
}

// take removes and returns every queued answer.
func (o *outbox[R]) take() []queued[R] {
	o.mu.Lock()
	defer o.mu.Unlock()
	p := o.pending
	o.pending = nil
	return p
}

// typeWatch is a stream's state for one type.
type typeWatch struct {
	gen    int64 // of the live watch; answers of older ones are dropped
	cancel func()
	sub    subscription
	nonce  string // of the last response sent
}

// recvLoop reads requests into a channel until the stream ends.
func recvLoop[Req any](ctx, srvCtx context.Context, recv func() (*Req, error)) <-chan *Req {
	ch := make(chan *Req)
	go func() {
		defer close(ch)
		for {
			req, err := recv()
			if err != nil {
				return
			}
			select {
			case ch <- req:
			case <-ctx.Done():
				return
			case <-srvCtx.Done():
				return
			}
		}
	}()
	return ch
}

// StreamAggregatedResources serves a SotW ADS stream.
func (s *adsServer) StreamAggregatedResources(st grpc.BidiStreamingServer[discoveryv3.DiscoveryRequest, discoveryv3.DiscoveryResponse]) error {
	id := s.ids.Add(1)
	key := streamKey{false, id}
	s.t.open(st.Context(), id, false)
	out := newOutbox[cachev3.Response]()
	watches := map[string]*typeWatch{}
	node := &corev3.Node{}
	var nonce, gen int64
	defer func() {
		for _, w := range watches {
			w.cancel()
		}
		s.t.close(key)
	}()
	send := func(q queued[cachev3.Response]) error {
		w := watches[q.typeURL]
		if w == nil || w.gen != q.gen {
			return nil // the answer of a watch a later request replaced
		}
		resp, err := q.resp.GetDiscoveryResponse()
		if err != nil {
			return err
		}
		nonce++
		resp.Nonce = strconv.FormatInt(nonce, 10)
		w.sub.returned = q.resp.GetReturnedResources()
		w.nonce = resp.Nonce
		s.t.response(key, resp.GetTypeUrl(), resp.GetNonce(), resp.GetVersionInfo())
		return st.Send(resp)
	}
	reqs := recvLoop(st.Context(), s.ctx, st.Recv)
	for {
		select {
		case <-s.ctx.Done():
			return nil
		case <-out.ready:
			for _, q := range out.take() {
				if err := send(q); err != nil {
					return err
				}
			}
		case req, ok := <-reqs:
			if !ok {
				return nil
			}
			if req.GetNode() != nil {
				node = req.GetNode()
			} else {
				req.Node = node
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
			w := watches[t]
			if w != nil {
				if w.nonce != "" && req.GetResponseNonce() != w.nonce {
					continue // stale: the node has not seen the last response yet
				}
				w.cancel()
			} else {
				w = &typeWatch{sub: subscription{legacy: true, wildcard: len(req.GetResourceNames()) == 0}}
				watches[t] = w
			}
			w.sub.setSotw(req.GetResourceNames(), s.sets)
			if w.sub.names != nil {
				req.ResourceNames = w.sub.names.names // the stream keeps the shared copy
			}
			gen++
			w.gen = gen
			cancel, err := s.cache.CreateWatch(req, w.sub, out.deliver(t, gen))
			if err != nil {
				w.cancel = func() {}
				return err
			}
			w.cancel = cancel
		}
	}
}

// DeltaAggregatedResources serves a delta ADS stream.
func (s *adsServer) DeltaAggregatedResources(st grpc.BidiStreamingServer[discoveryv3.DeltaDiscoveryRequest, discoveryv3.DeltaDiscoveryResponse]) error {
	id := s.ids.Add(1)
	key := streamKey{true, id}
	s.t.open(st.Context(), id, true)
	out := newOutbox[cachev3.DeltaResponse]()
	watches := map[string]*typeWatch{}
	node := &corev3.Node{}
	var nonce, gen int64
	defer func() {
		for _, w := range watches {
			w.cancel()
		}
		s.t.close(key)
	}()
	sendAll := func() error {
		for _, q := range out.take() {
			w := watches[q.typeURL]
			if w == nil || w.gen != q.gen {
				continue
			}
			resp, err := q.resp.GetDeltaDiscoveryResponse()
			if err != nil {
				return err
			}
			nonce++
			resp.Nonce = strconv.FormatInt(nonce, 10)
			s.t.response(key, resp.GetTypeUrl(), resp.GetNonce(), resp.GetSystemVersionInfo())
			if err := st.Send(resp); err != nil {
				return err
			}
			w.nonce = resp.Nonce
			w.sub.returned = q.resp.GetNextVersionMap()
		}
		return nil
	}
	reqs := recvLoop(st.Context(), s.ctx, st.Recv)
	for {
		select {
		case <-s.ctx.Done():
			return nil
		case <-out.ready:
			if err := sendAll(); err != nil {
				return err
			}
		case req, ok := <-reqs:
			if !ok {
				return nil
			}
			// What was answered before this request goes out first.
			if err := sendAll(); err != nil {
				return err
			}
			var msg *string
			if req.GetErrorDetail() != nil {
				m := req.GetErrorDetail().GetMessage()
				msg = &m
			}
			if err := s.t.request(key, req.GetNode(), req.GetTypeUrl(), req.GetResponseNonce(), "", msg); err != nil {
				return err
			}
			if req.GetNode() != nil {
				node = req.GetNode()
			} else {
				req.Node = node
			}
			t := req.GetTypeUrl()
			if t == "" {
				return status.Errorf(codes.InvalidArgument, "type URL is required for ADS")
			}
			w := watches[t]
			if w == nil {
				w = &typeWatch{sub: subscription{legacy: true, wildcard: len(req.GetResourceNamesSubscribe()) == 0, returned: req.GetInitialResourceVersions()}}
				watches[t] = w
			} else {
				w.cancel()
			}
			w.sub.updateDelta(req.GetResourceNamesSubscribe(), req.GetResourceNamesUnsubscribe(), s.sets)
			gen++
			w.gen = gen
			cancel, err := s.cache.CreateDeltaWatch(req, w.sub, out.deliver(t, gen))
			if err != nil {
				w.cancel = func() {}
				return err
			}
			w.cancel = cancel
		}
	}
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
	mu   sync.Mutex
	m    map[uint64][]weak.Pointer[nameSet]
}

func newNameSets() *nameSets {
	return &nameSets{seed: maphash.MakeSeed(), m: map[uint64][]weak.Pointer[nameSet]{}}
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

// get is the interned set of names.
func (t *nameSets) get(names []string) *nameSet {
	h := t.hash(names)
	t.mu.Lock()
	defer t.mu.Unlock()
	for _, p := range t.m[h] {
		if ns := p.Value(); ns != nil && slices.Equal(ns.names, names) {
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
	t.m[h] = append(t.m[h], weak.Make(ns))
	runtime.AddCleanup(ns, t.forget, h)
	return ns
}

// forget drops the collected sets of hash h.
func (t *nameSets) forget(h uint64) {
	t.mu.Lock()
	defer t.mu.Unlock()
	live := slices.DeleteFunc(t.m[h], func(p weak.Pointer[nameSet]) bool { return p.Value() == nil })
	if len(live) == 0 {
		delete(t.m, h)
	} else {
		t.m[h] = live
	}
}

// size is the number of interned sets (tests).
func (t *nameSets) size() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	n := 0
	for _, l := range t.m {
		n += len(l)
	}
	return n
}
