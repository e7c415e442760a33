package redisstore

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	ratelimitv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/common/ratelimit/v3"
	rlsv3 "github.com/envoyproxy/go-control-plane/envoy/service/ratelimit/v3"
	"github.com/redis/go-redis/v9"

	"github.com/gatehouse-edge/gatehouse/internal/testenv"
	"github.com/gatehouse-edge/gatehouse/ratelimit"
)

// startCluster starts three redis-server processes in cluster mode and
// joins them with redis-cli --cluster create (no replicas).
func startCluster(t *testing.T) []*testenv.Redis {
	t.Helper()
	cli, err := exec.LookPath("redis-cli")
	if err != nil {
		t.Fatalf("redis-cli is not installed (Debian package redis-tools, pulled in by redis-server)")
	}
	var nodes []*testenv.Redis
	args := []string{"--cluster", "create"}
	for i := 0; i < 3; i++ {
		r := testenv.StartRedis(t, "--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf", "--cluster-node-timeout", "2000")
		nodes = append(nodes, r)
		args = append(args, r.Addr)
	}
	args = append(args, "--cluster-replicas", "0", "--cluster-yes")
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	if out, err := exec.CommandContext(ctx, cli, args...).CombinedOutput(); err != nil {
		t.Fatalf("redis-cli --cluster create: %v\n%s", err, out)
	}
	deadline := time.Now().Add(30 * time.Second)
	for _, n := range nodes {
		c := redis.NewClient(&redis.Options{Addr: n.Addr})
		for {
			info, err := c.ClusterInfo(context.Background()).Result()
			if err == nil && strings.Contains(info, "cluster_state:ok") {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("cluster did not reach state ok: %v %s", err, info)
			}
			time.Sleep(50 * time.Millisecond)
		}
		c.Close()
	}
	return nodes
}

// TestCluster runs the memory-vs-Redis comparison against a real
// three-node Redis Cluster: keys of one request (and batch) are grouped
// by hash slot, one EVALSHA per slot, pipelined per node.
func TestCluster(t *testing.T) {
	nodes := startCluster(t)
	url := "redis+cluster://" + nodes[0].Addr + "," + nodes[1].Addr
	st := sameAnswers(t, url, 600)
	// The counters really are spread over the nodes.
	spread := 0
	for _, n := range nodes {
		c := redis.NewClient(&redis.Options{Addr: n.Addr})
		size, err := c.DBSize(context.Background()).Result()
		c.Close()
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("node %s holds %d keys", n.Addr, size)
		if size > 0 {
			spread++
		}
	}
	if spread < 2 {
		t.Fatalf("keys on %d node(s); want them spread over the cluster", spread)
	}
	if _, ok := st.Client().(*redis.ClusterClient); !ok {
		t.Fatalf("redis+cluster:// made a %T", st.Client())
	}

	// Concurrent requests of three descriptors each (three slots): batches
	// mix requests and slots; every limit is still exact.
	svc := newService(t, newStore(t, Options{URL: url, Timeout: 5 * time.Second, CacheSize: -1}), ratelimit.SystemClock{}, `
domain: c
descriptors:
  - key: a
    rate_limit: {unit: hour, requests_per_unit: 100}
  - key: b
    rate_limit: {unit: hour, requests_per_unit: 100, algorithm: sliding-window}
  - key: c
    rate_limit: {unit: hour, requests_per_unit: 1, algorithm: token-bucket, burst: 100}
`, ratelimit.FailDeny)
	var okA, okB, okC atomic.Int64
	var wg sync.WaitGroup
	for g := 0; g < 16; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 15; i++ {
				resp, err := svc.ShouldRateLimit(context.Background(), &rlsv3.RateLimitRequest{Domain: "c", Descriptors: []*ratelimitv3.RateLimitDescriptor{
					desc("a", "x"), desc("b", "y"), desc("c", "z")}})
				if err != nil {
					t.Error(err)
					return
				}
				for j, n := range []*atomic.Int64{&okA, &okB, &okC} {
					if resp.Statuses[j].Code == rlsv3.RateLimitResponse_OK {
						n.Add(1)
					}
				}
			}
		}()
	}
	wg.Wait()
	if okA.Load() != 100 || okB.Load() != 100 || okC.Load() != 100 {
		t.Fatalf("allowed %d/%d/%d of 240 each, want exactly 100 each", okA.Load(), okB.Load(), okC.Load())
	}
}

// TestSentinel reaches a master through a real redis-server in sentinel
// mode (redis+sentinel://) and gives the same answers as memory.
func TestSentinel(t *testing.T) {
	master := testenv.StartRedis(t)
	dir := t.TempDir()
	port := testenv.FreePort(t)
	conf := filepath.Join(dir, "sentinel.conf")
	body := fmt.Sprintf("bind 127.0.0.1\nport %d\ndir %s\nsentinel monitor mymaster 127.0.0.1 %d 1\nsentinel down-after-milliseconds mymaster 5000\n", port, dir, master.Port)
	if err := os.WriteFile(conf, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(testenv.RedisBinary(t), conf, "--sentinel")
	logf, _ := os.Create(filepath.Join(dir, "sentinel.log"))
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait(); logf.Close() })
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	deadline := time.Now().Add(20 * time.Second)
	for {
		c := redis.NewSentinelClient(&redis.Options{Addr: addr})
		got, err := c.GetMasterAddrByName(context.Background(), "mymaster").Result()
		c.Close()
		if err == nil && len(got) == 2 && got[1] == strconv.Itoa(master.Port) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("sentinel on %s does not report the master: %v %v", addr, got, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	st := sameAnswers(t, "redis+sentinel://"+addr+"/mymaster", 300)
	if _, ok := st.Client().(*redis.Client); !ok {
		t.Fatalf("redis+sentinel:// made a %T", st.Client())
	}
	c := redis.NewClient(&redis.Options{Addr: master.Addr})
	defer c.Close()
	if n, err := c.DBSize(context.Background()).Result(); err != nil || n == 0 {
		t.Fatalf("master holds %d keys (%v)", n, err)
	}
}
