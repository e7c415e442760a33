package telemetry

import (
	"bytes"
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/gatehouse-edge/gatehouse/internal/testenv"
)

func TestNewLogger(t *testing.T) {
	var buf bytes.Buffer
	log, err := NewLogger(&buf, LogConfig{Format: "json", Level: "warn"})
	if err != nil {
		t.Fatal(err)
	}
	log.Info("hidden")
	log.Warn("shown", "node_id", "n1")
	if strings.Contains(buf.String(), "hidden") || !strings.Contains(buf.String(), `"node_id":"n1"`) {
		t.Fatalf("unexpected log output: %s", buf.String())
	}
	if _, err := NewLogger(io.Discard, LogConfig{Level: "loud"}); err == nil {
		t.Fatal("bad level accepted")
	}
	if _, err := NewLogger(io.Discard, LogConfig{Format: "xml"}); err == nil {
		t.Fatal("bad format accepted")
	}
}

func TestAdmin(t *testing.T) {
	reg := NewRegistry()
	c := prometheus.NewCounter(prometheus.CounterOpts{Name: "gatehouse_test_total", Help: "test"})
	reg.MustRegister(c)
	c.Add(3)
	a := NewAdmin(slog.New(slog.NewTextHandler(io.Discard, nil)), reg)
	var loaded atomic.Bool
	a.AddReadyCheck("config", func() error {
		if !loaded.Load() {
			return errors.New("config not loaded")
		}
		return nil
	})
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- ServeHTTP(ctx, l, a.Handler()) }()
	base := "http://" + l.Addr().String()

	if code, body := testenv.HTTPGet(t, base+"/metrics"); code != 200 || !strings.Contains(body, "gatehouse_test_total 3") || !strings.Contains(body, "go_goroutines") {
		t.Fatalf("/metrics %d:\n%s", code, body)
	}
	if code, _ := testenv.HTTPGet(t, base+"/healthz"); code != 200 {
		t.Fatalf("/healthz %d", code)
	}
	if code, body := testenv.HTTPGet(t, base+"/readyz"); code != 503 || !strings.Contains(body, "config: config not loaded") {
		t.Fatalf("/readyz before ready: %d %s", code, body)
	}
	loaded.Store(true)
	if code, _ := testenv.HTTPGet(t, base+"/readyz"); code != 200 {
		t.Fatalf("/readyz after ready: %d", code)
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("ServeHTTP returned %v after shutdown", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("admin server did not shut down")
	}
}

func TestGRPCServerHealthAndGracefulStop(t *testing.T) {
	s := NewGRPCServer(slog.New(slog.NewTextHandler(io.Discard, nil)))
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Serve(ctx, l, 2*time.Second) }()

	conn, err := grpc.NewClient(l.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	resp, err := healthpb.NewHealthClient(conn).Check(context.Background(), &healthpb.HealthCheckRequest{})
	if err != nil || resp.GetStatus() != healthpb.HealthCheckResponse_SERVING {
		t.Fatalf("health = %v, %v", resp, err)
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("grpc server did not stop")
	}
	cctx, ccancel := context.WithTimeout(context.Background(), time.Second)
	defer ccancel()
	if _, err := healthpb.NewHealthClient(conn).Check(cctx, &healthpb.HealthCheckRequest{}); err == nil {
		t.Fatal("server still answers after shutdown")
	}
}
