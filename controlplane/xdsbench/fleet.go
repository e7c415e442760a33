package main

import (
	"context"
	"fmt"
	"slices"
	"sort"
	"sync"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/types/known/anypb"

	"github.com/gatehouse-edge/gatehouse/controlplane/internal/benchspec"
)

// Type URLs a simulated Envoy subscribes to, in Envoy's order.
const (
	cdsType  = "type.googleapis.com/envoy.config.cluster.v3.Cluster"
	edsType  = "type.googleapis.com/envoy.config.endpoint.v3.ClusterLoadAssignment"
	ldsType  = "type.googleapis.com/envoy.config.listener.v3.Listener"
	srdsType = "type.googleapis.com/envoy.config.route.v3.ScopedRouteConfiguration"
	rdsType  = "type.googleapis.com/envoy.config.route.v3.RouteConfiguration"
)

var allTypes = []string{cdsType, edsType, ldsType, srdsType, rdsType}

// envoyWindow is Envoy's default HTTP/2 initial stream and connection
// window (initial_stream_window_size, initial_connection_window_size).
const envoyWindow = 256 << 20

// node is one simulated Envoy: one ADS stream, CDS and LDS wildcard, EDS
// for its EDS clusters, and routes as its listeners say: RDS for the
// route table a connection manager names, or, for scoped routes, SRDS
// (wildcard, as Envoy subscribes to scopes) and RDS for the route tables
// the scopes name. It ACKs every response at once and records when each
// version was ACKed.
type node struct {
	id, group string
	delta     bool
	// eds are the EDS clusters the node asks endpoints for; known from the
	// generated specs, so the simulated node need not decode its clusters
	// (a real Envoy does; here that would load the machine the control
	// plane is measured on).
	eds []string

	mu    sync.Mutex
	acked map[string]string // type → version
	at    map[string]time.Time
	err   error

	// Owned by the stream's goroutine.
	subscribed map[string]bool     // types asked for
	listeners  map[string]lisRoute // listener name → what its connection manager routes with
	scopes     map[string]string   // scope name → route table
	rds        []string            // route tables subscribed to, sorted
}

// lisRoute is how a listener's connection managers route: the route
// tables they name over RDS, and whether any uses scoped routes (SRDS).
type lisRoute struct {
	tables []string
	scoped bool
}

func newNode(id, group string, eds []string) *node {
	return &node{id: id, group: group, eds: eds, acked: map[string]string{}, at: map[string]time.Time{},
		subscribed: map[string]bool{}, listeners: map[string]lisRoute{}, scopes: map[string]string{}}
}

// converged reports whether the node has ACKed, for every type it
// subscribes to, the version its group is served (want: type URL →
// version, from the control plane's /debug/nodes), and when it ACKed the
// last of them. Each type has its own version and a type a change left
// unchanged is not sent again, so its old ACK (and time) stands: the time
// is that of the types the change touched.
func (n *node) converged(want map[string]string) (bool, time.Time) {
	n.mu.Lock()
	defer n.mu.Unlock()
	var last time.Time
	for _, t := range allTypes {
		w, ok := want[t]
		if !ok || (!n.subscribed[t] && t != ldsType) {
			continue
		}
		if n.acked[t] != w {
			return false, time.Time{}
		}
		if n.at[t].After(last) {
			last = n.at[t]
		}
	}
	return true, last
}

// subscribe marks type t as asked for.
func (n *node) subscribe(t string) {
	n.mu.Lock()
	n.subscribed[t] = true
	n.mu.Unlock()
}

