package accesslogsidecar_test

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
)

// TestSpecDirReloadKeepsTheLastGoodSettings: a new spec in --spec-dir is
// loaded without a restart, a broken one is refused (last_reload_success
// 0) while the settings in force stay, and gRPC health of the ALS service
// is SERVING with settings loaded.
func TestSpecDirReloadKeepsTheLastGoodSettings(t *testing.T) {
	dir := t.TempDir()
	s := startSidecar(t, dir, nil)
	specDir := filepath.Join(dir, "specs")
	const routes = "gatehouse_accesslog_settings_routes"
	const lastOK = "gatehouse_accesslog_settings_last_reload_success"
	waitMetric := func(name string, want float64) {
		t.Helper()
		deadline := time.Now().Add(10 * time.Second)
		for metric(t, s.httpAddr, name) != want {
			if time.Now().After(deadline) {
				t.Fatalf("%s = %v, want %v", name, metric(t, s.httpAddr, name), want)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	waitMetric(routes, 1)
	waitMetric(lastOK, 1)

	conn, err := grpc.NewClient(s.grpcAddr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	hs, err := healthpb.NewHealthClient(conn).Check(ctx, &healthpb.HealthCheckRequest{Service: "envoy.service.accesslog.v3.AccessLogService"})
	if err != nil || hs.GetStatus() != healthpb.HealthCheckResponse_SERVING {
		t.Fatalf("ALS health = %v, %v; want SERVING", hs.GetStatus(), err)
	}

	cat := strings.NewReplacer("petstore", "catstore", "list-pets", "list-cats", "/pets", "/cats").Replace(petSpec)
	if err := os.WriteFile(filepath.Join(specDir, "catstore.yaml"), []byte(cat), 0o644); err != nil {
		t.Fatal(err)
	}
	waitMetric(routes, 2)

	if err := os.WriteFile(filepath.Join(specDir, "broken.yaml"), []byte("apiVersion: gatehouse/v1\nkind: EdgeRoute\nnope: 1\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	waitMetric(lastOK, 0)
	if v := metric(t, s.httpAddr, routes); v != 2 {
		t.Fatalf("routes = %v after a broken spec, want the last good 2", v)
	}

	if err := os.Remove(filepath.Join(specDir, "broken.yaml")); err != nil {
		t.Fatal(err)
	}
	waitMetric(lastOK, 1)
	waitMetric(routes, 2)
}
