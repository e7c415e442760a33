package e2e

import (
	"context"
	"fmt"
	"sort"
	"sync"
	"testing"
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
	"google.golang.org/protobuf/proto"
)

// envoyNode is an ADS client that behaves like Envoy's xDS client: one
// stream, CDS and LDS wildcard, then EDS for the EDS clusters and RDS for
// the route tables the listeners name; every response is decoded and
// ACKed (or NACKed if it does not decode).
type envoyNode struct {
	id, group string

	mu       sync.Mutex
	clusters map[string]*clusterv3.Cluster
	cla      map[string]*endpointv3.ClusterLoadAssignment
	lis      map[string]*listenerv3.Listener
	routes   map[string]*routev3.RouteConfiguration
	versions map[string]string // type URL → last ACKed version
	subs     map[string][]string
	nonces   map[string]string
	changed  chan struct{}
}

func startEnvoyNode(t *testing.T, ctx context.Context, xdsAddr string, creds grpc.DialOption, id, group string) *envoyNode {
	t.Helper()
	n := &envoyNode{
		id: id, group: group,
		clusters: map[string]*clusterv3.Cluster{}, cla: map[string]*endpointv3.ClusterLoadAssignment{},
		lis: map[string]*listenerv3.Listener{}, routes: map[string]*routev3.RouteConfiguration{},
		versions: map[string]string{}, subs: map[string][]string{}, nonces: map[string]string{},
		changed: make(chan struct{}, 1),
	}
	conn, err := grpc.NewClient(xdsAddr, creds)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	stream, err := discoveryv3.NewAggregatedDiscoveryServiceClient(conn).StreamAggregatedResources(ctx)
	if err != nil {
		t.Fatal(err)
	}
	node := &corev3.Node{Id: id, Cluster: group, UserAgentName: "envoy", UserAgentVersionType: &corev3.Node_UserAgentVersion{UserAgentVersion: "e2e"}}
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
	for _, typ := range []string{resource.ClusterType, resource.ListenerType} {
		if err := send(typ, nil); err != nil {
			t.Fatal(err)
		}
	}
	go func() {
		for {
			resp, err := stream.Recv()
			if err != nil {
				return
			}
			subscribe, err := n.apply(resp)
			if err == nil {
				n.mu.Lock()
				n.versions[resp.GetTypeUrl()] = resp.GetVersionInfo()
				n.nonces[resp.GetTypeUrl()] = resp.GetNonce()
				n.mu.Unlock()
			} else {
				n.mu.Lock()
				n.nonces[resp.GetTypeUrl()] = resp.GetNonce()
				n.mu.Unlock()
			}
			if send(resp.GetTypeUrl(), err) != nil {
				return
			}
			for typ, names := range subscribe {
				n.mu.Lock()
				same := fmt.Sprint(n.subs[typ]) == fmt.Sprint(names)
				n.subs[typ] = names
				n.mu.Unlock()
				if !same && send(typ, nil) != nil {
					return
				}
			}
			select {
			case n.changed <- struct{}{}:
			default:
			}
		}
	}()
	return n
}

// apply stores a response's resources and says which further names to
// subscribe to (EDS for EDS clusters, RDS for the listeners' route tables).
func (n *envoyNode) apply(resp *discoveryv3.DiscoveryResponse) (map[string][]string, error) {
	n.mu.Lock()
	defer n.mu.Unlock()
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
		n.clusters = next
		sub[resource.EndpointType] = sortStrings(eds)
	case resource.EndpointType:
		for _, a := range resp.GetResources() {
			c := &endpointv3.ClusterLoadAssignment{}
			if err := a.UnmarshalTo(c); err != nil {
				return nil, err
			}
			n.cla[c.GetClusterName()] = c
		}
	case resource.ListenerType:
		next := map[string]*listenerv3.Listener{}
		var rds []string
		for _, a := range resp.GetResources() {
			l := &listenerv3.Listener{}
			if err := a.UnmarshalTo(l); err != nil {
				return nil, err
			}
			next[l.GetName()] = l
			h, err := hcmOf(l)
			if err != nil {
				return nil, err
			}
			rds = append(rds, h.GetRds().GetRouteConfigName())
		}
		n.lis = next
		sub[resource.RouteType] = sortStrings(rds)
	case resource.RouteType:
		for _, a := range resp.GetResources() {
			r := &routev3.RouteConfiguration{}
			if err := a.UnmarshalTo(r); err != nil {
				return nil, err
			}
			n.routes[r.GetName()] = r
		}
	default:
		return nil, fmt.Errorf("unexpected type %s", resp.GetTypeUrl())
	}
	return sub, nil
}

// snapshot is a consistent copy of what the node holds.
type nodeConfig struct {
	clusters map[string]*clusterv3.Cluster
	cla      map[string]*endpointv3.ClusterLoadAssignment
	lis      map[string]*listenerv3.Listener
	routes   map[string]*routev3.RouteConfiguration
	versions map[string]string
}

func (n *envoyNode) config() nodeConfig {
	n.mu.Lock()
	defer n.mu.Unlock()
	c := nodeConfig{clusters: map[string]*clusterv3.Cluster{}, cla: map[string]*endpointv3.ClusterLoadAssignment{},
		lis: map[string]*listenerv3.Listener{}, routes: map[string]*routev3.RouteConfiguration{}, versions: map[string]string{}}
	for k, v := range n.clusters {
		c.clusters[k] = proto.Clone(v).(*clusterv3.Cluster)
	}
	for k, v := range n.cla {
		c.cla[k] = proto.Clone(v).(*endpointv3.ClusterLoadAssignment)
	}
	for k, v := range n.lis {
		c.lis[k] = proto.Clone(v).(*listenerv3.Listener)
	}
	for k, v := range n.routes {
		c.routes[k] = proto.Clone(v).(*routev3.RouteConfiguration)
	}
	for k, v := range n.versions {
		c.versions[k] = v
	}
	return c
}

// waitFor polls the node's config until ok holds.
func (n *envoyNode) waitFor(t *testing.T, within time.Duration, what string, ok func(nodeConfig) bool) nodeConfig {
	t.Helper()
	deadline := time.After(within)
	for {
		c := n.config()
		if ok(c) {
			return c
		}
		select {
		case <-n.changed:
		case <-time.After(50 * time.Millisecond):
		case <-deadline:
			t.Fatalf("envoy node %s: %s not reached within %s; versions %v", n.id, what, within, c.versions)
		}
	}
}

func sortStrings(s []string) []string {
	out := append([]string(nil), s...)
	sort.Strings(out)
	return out
}