// learn reads the listeners or scopes of a response (resources; removed
// names for delta; sotw: the response is the type's whole state) and
// reports whether the node now wants SRDS it has not asked for, and the
// route tables it wants when they differ from n.rds.
func (n *node) learn(t string, resources []*anypb.Any, removed []string, sotw bool) (wantSRDS bool, tables []string, changed bool, err error) {
	switch t {
	case ldsType:
		if sotw {
			clear(n.listeners)
		}
		for _, r := range resources {
			l := &listenerv3.Listener{}
			if err := r.UnmarshalTo(l); err != nil {
				return false, nil, false, fmt.Errorf("listener: %w", err)
			}
			lr, err := listenerRoutes(l)
			if err != nil {
				return false, nil, false, err
			}
			n.listeners[l.GetName()] = lr
		}
		for _, name := range removed {
			delete(n.listeners, name)
		}
	case srdsType:
		if sotw {
			clear(n.scopes)
		}
		for _, r := range resources {
			sc := &routev3.ScopedRouteConfiguration{}
			if err := r.UnmarshalTo(sc); err != nil {
				return false, nil, false, fmt.Errorf("scope: %w", err)
			}
			n.scopes[sc.GetName()] = sc.GetRouteConfigurationName()
		}
		for _, name := range removed {
			delete(n.scopes, name)
		}
	default:
		return false, nil, false, nil
	}
	set := map[string]bool{}
	scoped := false
	for _, lr := range n.listeners {
		for _, rt := range lr.tables {
			set[rt] = true
		}
		scoped = scoped || lr.scoped
	}
	if scoped {
		for _, rt := range n.scopes {
			set[rt] = true
		}
	}
	for rt := range set {
		tables = append(tables, rt)
	}
	sort.Strings(tables)
	n.mu.Lock()
	wantSRDS = scoped && !n.subscribed[srdsType]
	n.mu.Unlock()
	return wantSRDS, tables, !slices.Equal(tables, n.rds), nil
}

// listenerRoutes reads the HTTP connection managers of a listener.
func listenerRoutes(l *listenerv3.Listener) (lisRoute, error) {
	var lr lisRoute
	for _, fc := range l.GetFilterChains() {
		for _, f := range fc.GetFilters() {
			tc := f.GetTypedConfig()
			if tc == nil || !tc.MessageIs((*hcmv3.HttpConnectionManager)(nil)) {
				continue
			}
			hcm := &hcmv3.HttpConnectionManager{}
			if err := tc.UnmarshalTo(hcm); err != nil {
				return lr, fmt.Errorf("listener %s: connection manager: %w", l.GetName(), err)
			}
			if rds := hcm.GetRds(); rds != nil && !slices.Contains(lr.tables, rds.GetRouteConfigName()) {
				lr.tables = append(lr.tables, rds.GetRouteConfigName())
			}
			if hcm.GetScopedRoutes() != nil {
				lr.scoped = true
			}
		}
	}
	return lr, nil
}

// run keeps the stream until ctx ends.
func (n *node) run(ctx context.Context, conn *grpc.ClientConn) {
	if n.delta {
		n.runDelta(ctx, conn)
		return
	}
	st, err := discoveryv3.NewAggregatedDiscoveryServiceClient(conn).StreamAggregatedResources(ctx)
	if err != nil {
		n.fail(err)
		return
	}
	send := func(r *discoveryv3.DiscoveryRequest) bool {
		if err := st.Send(r); err != nil {
			n.fail(err)
			return false
		}
		return true
	}
	n.subscribe(cdsType)
	n.subscribe(ldsType)
	n.subscribe(edsType)
	if !send(&discoveryv3.DiscoveryRequest{Node: &corev3.Node{Id: n.id, Cluster: n.group, UserAgentName: "xdsbench"}, TypeUrl: cdsType}) ||
		!send(&discoveryv3.DiscoveryRequest{TypeUrl: ldsType}) ||
		!send(&discoveryv3.DiscoveryRequest{TypeUrl: edsType, ResourceNames: n.eds}) {
		return
	}
	var rdsVersion, rdsNonce string // of the last RDS response
	for {
		resp, err := st.Recv()
		if err != nil {
			if ctx.Err() == nil {
				n.fail(err)
			}
			return
		}
		t := resp.GetTypeUrl()
		ack := &discoveryv3.DiscoveryRequest{TypeUrl: t, VersionInfo: resp.GetVersionInfo(), ResponseNonce: resp.GetNonce()}
		switch t {
		case rdsType:
			ack.ResourceNames = n.rds
			rdsVersion, rdsNonce = resp.GetVersionInfo(), resp.GetNonce()
		case edsType:
			ack.ResourceNames = n.eds
		}
		wantSRDS, tables, changed, err := n.learn(t, resp.GetResources(), nil, true)
		if err != nil {
			n.fail(err)
			return
		}
		if !send(ack) {
			return
		}
		if wantSRDS {
			n.subscribe(srdsType)
			if !send(&discoveryv3.DiscoveryRequest{TypeUrl: srdsType}) {
				return
			}
		}
		if changed {
			// As Envoy: the new name set, with the version and nonce of the
			// last RDS response (none before the first).
			n.rds = tables
			n.subscribe(rdsType)
			if !send(&discoveryv3.DiscoveryRequest{TypeUrl: rdsType, ResourceNames: tables, VersionInfo: rdsVersion, ResponseNonce: rdsNonce}) {
				return
			}
		}
		n.mu.Lock()
		n.acked[t], n.at[t] = resp.GetVersionInfo(), time.Now()
		n.mu.Unlock()
	}
}

