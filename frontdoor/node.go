package frontdoor

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"sync"
	"time"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	statuspb "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
)

// Node is an ADS client that behaves like Envoy's xDS client: one stream,
// CDS and LDS wildcard, then EDS for the EDS clusters and RDS for the
// route tables the listeners name (scoped routes: SRDS wildcard, then RDS
// for the route tables the scopes name); every response is decoded and ACKed
// (or NACKed with the decode error). A broken stream is reopened with the
// versions the node holds, as Envoy does.
type Node struct {
	id, group string

	mu       sync.Mutex
	clusters map[string]*clusterv3.Cluster
	cla      map[string]*endpointv3.ClusterLoadAssignment
	lis      map[string]*listenerv3.Listener
	routes   map[string]*routev3.RouteConfiguration
	scopes   map[string]*routev3.ScopedRouteConfiguration
	lisRDS   []string          // route tables the listeners name
	scopeRDS []string          // route tables the scopes name
	versions map[string]string // type URL → last ACKed version
	subs     map[string][]string
	nonces   map[string]string
	changed  chan struct{}

	conn *grpc.ClientConn
}

// NodeConfig is a consistent copy of what a node holds.
type NodeConfig struct {
	Clusters  map[string]*clusterv3.Cluster
	CLA       map[string]*endpointv3.ClusterLoadAssignment // by cluster name
	Listeners map[string]*listenerv3.Listener
	Routes    map[string]*routev3.RouteConfiguration
	Scopes    map[string]*routev3.ScopedRouteConfiguration // by scope name (SRDS)
	Versions  map[string]string                            // type URL → last ACKed version
}

// StartNode dials the xDS server at xdsAddr and runs the node's ADS
// stream until ctx ends or Close. dial carries the transport credentials
// (grpc.WithTransportCredentials) and any other dial options.
func StartNode(ctx context.Context, xdsAddr, id, group string, dial ...grpc.DialOption) (*Node, error) {
	if len(dial) == 0 {
		return nil, errors.New("frontdoor: node: no dial options (pass the transport credentials)")
	}
	conn, err := grpc.NewClient(xdsAddr, dial...)
	if err != nil {
		return nil, fmt.Errorf("frontdoor: node %s: dialing xDS %s: %w", id, xdsAddr, err)
	}
	n := &Node{
		id: id, group: group,
		clusters: map[string]*clusterv3.Cluster{}, cla: map[string]*endpointv3.ClusterLoadAssignment{},
		lis: map[string]*listenerv3.Listener{}, routes: map[string]*routev3.RouteConfiguration{}, scopes: map[string]*routev3.ScopedRouteConfiguration{},
		versions: map[string]string{}, subs: map[string][]string{}, nonces: map[string]string{},
		changed: make(chan struct{}, 1),
		conn:    conn,
	}
	go n.run(ctx)
	return n, nil
}

// ID is the node's id; Group its node.cluster.
func (n *Node) ID() string    { return n.id }
func (n *Node) Group() string { return n.group }

// Close ends the stream and the connection.
func (n *Node) Close() error { return n.conn.Close() }

func (n *Node) run(ctx context.Context) {
	backoff := 50 * time.Millisecond
	for ctx.Err() == nil {
		start := time.Now()
		err := n.stream(ctx)
		if ctx.Err() != nil || status.Code(err) == codes.Canceled {
			return
		}
		if time.Since(start) > 5*time.Second {
			backoff = 50 * time.Millisecond
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(backoff):
		}
		if backoff < 2*time.Second {
			backoff *= 2
		}
	}
}

