package sidecar_test

import (
	"context"
	"errors"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	"github.com/envoyproxy/go-control-plane/pkg/cache/types"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/gatehouse-edge/gatehouse/contract"
	"github.com/gatehouse-edge/gatehouse/internal/sidecar"
	"github.com/gatehouse-edge/gatehouse/internal/specdir"
	"github.com/gatehouse-edge/gatehouse/internal/telemetry"
	"github.com/gatehouse-edge/gatehouse/internal/testenv"
	"github.com/gatehouse-edge/gatehouse/internal/tlsconfig"
)

const service = "test.Sidecar"

// config is what a toy sidecar serves: the content of config.yaml in its
// spec directory, or the names of the xDS resources it was sent. A
// content of "bad" does not load.
type config struct {
	mu  sync.Mutex
	val string
}

func (c *config) get() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.val
}

func (c *config) set(v string) {
	c.mu.Lock()
	c.val = v
	c.mu.Unlock()
}

func (c *config) has() error {
	if c.get() == "" {
		return errors.New("no config yet")
	}
	return nil
}

func (c *config) reloadDir(dir string) func() error {
	return func() error {
		b, err := os.ReadFile(filepath.Join(dir, "config.yaml"))
		if errors.Is(err, os.ErrNotExist) {
			c.set("")
			return nil
		}
		if err != nil {
			return err
		}
		if string(b) == "bad" {
			return errors.New("config.yaml: bad")
		}
		c.set(string(b))
		return nil
	}
}

type running struct {
	grpcAddr, adminAddr string
	health              healthpb.HealthClient
	stop                func() error
}

// start runs cfg on loopback ports until the test ends.
func start(t *testing.T, cfg sidecar.Config) *running {
	t.Helper()
	cfg.Name = "test"
	cfg.GRPCAddr, cfg.AdminAddr = "127.0.0.1:0", "127.0.0.1:0"
	cfg.HealthService = service
	listening := make(chan [2]net.Addr, 1)
	cfg.Listening = func(g, a net.Addr) { listening <- [2]net.Addr{g, a} }
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- sidecar.Run(ctx, cfg) }()
	r := &running{}
	select {
	case a := <-listening:
		r.grpcAddr, r.adminAddr = a[0].String(), a[1].String()
	case err := <-done:
		cancel()
		t.Fatalf("Run: %v", err)
	case <-time.After(10 * time.Second):
		cancel()
		t.Fatal("Run did not listen")
	}
	conn, err := grpc.NewClient(r.grpcAddr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	r.health = healthpb.NewHealthClient(conn)
	var once sync.Once
	var stopErr error
	r.stop = func() error {
		once.Do(func() {
			conn.Close()
			cancel()
			select {
			case stopErr = <-done:
			case <-time.After(15 * time.Second):
				stopErr = errors.New("Run did not stop")
			}
		})
		return stopErr
	}
	t.Cleanup(func() {
		if err := r.stop(); err != nil {
			t.Errorf("Run returned %v", err)
		}
	})
	return r
}

func (r *running) status(t *testing.T) healthpb.HealthCheckResponse_ServingStatus {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	resp, err := r.health.Check(ctx, &healthpb.HealthCheckRequest{Service: service})
	if err != nil {
		t.Fatal(err)
	}
	return resp.GetStatus()
}

func TestSpecDirDrivesHealthAndKeepsTheLastGoodConfig(t *testing.T) {
	dir := t.TempDir()
	var c config
	r := start(t, sidecar.Config{
		HasConfig: c.has,
		Admin:     func(a *telemetry.Admin) { a.AddReadyCheck("config", c.has) },
		Dirs:      []sidecar.Dir{{Path: dir, Source: "spec_dir", Reload: c.reloadDir(dir)}},
		Watch:     specdir.Options{HoldOff: 20 * time.Millisecond},
	})
	// An empty directory loads, but is no config: not serving, not ready.
	if st := r.status(t); st != healthpb.HealthCheckResponse_NOT_SERVING {
		t.Fatalf("health with no config = %v", st)
	}
	if code, _ := testenv.HTTPGet(t, "http://"+r.adminAddr+"/readyz"); code != http.StatusServiceUnavailable {
		t.Fatalf("/readyz with no config = %d", code)
	}

	if err := os.WriteFile(filepath.Join(dir, "config.yaml"), []byte("v1"), 0o644); err != nil {
		t.Fatal(err)
	}
	testenv.WaitFor(t, "v1 to load", 10*time.Second, func() bool { return c.get() == "v1" })
	testenv.WaitFor(t, "SERVING", 10*time.Second, func() bool { return r.status(t) == healthpb.HealthCheckResponse_SERVING })
	if code, _ := testenv.HTTPGet(t, "http://"+r.adminAddr+"/readyz"); code != http.StatusOK {
		t.Fatalf("/readyz with config = %d", code)
	}
	if code, body := testenv.HTTPGet(t, "http://"+r.adminAddr+"/metrics"); code != http.StatusOK || !strings.Contains(body, "go_goroutines") {
		t.Fatalf("/metrics = %d", code)
	}

	// A change that does not load keeps the last good config, and health.
	if err := os.WriteFile(filepath.Join(dir, "config.yaml"), []byte("bad"), 0o644); err != nil {
		t.Fatal(err)
	}
	time.Sleep(300 * time.Millisecond)
	if c.get() != "v1" || r.status(t) != healthpb.HealthCheckResponse_SERVING {
		t.Fatalf("after a bad change: config %q, health %v; want v1, SERVING", c.get(), r.status(t))
	}

	// Removing the config is a config change like any other.
	if err := os.Remove(filepath.Join(dir, "config.yaml")); err != nil {
		t.Fatal(err)
	}
	testenv.WaitFor(t, "NOT_SERVING", 10*time.Second, func() bool { return r.status(t) == healthpb.HealthCheckResponse_NOT_SERVING })

	// Stopping is graceful and closes the listeners.
	if err := r.stop(); err != nil {
		t.Fatal(err)
	}
	for _, a := range []string{r.grpcAddr, r.adminAddr} {
		if c, err := net.DialTimeout("tcp", a, time.Second); err == nil {
			c.Close()
			t.Errorf("%s still accepts connections after Run returned", a)
		}
	}
}