// runDelta is run over delta xDS (what Envoy does with DELTA_GRPC).
func (n *node) runDelta(ctx context.Context, conn *grpc.ClientConn) {
	st, err := discoveryv3.NewAggregatedDiscoveryServiceClient(conn).DeltaAggregatedResources(ctx)
	if err != nil {
		n.fail(err)
		return
	}
	send := func(r *discoveryv3.DeltaDiscoveryRequest) bool {
		if err := st.Send(r); err != nil {
			n.fail(err)
			return false
		}
		return true
	}
	n.subscribe(cdsType)
	n.subscribe(ldsType)
	n.subscribe(edsType)
	if !send(&discoveryv3.DeltaDiscoveryRequest{Node: &corev3.Node{Id: n.id, Cluster: n.group, UserAgentName: "xdsbench"}, TypeUrl: cdsType}) ||
		!send(&discoveryv3.DeltaDiscoveryRequest{TypeUrl: ldsType}) ||
		!send(&discoveryv3.DeltaDiscoveryRequest{TypeUrl: edsType, ResourceNamesSubscribe: n.eds}) {
		return
	}
	for {
		resp, err := st.Recv()
		if err != nil {
			if ctx.Err() == nil {
				n.fail(err)
			}
			return
		}
		t := resp.GetTypeUrl()
		var res []*anypb.Any
		for _, r := range resp.GetResources() {
			res = append(res, r.GetResource())
		}
		wantSRDS, tables, changed, err := n.learn(t, res, resp.GetRemovedResources(), false)
		if err != nil {
			n.fail(err)
			return
		}
		if !send(&discoveryv3.DeltaDiscoveryRequest{TypeUrl: t, ResponseNonce: resp.GetNonce()}) {
			return
		}
		if wantSRDS {
			n.subscribe(srdsType)
			if !send(&discoveryv3.DeltaDiscoveryRequest{TypeUrl: srdsType}) {
				return
			}
		}
		if changed {
			var sub, unsub []string
			for _, rt := range tables {
				if !slices.Contains(n.rds, rt) {
					sub = append(sub, rt)
				}
			}
			for _, rt := range n.rds {
				if !slices.Contains(tables, rt) {
					unsub = append(unsub, rt)
				}
			}
			n.rds = tables
			n.subscribe(rdsType)
			if !send(&discoveryv3.DeltaDiscoveryRequest{TypeUrl: rdsType, ResourceNamesSubscribe: sub, ResourceNamesUnsubscribe: unsub}) {
				return
			}
		}
		n.mu.Lock()
		n.acked[t], n.at[t] = resp.GetSystemVersionInfo(), time.Now()
		n.mu.Unlock()
	}
}

func (n *node) fail(err error) {
	n.mu.Lock()
	if n.err == nil {
		n.err = err
	}
	n.mu.Unlock()
}

// fleet is the simulated nodes and their connections.
type fleet struct {
	nodes []*node
	conns []*grpc.ClientConn
	wg    sync.WaitGroup
	bytes *typeBytes // response bytes received, per type

	// How grow opens nodes: the control plane's address, the node
	// groups, streams per connection, the protocol, the credentials by
	// group (nil: plaintext), and each group's endpoint names.
	addr    string
	groups  int
	perConn int
	delta   bool
	creds   map[string]credentials.TransportCredentials
	eds     [][]string
}