// stream runs one ADS stream until it breaks.
func (n *Node) stream(ctx context.Context) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stream, err := discoveryv3.NewAggregatedDiscoveryServiceClient(n.conn).StreamAggregatedResources(ctx)
	if err != nil {
		return err
	}
	node := &corev3.Node{Id: n.id, Cluster: n.group, UserAgentName: "envoy", UserAgentVersionType: &corev3.Node_UserAgentVersion{UserAgentVersion: "gatehouse-frontdoor"}}
	n.mu.Lock()
	n.nonces = map[string]string{} // nonces belong to a stream
	n.mu.Unlock()
	var sendMu sync.Mutex
	send := func(typeURL string, errDetail error) error {
		n.mu.Lock()
		req := &discoveryv3.DiscoveryRequest{
			Node: node, TypeUrl: typeURL, ResourceNames: n.subs[typeURL],
			VersionInfo: n.versions[typeURL], ResponseNonce: n.nonces[typeURL],
		}
		n.mu.Unlock()
		if errDetail != nil {
			req.ErrorDetail = &statuspb.Status{Code: 3, Message: errDetail.Error()}
		}
		sendMu.Lock()
		defer sendMu.Unlock()
		return stream.Send(req)
	}
	initial := []string{resource.ClusterType, resource.ListenerType}
	n.mu.Lock()
	for _, typ := range []string{resource.EndpointType, resource.ScopedRouteType, resource.RouteType} {
		if _, wildcard := n.subs[typ]; len(n.subs[typ]) > 0 || (typ == resource.ScopedRouteType && wildcard) {
			initial = append(initial, typ)
		}
	}
	n.mu.Unlock()
	for _, typ := range initial {
		if err := send(typ, nil); err != nil {
			return err
		}
	}
	for {
		resp, err := stream.Recv()
		if err != nil {
			return err
		}
		subscribe, err := n.apply(resp)
		n.mu.Lock()
		if err == nil {
			n.versions[resp.GetTypeUrl()] = resp.GetVersionInfo()
		}
		n.nonces[resp.GetTypeUrl()] = resp.GetNonce()
		n.mu.Unlock()
		if err := send(resp.GetTypeUrl(), err); err != nil {
			return err
		}
		for _, typ := range sortedKeys(subscribe) {
			names := subscribe[typ]
			n.mu.Lock()
			// SRDS is a wildcard type: its first request has no names.
			_, had := n.subs[typ]
			same := fmt.Sprint(n.subs[typ]) == fmt.Sprint(names) && (had || typ != resource.ScopedRouteType)
			n.subs[typ] = names
			n.mu.Unlock()
			if !same {
				if err := send(typ, nil); err != nil {
					return err
				}
			}
		}
		select {
		case n.changed <- struct{}{}:
		default:
		}
	}
}

// apply stores a response's resources and says which further names to
// subscribe to (EDS for EDS clusters, RDS for the listeners' route tables).
// A response that does not decode changes nothing.
func (n *Node) apply(resp *discoveryv3.DiscoveryResponse) (map[string][]string, error) {
	sub := map[string][]string{}
	switch resp.GetTypeUrl() {
	case resource.ClusterType:
		next := map[string]*clusterv3.Cluster{}
		var eds []string
		for _, a := range resp.GetResources() {
			c := &clusterv3.Cluster{}
			if err := a.UnmarshalTo(c); err != nil {
				return nil, err
			}
			next[c.GetName()] = c
			if c.GetType() == clusterv3.Cluster_EDS {
				eds = append(eds, c.GetName())
			}
		}
		n.mu.Lock()
		n.clusters = next
		n.mu.Unlock()
		sub[resource.EndpointType] = sortStrings(eds)
	case resource.EndpointType:
		next := map[string]*endpointv3.ClusterLoadAssignment{}
		for _, a := range resp.GetResources() {
			c := &endpointv3.ClusterLoadAssignment{}
			if err := a.UnmarshalTo(c); err != nil {
				return nil, err
			}
			next[c.GetClusterName()] = c
		}
		n.mu.Lock()
		for k, v := range next {
			n.cla[k] = v
		}
		n.mu.Unlock()
	case resource.ListenerType:
		next := map[string]*listenerv3.Listener{}
		var rds []string
		for _, a := range resp.GetResources() {
			l := &listenerv3.Listener{}
			if err := a.UnmarshalTo(l); err != nil {
				return nil, err
			}
			next[l.GetName()] = l
			h, err := HCMOf(l)
			if err != nil {
				return nil, err
			}
			if h.GetScopedRoutes() != nil {
				if h.GetScopedRoutes().GetScopedRds() == nil {
					return nil, fmt.Errorf("listener %s: scoped routes without SRDS are not supported", l.GetName())
				}
				sub[resource.ScopedRouteType] = []string{} // wildcard
				continue
			}
			rds = append(rds, h.GetRds().GetRouteConfigName())
		}
		n.mu.Lock()
		n.lis = next
		n.lisRDS = rds
		sub[resource.RouteType] = n.routeNames()
		n.mu.Unlock()
	case resource.ScopedRouteType:
		next := map[string]*routev3.ScopedRouteConfiguration{}
		var rds []string
		for _, a := range resp.GetResources() {
			sc := &routev3.ScopedRouteConfiguration{}
			if err := a.UnmarshalTo(sc); err != nil {
				return nil, err
			}
			next[sc.GetName()] = sc
			rds = append(rds, sc.GetRouteConfigurationName())
		}
		n.mu.Lock()
		n.scopes = next
		n.scopeRDS = rds
		sub[resource.RouteType] = n.routeNames()
		n.mu.Unlock()
	case resource.RouteType:
		next := map[string]*routev3.RouteConfiguration{}
		for _, a := range resp.GetResources() {
			r := &routev3.RouteConfiguration{}
			if err := a.UnmarshalTo(r); err != nil {
				return nil, err
			}
			next[r.GetName()] = r
		}
		n.mu.Lock()
		for k, v := range next {
			n.routes[k] = v
		}
		n.mu.Unlock()
	default:
		return nil, fmt.Errorf("unexpected type %s", resp.GetTypeUrl())
	}
	return sub, nil
}

