package controlplane_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	cachev3 "github.com/envoyproxy/go-control-plane/pkg/cache/v3"
	"github.com/google/go-cmp/cmp"
	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"
	yamlv3 "gopkg.in/yaml.v3"

	"github.com/gatehouse-edge/gatehouse/broker/store"
	"github.com/gatehouse-edge/gatehouse/broker/store/dynamostore"
	"github.com/gatehouse-edge/gatehouse/broker/store/sqlitestore"
	"github.com/gatehouse-edge/gatehouse/contract"
	"github.com/gatehouse-edge/gatehouse/controlplane"
	"github.com/gatehouse-edge/gatehouse/controlplane/compile"
	"github.com/gatehouse-edge/gatehouse/controlplane/source"
	"github.com/gatehouse-edge/gatehouse/internal/testenv"
	"github.com/gatehouse-edge/gatehouse/internal/xdsclient"
)

// replicaGroup is the node group of the replica tests.
const replicaGroup = "edge"

// subscription is one type a test node subscribes to: wildcard (names
// nil) or named, as Envoy does (RDS by the route table's name, EDS by
// cluster).
type subscription struct {
	typeURL string
	names   []string
}

// every type the control plane serves an Envoy node, in the order Envoy
// asks (the sidecar types too; each type has its own version).
var replicaTypes = []subscription{
	{cdsType, nil},
	{edsType, []string{"a/api"}},
	{ldsType, nil},
	{rdsType, []string{"gatehouse_routes"}},
	{contract.ExtensionConfigType, nil},
	{contract.RateLimitConfigType, nil},
}

// sharedStore opens two handles (two processes' worth) on one store.
type sharedStore func(t *testing.T) (a, b store.Store)

var replicaStores = map[string]sharedStore{
	"sqlite": func(t *testing.T) (store.Store, store.Store) {
		path := filepath.Join(t.TempDir(), "broker.db")
		open := func() store.Store {
			st, err := sqlitestore.Open(context.Background(), path)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { st.Close() })
			return st
		}
		return open(), open()
	},
	"dynamodb": func(t *testing.T) (store.Store, store.Store) {
		d := testenv.StartDynalite(t)
		open := func() *dynamostore.Store {
			c := dynamodb.New(dynamodb.Options{Region: "us-east-1", BaseEndpoint: aws.String(d.Endpoint),
				Credentials: testenv.AWSCredentials()})
			return dynamostore.New(c, "gatehouse-replicas")
		}
		a := open()
		if err := a.EnsureTable(context.Background()); err != nil {
			t.Fatal(err)
		}
		return a, open()
	},
}

// replica is one control plane with its own xDS server on 127.0.0.1:0.
type replica struct {
	cp   *controlplane.ControlPlane
	addr string
}

func startReplica(t *testing.T, st store.Store) *replica {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	cp, err := controlplane.New(ctx, controlplane.Config{
		Source:   source.NewFeed(st, source.Options{PollInterval: 50 * time.Millisecond}),
		Reporter: source.NewBrokerReporter(st),
		Registry: prometheus.NewRegistry(),
		HoldOff:  10 * time.Millisecond,
	})
	if err != nil {
		t.Fatal(err)
	}
	return &replica{cp: cp, addr: serveXDS(t, ctx, cancel, cp)}
}