// startFleet opens nodes streams spread over connections of perConn
// streams each, node i in group i%groups.
//
// With creds set (node group → mutual-TLS credentials), each connection
// dials with its first node's group's credentials; perConn must then be 1
// (a client certificate names one group).
func startFleet(ctx context.Context, addr string, specs, nodes, groups, perConn int, delta bool, creds map[string]credentials.TransportCredentials) (*fleet, error) {
	f, err := newFleet(addr, specs, groups, perConn, delta, creds)
	if err != nil {
		return nil, err
	}
	if err := f.grow(ctx, nodes); err != nil {
		f.close()
		return nil, err
	}
	return f, nil
}

// newFleet is a fleet of no nodes yet, which grow opens.
func newFleet(addr string, specs, groups, perConn int, delta bool, creds map[string]credentials.TransportCredentials) (*fleet, error) {
	if creds != nil && perConn != 1 {
		return nil, fmt.Errorf("mutual TLS needs one node per connection (a client certificate names one node group), not %d", perConn)
	}
	f := &fleet{bytes: newTypeBytes(), addr: addr, groups: groups, perConn: perConn, delta: delta, creds: creds}
	f.eds = make([][]string, groups)
	for i := 0; i < specs; i++ {
		for g := range f.eds {
			if i%benchspec.GlobalEvery == 0 || i%groups == g {
				f.eds[g] = append(f.eds[g], benchspec.Name(i)+"/api")
			}
		}
	}
	return f, nil
}

// grow opens nodes up to node nodes-1, numbered on from those the fleet
// has: node i is in group i%groups and shares a connection with the
// nodes of its perConn block (grow to a multiple of perConn between
// calls, or the last connection of a call is not filled).
func (f *fleet) grow(ctx context.Context, nodes int) error {
	var conn *grpc.ClientConn
	for i := len(f.nodes); i < nodes; i++ {
		group := benchspec.Group(i, f.groups)
		if i%f.perConn == 0 || conn == nil {
			tc := insecure.NewCredentials()
			if f.creds != nil {
				if tc = f.creds[group]; tc == nil {
					return fmt.Errorf("no client certificate for node group %s", group)
				}
			}
			// Flow-control windows as Envoy's HTTP/2 defaults (256 MiB per
			// stream and per connection), so the control plane is not
			// held back by window updates a real Envoy would not need.
			c, err := grpc.NewClient(f.addr, grpc.WithTransportCredentials(tc),
				grpc.WithInitialWindowSize(envoyWindow), grpc.WithInitialConnWindowSize(envoyWindow),
				grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(64<<20), grpc.ForceCodecV2(newHeaderCodec(f.bytes))))
			if err != nil {
				return err
			}
			conn = c
			f.conns = append(f.conns, c)
		}
		n := newNode(fmt.Sprintf("node-%05d", i), group, f.eds[i%f.groups])
		n.delta = f.delta
		f.nodes = append(f.nodes, n)
		f.wg.Add(1)
		go func(c *grpc.ClientConn) { defer f.wg.Done(); n.run(ctx, c) }(conn)
	}
	return nil
}

// nodeGroups is the set of groups the fleet's nodes are in.
func (f *fleet) nodeGroups() map[string]bool {
	groups := map[string]bool{}
	for _, n := range f.nodes {
		groups[n.group] = true
	}
	return groups
}

func (f *fleet) close() {
	for _, c := range f.conns {
		c.Close()
	}
	f.wg.Wait()
}

// waitConverged waits until every node has ACKed what its group is served
// (want: node group → type URL → version) and returns each node's
// convergence time.
func (f *fleet) waitConverged(ctx context.Context, want map[string]map[string]string, timeout time.Duration) ([]time.Time, error) {
	deadline := time.Now().Add(timeout)
	out := make([]time.Time, len(f.nodes))
	done := make([]bool, len(f.nodes))
	left := len(f.nodes)
	for left > 0 {
		for i, n := range f.nodes {
			if done[i] {
				continue
			}
			n.mu.Lock()
			err := n.err
			n.mu.Unlock()
			if err != nil {
				return nil, fmt.Errorf("node %s: %w", n.id, err)
			}
			if ok, at := n.converged(want[n.group]); ok {
				out[i], done[i] = at, true
				left--
			}
		}
		if left == 0 {
			break
		}
		if time.Now().After(deadline) {
			return nil, fmt.Errorf("%d of %d nodes did not converge within %s", left, len(f.nodes), timeout)
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(5 * time.Millisecond):
		}
	}
	return out, nil
}