// Config is a consistent copy of what the node holds now.
func (n *Node) Config() NodeConfig {
	n.mu.Lock()
	defer n.mu.Unlock()
	c := NodeConfig{Clusters: map[string]*clusterv3.Cluster{}, CLA: map[string]*endpointv3.ClusterLoadAssignment{},
		Listeners: map[string]*listenerv3.Listener{}, Routes: map[string]*routev3.RouteConfiguration{},
		Scopes: map[string]*routev3.ScopedRouteConfiguration{}, Versions: map[string]string{}}
	for k, v := range n.clusters {
		c.Clusters[k] = proto.Clone(v).(*clusterv3.Cluster)
	}
	for k, v := range n.cla {
		c.CLA[k] = proto.Clone(v).(*endpointv3.ClusterLoadAssignment)
	}
	for k, v := range n.lis {
		c.Listeners[k] = proto.Clone(v).(*listenerv3.Listener)
	}
	for k, v := range n.routes {
		c.Routes[k] = proto.Clone(v).(*routev3.RouteConfiguration)
	}
	for k, v := range n.scopes {
		c.Scopes[k] = proto.Clone(v).(*routev3.ScopedRouteConfiguration)
	}
	for k, v := range n.versions {
		c.Versions[k] = v
	}
	return c
}

// WaitFor polls the node's config until ok holds, ctx ends or within
// passes; it returns the last config seen and whether ok held.
func (n *Node) WaitFor(ctx context.Context, within time.Duration, ok func(NodeConfig) bool) (NodeConfig, bool) {
	deadline := time.NewTimer(within)
	defer deadline.Stop()
	for {
		c := n.Config()
		if ok(c) {
			return c, true
		}
		select {
		case <-n.changed:
		case <-time.After(50 * time.Millisecond):
		case <-deadline.C:
			return c, false
		case <-ctx.Done():
			return c, false
		}
	}
}

func sortStrings(s []string) []string {
	out := append([]string(nil), s...)
	sort.Strings(out)
	return out
}

func sortedKeys(m map[string][]string) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// routeNames are the route tables to subscribe to: those the listeners
// and those the scopes name, sorted, without duplicates. n.mu is held.
func (n *Node) routeNames() []string {
	seen := map[string]bool{}
	var out []string
	for _, name := range append(append([]string(nil), n.lisRDS...), n.scopeRDS...) {
		if !seen[name] {
			seen[name] = true
			out = append(out, name)
		}
	}
	return sortStrings(out)
}