func TestXDSDeliversThroughTheHandlerAndDrivesHealth(t *testing.T) {
	x := testenv.StartXDS(t, "127.0.0.1:0")
	var c config
	r := start(t, sidecar.Config{
		HasConfig: c.has,
		XDS: sidecar.XDS{Server: x.Addr, NodeID: "node-1", NodeCluster: "g", Subscriptions: []sidecar.Subscription{{
			TypeURL: contract.ExtensionConfigType,
			Handler: func(version string, res []*anypb.Any) error {
				var names []string
				for _, a := range res {
					var tec corev3.TypedExtensionConfig
					if err := a.UnmarshalTo(&tec); err != nil {
						return err
					}
					if tec.GetName() == "bad" {
						return errors.New("resource bad does not load")
					}
					names = append(names, tec.GetName())
				}
				c.set(strings.Join(names, ","))
				return nil
			},
		}}},
	})
	if st := r.status(t); st != healthpb.HealthCheckResponse_NOT_SERVING {
		t.Fatalf("health before any xDS response = %v", st)
	}
	resource := func(name string) types.Resource {
		v, _ := anypb.New(wrapperspb.String(name))
		return &corev3.TypedExtensionConfig{Name: name, TypedConfig: v}
	}
	x.Set(t, "node-1", "v1", map[string][]types.Resource{contract.ExtensionConfigType: {resource("one")}})
	testenv.WaitFor(t, "v1", 10*time.Second, func() bool { return c.get() == "one" })
	testenv.WaitFor(t, "SERVING", 10*time.Second, func() bool { return r.status(t) == healthpb.HealthCheckResponse_SERVING })
	testenv.WaitFor(t, "ACK of v1", 10*time.Second, func() bool { return x.Acked(contract.ExtensionConfigType, "v1") })

	x.Set(t, "node-1", "v2", map[string][]types.Resource{contract.ExtensionConfigType: {resource("bad")}})
	testenv.WaitFor(t, "a NACK of v2", 10*time.Second, func() bool { return x.NACK() != nil })
	if n := x.NACK(); !strings.Contains(n.GetErrorDetail().GetMessage(), "does not load") {
		t.Fatalf("NACK detail = %q", n.GetErrorDetail().GetMessage())
	}
	if c.get() != "one" || r.status(t) != healthpb.HealthCheckResponse_SERVING {
		t.Fatalf("after a NACK: config %q, health %v; want one, SERVING", c.get(), r.status(t))
	}
}

func TestStartFailsWithoutListening(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "config.yaml"), []byte("bad"), 0o644); err != nil {
		t.Fatal(err)
	}
	for name, cfg := range map[string]sidecar.Config{
		// The first load of a directory must succeed.
		"bad first load": {Dirs: []sidecar.Dir{{Path: dir, Reload: new(config).reloadDir(dir)}}},
		// A directory that is not there.
		"missing dir": {Dirs: []sidecar.Dir{{Path: filepath.Join(dir, "missing"), Reload: func() error { return nil }}}},
		// Without TLS the gRPC port must be on loopback.
		"plaintext on a public address": {GRPCAddr: "0.0.0.0:0"},
		// The admin port too, when it carries TLS settings.
		"plaintext public admin": {AdminAddr: "0.0.0.0:0", AdminTLS: &tlsconfig.Server{}, AdminFlag: "--http-addr"},
	} {
		t.Run(name, func(t *testing.T) {
			cfg.Name = "test"
			cfg.GRPCAddr = orDefault(cfg.GRPCAddr, "127.0.0.1:0")
			cfg.AdminAddr = orDefault(cfg.AdminAddr, "127.0.0.1:0")
			listened := false
			cfg.Listening = func(net.Addr, net.Addr) { listened = true }
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			err := sidecar.Run(ctx, cfg)
			if err == nil {
				t.Fatalf("Run = %v, want an error", err)
			}
			if listened {
				t.Fatal("Run listened before failing")
			}
			// The address checked is the one asked for, before binding it
			// (a bound 0.0.0.0:0 would read [::]:port).
			if strings.Contains(name, "plaintext") && !strings.Contains(err.Error(), "0.0.0.0:0") {
				t.Fatalf("Run = %v: the TLS check ran after binding the port", err)
			}
			t.Log(err)
		})
	}
}

func orDefault(s, def string) string {
	if s == "" {
		return def
	}
	return s
}
