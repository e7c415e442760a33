package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	ratelimitv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/common/ratelimit/v3"
	rlsv3 "github.com/envoyproxy/go-control-plane/envoy/service/ratelimit/v3"
	"github.com/redis/go-redis/v9"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/gatehouse-edge/gatehouse/internal/testenv"
)

// TestRatelimitCommand runs `gatehouse ratelimit` configured through flags
// and their GATEHOUSE_RATELIMIT_* twins, with the Redis backend, and calls
// ShouldRateLimit on it over gRPC.
func TestRatelimitCommand(t *testing.T) {
	r := testenv.StartRedis(t)
	dir := t.TempDir()
	conf := "domain: edge\ndescriptors:\n  - key: remote_address\n    rate_limit: {unit: hour, requests_per_unit: 2}\n"
	if err := os.WriteFile(filepath.Join(dir, "edge.yaml"), []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	grpcAddr := fmt.Sprintf("127.0.0.1:%d", testenv.FreePort(t))
	adminAddr := fmt.Sprintf("127.0.0.1:%d", testenv.FreePort(t))
	t.Setenv("GATEHOUSE_RATELIMIT_CONFIG_DIR", dir)
	t.Setenv("GATEHOUSE_RATELIMIT_ADMIN_ADDR", adminAddr)
	t.Setenv("GATEHOUSE_RATELIMIT_BACKEND", "redis")
	t.Setenv("GATEHOUSE_RATELIMIT_REDIS_URL", "redis://"+r.Addr)
	t.Setenv("GATEHOUSE_RATELIMIT_FAILURE_MODE", "deny")
	t.Setenv("GATEHOUSE_RATELIMIT_LOG_LEVEL", "warn")

	startRole(t, adminAddr, "ratelimit", "--grpc-addr", grpcAddr, "--response-headers")
	conn, err := grpc.NewClient(grpcAddr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	c := rlsv3.NewRateLimitServiceClient(conn)
	req := &rlsv3.RateLimitRequest{Domain: "edge", Descriptors: []*ratelimitv3.RateLimitDescriptor{{
		Entries: []*ratelimitv3.RateLimitDescriptor_Entry{{Key: "remote_address", Value: "192.0.2.1"}}}}}
	var codes []string
	for i := 0; i < 3; i++ {
		cctx, ccancel := context.WithTimeout(context.Background(), 5*time.Second)
		resp, err := c.ShouldRateLimit(cctx, req)
		ccancel()
		if err != nil {
			t.Fatal(err)
		}
		codes = append(codes, resp.GetOverallCode().String())
		if len(resp.GetResponseHeadersToAdd()) != 3 {
			t.Fatalf("--response-headers: %v", resp.GetResponseHeadersToAdd())
		}
	}
	if strings.Join(codes, ",") != "OK,OK,OVER_LIMIT" {
		t.Fatalf("codes %v", codes)
	}
	// The counter lives in Redis (the backend came from the env twin).
	rc := redis.NewClient(&redis.Options{Addr: r.Addr})
	defer rc.Close()
	keys, err := rc.Keys(context.Background(), "edge_remote_address_192.0.2.1_*").Result()
	if err != nil || len(keys) != 1 {
		t.Fatalf("redis keys %v %v", keys, err)
	}
}

func TestRatelimitCommandBadEnv(t *testing.T) {
	t.Setenv("GATEHOUSE_RATELIMIT_REDIS_TIMEOUT", "soon")
	root := newRootCmd()
	root.SetArgs([]string{"ratelimit", "--config-dir", t.TempDir()})
	err := root.ExecuteContext(context.Background())
	if err == nil || !strings.Contains(err.Error(), "GATEHOUSE_RATELIMIT_REDIS_TIMEOUT") {
		t.Fatalf("err = %v", err)
	}
}