// waitPublished waits until the replica's last good result satisfies ok.
func (r *replica) waitPublished(t *testing.T, what string, ok func(*compile.Result) bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		if g := r.cp.Publisher().Good(); g != nil && ok(g) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatal(what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// version waits until the replica's last good result publishes spec a at
// store revision rev, and returns the group's version.
func (r *replica) version(t *testing.T, rev int64) string {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		if g := r.cp.Publisher().Good(); g != nil {
			for _, s := range g.Published() {
				if s.Name == "a" && s.Revision == rev {
					return g.GroupVersion(replicaGroup)
				}
			}
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatalf("replica %s never published revision %d of a", r.addr, rev)
	return ""
}

func putSpec(t *testing.T, st store.Store, name, yamlText string, prev int64) int64 {
	t.Helper()
	var v any
	if err := yamlv3.Unmarshal([]byte(yamlText), &v); err != nil {
		t.Fatal(err)
	}
	compact, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	s := store.StoredSpec{Name: name, InstanceID: "i-" + name, JSON: compact, Deleted: yamlText == "null"}
	if s.Deleted {
		s.JSON = nil
	}
	rev, err := st.PutSpec(context.Background(), s, prev)
	if err != nil {
		t.Fatalf("put %s: %v", name, err)
	}
	return rev
}

// hasEndpoint reports whether an encoded ClusterLoadAssignment names addr.
func hasEndpoint(t *testing.T, raw []byte, addr string) bool {
	t.Helper()
	cla := &endpointv3.ClusterLoadAssignment{}
	if err := proto.Unmarshal(raw, cla); err != nil {
		t.Fatal(err)
	}
	return strings.Contains(protojson.Format(cla), addr)
}

// TestReplicasNodeMovesWithoutResend runs two control planes over one
// store (SQLite on one host, DynamoDB in dynalite across hosts). Replica A
// sees a spec come and go that replica B, started later, never sees, so
// their histories (revision ids, caches) differ; both must still serve the
// same version for the same content. A node (SotW, then delta) syncs with
// A, its stream is cut, and it reconnects to B presenting what it holds:
// B sends nothing. A spec change in the store then reaches it through B.
func TestReplicasNodeMovesWithoutResend(t *testing.T) {
	for name, open := range replicaStores {
		t.Run(name, func(t *testing.T) {
			stA, stB := open(t)
			ra := putSpec(t, stA, "a", specYAML("a", "a.example.com", "10.0.0.1:80"), 0)
			a := startReplica(t, stA)
			vA := a.version(t, ra)
			// A publishes b and then its deletion; then it is back on the
			// content it started with. Each step is waited for: A polls the
			// store, and without the first wait it could still be on a
			// alone when the second one passes, and only see b come and go
			// after the node below has synced with it.
			rb := putSpec(t, stA, "b", specYAML("b", "b.example.com", "10.0.0.2:80"), 0)
			a.waitPublished(t, "replica A never published b", func(g *compile.Result) bool {
				return slices.ContainsFunc(g.Published(), func(s *compile.Spec) bool { return s.Name == "b" })
			})
			putSpec(t, stA, "b", "null", rb)
			a.waitPublished(t, "replica A never went back to version "+vA, func(g *compile.Result) bool {
				return g.GroupVersion(replicaGroup) == vA && len(g.Published()) == 1
			})
			b := startReplica(t, stB)
			if vB := b.version(t, ra); vB != vA {
				t.Fatalf("same store content, different versions: A %s, B %s", vA, vB)
			}

			t.Run("sotw", func(t *testing.T) {
				held := map[string]*discoveryv3.DiscoveryResponse{}
				c := dialADS(t, a.addr, "node-sotw", replicaGroup)
				var vers map[string]string
				for _, s := range replicaTypes {
					c.send(s.typeURL, s.names, "", "", "")
					r := c.recv(s.typeURL)
					if vers == nil {
						vers = typeVersions(t, a.cp, replicaGroup)
					}
					if r.GetVersionInfo() != vers[s.typeURL] {
						t.Fatalf("%s: version %q from A, want %q", s.typeURL, r.GetVersionInfo(), vers[s.typeURL])
					}
					if len(r.GetResources()) == 0 {
						t.Fatalf("%s: A sent no resources", s.typeURL)
					}
					held[s.typeURL] = r
					c.send(s.typeURL, s.names, r.GetVersionInfo(), r.GetNonce(), "") // ACK
				}
				c.cancel()

				// Envoy on a new stream: the version it holds and the nonce of
				// the last response it got, per type.
				c = dialADS(t, b.addr, "node-sotw", replicaGroup)
				for _, s := range replicaTypes {
					c.send(s.typeURL, s.names, held[s.typeURL].GetVersionInfo(), held[s.typeURL].GetNonce(), "")
				}
				if n := c.count(time.Second); n != 0 {
					t.Fatalf("B sent %d responses to a node that holds its version", n)
				}

				ra2 := putSpec(t, stA, "a", specYAML("a", "a.example.com", "10.0.0.9:80"), ra)
				defer func() { ra = ra2 }()
				v2 := b.version(t, ra2)
				if v2A := a.version(t, ra2); v2A != v2 {
					t.Fatalf("after the change: A %s, B %s", v2A, v2)
				}
				// Only the types the change touched are sent, each at its new version.
				vers2 := typeVersions(t, b.cp, replicaGroup)
				changed := map[string]bool{}
				for typ, v := range vers2 {
					if v != vers[typ] {
						changed[typ] = true
					}
				}
				if !changed[edsType] || changed[cdsType] || changed[ldsType] {
					t.Fatalf("an endpoint change changed the versions of %v, want EDS and not CDS or LDS", changed)
				}
				got := map[string]bool{}
				for len(got) < len(changed) {
					select {
					case r, ok := <-c.resps:
						if !ok {
							t.Fatal("stream closed")
						}
						if !changed[r.GetTypeUrl()] || r.GetVersionInfo() != vers2[r.GetTypeUrl()] {
							t.Fatalf("%s: version %q through B, want only changed types at their new version %v", r.GetTypeUrl(), r.GetVersionInfo(), vers2)
						}
						if r.GetTypeUrl() == edsType && !hasEndpoint(t, r.GetResources()[0].GetValue(), "10.0.0.9") {
							t.Fatal("the changed endpoint did not reach the node through B")
						}
						got[r.GetTypeUrl()] = true
					case <-time.After(20 * time.Second):
						t.Fatalf("the change reached the node for %v only", got)
					}
				}

				// A node that comes back to A still holding the old version
				// is behind, and gets the new one in full.
				if n := c.count(500 * time.Millisecond); n != 0 {
					t.Fatalf("%d responses of types the change did not touch", n)
				}
				c = dialADS(t, a.addr, "node-sotw-late", replicaGroup)
				for _, s := range replicaTypes {
					c.send(s.typeURL, s.names, held[s.typeURL].GetVersionInfo(), held[s.typeURL].GetNonce(), "")
					if !changed[s.typeURL] {
						continue // it holds this type's current version
					}
					if r := c.recv(s.typeURL); r.GetVersionInfo() != vers2[s.typeURL] || len(r.GetResources()) == 0 {
						t.Fatalf("%s: a node behind got version %q with %d resources, want %q", s.typeURL, r.GetVersionInfo(), len(r.GetResources()), vers2[s.typeURL])
					}
				}
				if n := c.count(500 * time.Millisecond); n != 0 {
					t.Fatalf("a node behind got %d responses of types it holds", n)
				}
			})

			t.Run("delta", func(t *testing.T) {
				a.version(t, ra)
				var vNow map[string]string
				held := map[string]map[string]string{}
				c := dialDelta(t, a.addr, "node-delta", replicaGroup)
				for _, s := range replicaTypes {
					c.send(&discoveryv3.DeltaDiscoveryRequest{TypeUrl: s.typeURL, ResourceNamesSubscribe: s.names})
					r := c.recv(t)
					if r.GetTypeUrl() != s.typeURL || len(r.GetResources()) == 0 {
						t.Fatalf("got %s with %d resources, want %s", r.GetTypeUrl(), len(r.GetResources()), s.typeURL)
					}
					if vNow == nil {
						vNow = typeVersions(t, a.cp, replicaGroup)
					}
					if r.GetSystemVersionInfo() != vNow[s.typeURL] {
						t.Fatalf("%s: system version %q, want %q", s.typeURL, r.GetSystemVersionInfo(), vNow[s.typeURL])
					}
					held[s.typeURL] = map[string]string{}
					for _, res := range r.GetResources() {
						held[s.typeURL][res.GetName()] = res.GetVersion()
					}
					c.send(&discoveryv3.DeltaDiscoveryRequest{TypeUrl: s.typeURL, ResponseNonce: r.GetNonce()}) // ACK
				}
				c.cancel()

				c = dialDelta(t, b.addr, "node-delta", replicaGroup)
				for _, s := range replicaTypes {
					c.send(&discoveryv3.DeltaDiscoveryRequest{TypeUrl: s.typeURL, ResourceNamesSubscribe: s.names, InitialResourceVersions: held[s.typeURL]})
				}
				// An empty answer to a wildcard subscription is allowed (it
				// tells a new node there is nothing); resources are not.
				timeout := time.After(time.Second)
			quiet:
				for {
					select {
					case r := <-c.resps:
						if len(r.GetResources()) > 0 || len(r.GetRemovedResources()) > 0 {
							t.Fatalf("B sent %s again: %d resources, %d removed", r.GetTypeUrl(), len(r.GetResources()), len(r.GetRemovedResources()))
						}
						c.send(&discoveryv3.DeltaDiscoveryRequest{TypeUrl: r.GetTypeUrl(), ResponseNonce: r.GetNonce()})
					case <-timeout:
						break quiet
					}
				}

				ra3 := putSpec(t, stA, "a", specYAML("a", "a.example.com", "10.0.0.7:80"), ra)
				b.version(t, ra3)
				for {
					select {
					case r := <-c.resps:
						c.send(&discoveryv3.DeltaDiscoveryRequest{TypeUrl: r.GetTypeUrl(), ResponseNonce: r.GetNonce()})
						if r.GetTypeUrl() == cdsType && len(r.GetResources()) > 0 {
							t.Fatal("clusters did not change, yet B sent them again")
						}
						if r.GetTypeUrl() != edsType || len(r.GetResources()) == 0 {
							continue
						}
						if !hasEndpoint(t, r.GetResources()[0].GetResource().GetValue(), "10.0.0.7") {
							t.Fatal("the changed endpoint did not reach the node through B")
						}
						return
					case <-time.After(20 * time.Second):
						t.Fatal("the change never reached the node through B")
					}
				}
			})

			// Both replicas reported every revision; the broker sees the
			// newest one published.
			cur, err := stA.GetSpec(context.Background(), "a")
			if err != nil {
				t.Fatal(err)
			}
			deadline := time.Now().Add(20 * time.Second)
			for {
				p, err := stB.GetPublication(context.Background(), "a")
				if err == nil && p.Revision == cur.Revision {
					if p.Error != "" {
						t.Fatalf("revision %d reported failed: %s", p.Revision, p.Error)
					}
					break
				}
				if time.Now().After(deadline) {
					t.Fatalf("publication %+v, %v; want revision %d", p, err, cur.Revision)
				}
				time.Sleep(20 * time.Millisecond)
			}
		})
	}
}

// deltaClient is a hand-driven delta ADS stream.
type deltaClient struct {
	t      *testing.T
	node   *corev3.Node
	stream discoveryv3.AggregatedDiscoveryService_DeltaAggregatedResourcesClient
	resps  chan *discoveryv3.DeltaDiscoveryResponse
	cancel context.CancelFunc
	sent   bool
}

func dialDelta(t *testing.T, addr, id, group string) *deltaClient {
	t.Helper()
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	st, err := discoveryv3.NewAggregatedDiscoveryServiceClient(conn).DeltaAggregatedResources(ctx)
	if err != nil {
		t.Fatal(err)
	}
	c := &deltaClient{t: t, node: &corev3.Node{Id: id, Cluster: group}, stream: st, resps: make(chan *discoveryv3.DeltaDiscoveryResponse, 64), cancel: cancel}
	go func() {
		for {
			r, err := st.Recv()
			if err != nil {
				return
			}
			c.resps <- r
		}
	}()
	t.Cleanup(func() { cancel(); conn.Close() })
	return c
}

func (c *deltaClient) send(req *discoveryv3.DeltaDiscoveryRequest) {
	c.t.Helper()
	if !c.sent {
		req.Node, c.sent = c.node, true
	}
	if err := c.stream.Send(req); err != nil {
		c.t.Fatalf("send: %v", err)
	}
}

func (c *deltaClient) recv(t *testing.T) *discoveryv3.DeltaDiscoveryResponse {
	t.Helper()
	select {
	case r := <-c.resps:
		return r
	case <-time.After(20 * time.Second):
		t.Fatal("no delta response")
	}
	return nil
}

// TestReplicasReportIdempotently has two replicas' reporters (each on its
// own handle of one real store) report the same specs: concurrent equal
// reports neither fail nor write twice, an error never undoes a
// "published" of the same revision, an old report never replaces a newer
// one, and a newer revision is recorded whatever its verdict.
func TestReplicasReportIdempotently(t *testing.T) {
	for name, open := range replicaStores {
		t.Run(name, func(t *testing.T) {
			ctx := context.Background()
			stA, stB := open(t)
			repA, repB := source.NewBrokerReporter(stA), source.NewBrokerReporter(stB)
			rev := putSpec(t, stA, "a", specYAML("a", "a.example.com", "10.0.0.1:80"), 0)

			var failed atomic.Int64
			var wg sync.WaitGroup
			for i := range 8 {
				wg.Add(1)
				go func() {
					defer wg.Done()
					rep := repA
					if i%2 == 1 {
						rep = repB
					}
					if err := rep.ReportPublished(ctx, "a", rev, nil); err != nil {
						failed.Add(1)
						t.Errorf("report %d: %v", i, err)
					}
				}()
			}
			wg.Wait()
			first, err := stA.GetPublication(ctx, "a")
			if err != nil || first.Revision != rev || first.Error != "" {
				t.Fatalf("publication %+v, %v; want revision %d published", first, err, rev)
			}

			// A repeat changes nothing (not even the report time).
			time.Sleep(5 * time.Millisecond)
			if err := repB.ReportPublished(ctx, "a", rev, nil); err != nil {
				t.Fatal(err)
			}
			if p, _ := stA.GetPublication(ctx, "a"); !p.ReportedAt.Equal(first.ReportedAt) {
				t.Errorf("a repeated report was written again: reported at %v, then %v", first.ReportedAt, p.ReportedAt)
			}

			// Replica B refuses to publish what A published: the broker must
			// go on seeing it published.
			if err := repB.ReportPublished(ctx, "a", rev, errors.New("not published: node group x: boom")); err != nil {
				t.Fatal(err)
			}
			if p, _ := stA.GetPublication(ctx, "a"); p.Revision != rev || p.Error != "" {
				t.Fatalf("an error of replica B undid the publication of replica A: %+v", p)
			}

			// A lagging replica's older report never replaces a newer one.
			rev2 := putSpec(t, stA, "a", specYAML("a", "a.example.com", "10.0.0.2:80"), rev)
			if err := repA.ReportPublished(ctx, "a", rev2, fmt.Errorf("spec.routes[0].upstream: no such upstream")); err != nil {
				t.Fatal(err)
			}
			if err := repB.ReportPublished(ctx, "a", rev, nil); err != nil {
				t.Fatal(err)
			}
			if p, _ := stB.GetPublication(ctx, "a"); p.Revision != rev2 || !strings.Contains(p.Error, "no such upstream") {
				t.Fatalf("publication %+v; want revision %d with its error", p, rev2)
			}
			// The same error from the other replica is the same verdict; a
			// "published" of that revision from either wins over it.
			if err := repB.ReportPublished(ctx, "a", rev2, fmt.Errorf("spec.routes[0].upstream: no such upstream")); err != nil {
				t.Fatal(err)
			}
			if err := repB.ReportPublished(ctx, "a", rev2, nil); err != nil {
				t.Fatal(err)
			}
			if p, _ := stA.GetPublication(ctx, "a"); p.Revision != rev2 || p.Error != "" {
				t.Fatalf("publication %+v; want revision %d published", p, rev2)
			}
			if failed.Load() != 0 {
				t.Fatalf("%d concurrent reports failed", failed.Load())
			}
		})
	}
}

// TestReplicasCompileSameBytes compiles the same revision in compilers
// with different histories (as two replicas that started at different
// times), several times over (Go's map order differs on every range), and
// wants the same group versions and, per type, the same encoded resources
// (whose hashes are the delta resource versions) for every node group.
func TestReplicasCompileSameBytes(t *testing.T) {
	var specs []source.Spec
	seen := map[string]bool{}
	for _, pattern := range []string{"../deploy/examples/*.yaml", "compile/testdata/golden/*.yaml"} {
		files, err := filepath.Glob(pattern)
		if err != nil || len(files) == 0 {
			t.Fatalf("no specs at %s: %v", pattern, err)
		}
		for _, f := range files {
			if seen[filepath.Base(f)] {
				continue // the same example in both places
			}
			seen[filepath.Base(f)] = true
			b, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			specs = append(specs, source.Spec{Origin: f, Data: b})
		}
	}
	rev := source.Revision{Specs: specs}
	rev.ID = source.RevisionID(specs)
	groups := []string{"edge", "eu-west-1", "us-east-1"}

	encode := func(c *compile.Compiler) map[string]string {
		res := c.Compile(rev)
		if len(res.Failed()) > 0 {
			t.Fatalf("spec failed: %v", res.Failed()[0].Err)
		}
		out := map[string]string{}
		for _, g := range groups {
			out[g] = res.GroupVersion(g)
			r, _, err := res.Resources(g)
			if err != nil {
				t.Fatal(err)
			}
			for typ, list := range r {
				for _, x := range list {
					b, err := proto.MarshalOptions{Deterministic: true}.Marshal(x)
					if err != nil {
						t.Fatal(err)
					}
					out[g+" "+typ+" "+cachev3.GetResourceName(x)] = cachev3.HashResource(b)
				}
			}
		}
		return out
	}
	fresh := func() *compile.Compiler {
		c, err := compile.New(compile.Options{})
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	want := encode(fresh())
	for i := range 5 {
		c := fresh()
		// A history: another revision compiled before this one.
		c.Compile(source.Revision{ID: "other", Specs: specs[:1]})
		got := encode(c)
		if diff := cmp.Diff(want, got); diff != "" {
			t.Fatalf("run %d: the same revision compiled differently (-first +this):\n%s", i, diff)
		}
	}
}

// TestReportSurvivesPassingStoreErrors: the store refuses the first two
// status reports (a store briefly unavailable, a throttled request); the
// report is retried, and the broker sees the spec published.
func TestReportSurvivesPassingStoreErrors(t *testing.T) {
	st, _ := replicaStores["sqlite"](t)
	var calls atomic.Int64
	rep := source.NewBrokerReporter(st)
	flaky := source.ReporterFunc(func(ctx context.Context, name string, rev int64, err error) error {
		if calls.Add(1) <= 2 {
			return errors.New("store unavailable")
		}
		return rep.ReportPublished(ctx, name, rev, err)
	})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	rev := putSpec(t, st, "a", specYAML("a", "a.example.com", "10.0.0.1:80"), 0)
	cp, err := controlplane.New(ctx, controlplane.Config{
		Source:   source.NewFeed(st, source.Options{PollInterval: 50 * time.Millisecond}),
		Reporter: flaky,
		Registry: prometheus.NewRegistry(),
		HoldOff:  10 * time.Millisecond,
	})
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { defer close(done); _ = cp.Run(ctx) }()
	defer func() { cancel(); <-done }()
	deadline := time.Now().Add(15 * time.Second)
	for time.Now().Before(deadline) {
		if p, err := st.GetPublication(ctx, "a"); err == nil && p.Revision == rev {
			if p.Error != "" {
				t.Fatalf("reported as failed: %s", p.Error)
			}
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("revision %d was never reported after %d attempts", rev, calls.Load())
}

// tcpSwitch forwards connections to one backend at a time; switching cuts
// every open connection, as a load balancer does when a replica goes away.
type tcpSwitch struct {
	l       net.Listener
	mu      sync.Mutex
	backend string
	conns   []net.Conn
}

func startSwitch(t *testing.T, backend string) *tcpSwitch {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &tcpSwitch{l: l, backend: backend}
	go func() {
		for {
			in, err := l.Accept()
			if err != nil {
				return
			}
			s.mu.Lock()
			out, err := net.Dial("tcp", s.backend)
			if err != nil {
				s.mu.Unlock()
				in.Close()
				continue
			}
			s.conns = append(s.conns, in, out)
			s.mu.Unlock()
			go func() { _, _ = io.Copy(out, in); out.Close() }()
			go func() { _, _ = io.Copy(in, out); in.Close() }()
		}
	}()
	t.Cleanup(func() { l.Close(); s.to("") })
	return s
}

// to sends new connections to backend and cuts the open ones.
func (s *tcpSwitch) to(backend string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.backend = backend
	for _, c := range s.conns {
		c.Close()
	}
	s.conns = nil
}

// TestSidecarClientMovesBetweenReplicas runs the sidecars' own ADS client
// (xdsclient) through a switch in front of two replicas: its connection to
// A is cut and it reconnects, through the same address, to B. It keeps its
// config and is not handed the same version again; the next change comes
// from B.
func TestSidecarClientMovesBetweenReplicas(t *testing.T) {
	stA, stB := replicaStores["sqlite"](t)
	rev := putSpec(t, stA, "a", specYAML("a", "a.example.com", "10.0.0.1:80"), 0)
	a, b := startReplica(t, stA), startReplica(t, stB)
	if v, vb := a.version(t, rev), b.version(t, rev); vb != v {
		t.Fatalf("A serves %s, B %s", v, vb)
	}
	sw := startSwitch(t, a.addr)

	versions := make(chan string, 16)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = xdsclient.Run(ctx, xdsclient.Config{Server: sw.l.Addr().String(), NodeID: "sidecar-1", NodeCluster: replicaGroup,
			TypeURL: contract.RateLimitConfigType, InitialBackoff: 10 * time.Millisecond, MaxBackoff: 50 * time.Millisecond},
			func(version string, _ []*anypb.Any) error { versions <- version; return nil })
	}()
	defer func() { cancel(); <-done }()
	next := func() string {
		t.Helper()
		select {
		case got := <-versions:
			return got
		case <-time.After(20 * time.Second):
			t.Fatal("the sidecar client got no config")
		}
		return ""
	}
	if got, v := next(), typeVersions(t, a.cp, replicaGroup)[contract.RateLimitConfigType]; got != v {
		t.Fatalf("first config %s, want %s", got, v)
	}

	sw.to(b.addr)
	connected := func(r *replica) bool { // a stream of the node is open on r
		for _, n := range r.cp.XDS().Nodes() {
			if n.NodeID == "sidecar-1" {
				return true
			}
		}
		return false
	}
	deadline := time.Now().Add(20 * time.Second)
	for !connected(b) {
		if time.Now().After(deadline) {
			t.Fatal("the sidecar client never reconnected to B")
		}
		time.Sleep(10 * time.Millisecond)
	}
	select {
	case got := <-versions:
		t.Fatalf("B sent the sidecar client version %s again", got)
	case <-time.After(time.Second):
	}

	// A new limit: a new RateLimitConfig version.
	rev2 := putSpec(t, stA, "a", strings.Replace(specYAML("a", "a.example.com", "10.0.0.1:80"), "10/second", "20/second", 1), rev)
	b.version(t, rev2)
	if got, v2 := next(), typeVersions(t, b.cp, replicaGroup)[contract.RateLimitConfigType]; got != v2 {
		t.Fatalf("after the change the client got %s, want %s", got, v2)
	}
}
