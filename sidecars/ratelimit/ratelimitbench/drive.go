package main

import (
	"context"
	"fmt"
	"net"
	"os"
	"sort"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	ratelimitv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/common/ratelimit/v3"
	rlsv3 "github.com/envoyproxy/go-control-plane/envoy/service/ratelimit/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/gatehouse-edge/gatehouse/contract"
	"github.com/gatehouse-edge/gatehouse/ratelimit/replay"
)

type noopServer struct {
	rlsv3.UnimplementedRateLimitServiceServer
}

func (noopServer) ShouldRateLimit(context.Context, *rlsv3.RateLimitRequest) (*rlsv3.RateLimitResponse, error) {
	return &rlsv3.RateLimitResponse{OverallCode: rlsv3.RateLimitResponse_OK}, nil
}

func runNoop(args []string) error {
	fs := newFlags("noop")
	addr := fs.String("addr", "127.0.0.1:18181", "listen address")
	fs.Parse(args)
	l, err := net.Listen("tcp", *addr)
	if err != nil {
		return err
	}
	s := grpc.NewServer(grpc.MaxConcurrentStreams(10000))
	rlsv3.RegisterRateLimitServiceServer(s, noopServer{})
	return s.Serve(l)
}

// load is one drive's parameters.
type load struct {
	addr        string
	concurrency int
	keys        int
	duration    time.Duration
	maxRequests int64
	conns       int
	domain      string
	descKey     string
	run         string
}

// result is what a drive measured.
type result struct {
	requests, errors, over int64
	elapsed                time.Duration
	p50, p99               time.Duration
}

func (r result) rps() float64 { return float64(r.requests) / r.elapsed.Seconds() }

func dialConns(addr string, n int) ([]rlsv3.RateLimitServiceClient, func(), error) {
	var clients []rlsv3.RateLimitServiceClient
	var conns []*grpc.ClientConn
	for i := 0; i < n; i++ {
		c, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
		if err != nil {
			return nil, nil, err
		}
		conns = append(conns, c)
		clients = append(clients, rlsv3.NewRateLimitServiceClient(c))
	}
	return clients, func() {
		for _, c := range conns {
			c.Close()
		}
	}, nil
}

// drive runs concurrency callers, each sending one-descriptor requests
// over keys distinct values, until duration or maxRequests.
func drive(ld load) (result, error) {
	clients, closeAll, err := dialConns(ld.addr, max(1, ld.conns))
	if err != nil {
		return result{}, err
	}
	defer closeAll()
	reqs := make([]*rlsv3.RateLimitRequest, ld.keys)
	for i := range reqs {
		reqs[i] = &rlsv3.RateLimitRequest{Domain: ld.domain, Descriptors: []*ratelimitv3.RateLimitDescriptor{{
			Entries: []*ratelimitv3.RateLimitDescriptor_Entry{{Key: ld.descKey, Value: ld.run + "-" + strconv.Itoa(i)}}}}}
	}
	ctx, cancel := context.WithTimeout(context.Background(), ld.duration)
	defer cancel()
	var total, errs, over, done atomic.Int64
	perG := 2_000_000 / ld.concurrency
	lat := make([][]time.Duration, ld.concurrency)
	var wg sync.WaitGroup
	start := time.Now()
	for g := 0; g < ld.concurrency; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c := clients[g%len(clients)]
			mine := make([]time.Duration, 0, 4096)
			for i := g * 7919; ctx.Err() == nil; i++ {
				if total.Add(1) > ld.maxRequests {
					break
				}
				t := time.Now()
				cctx, ccancel := context.WithTimeout(context.Background(), 5*time.Second)
				resp, err := c.ShouldRateLimit(cctx, reqs[i%len(reqs)])
				ccancel()
				d := time.Since(t)
				if err != nil {
					errs.Add(1)
					continue
				}
				done.Add(1)
				if resp.GetOverallCode() == rlsv3.RateLimitResponse_OVER_LIMIT {
					over.Add(1)
				}
				if len(mine) < perG {
					mine = append(mine, d)
				}
			}
			lat[g] = mine
		}()
	}
	wg.Wait()
	elapsed := time.Since(start)
	var all []time.Duration
	for _, l := range lat {
		all = append(all, l...)
	}
	sort.Slice(all, func(i, j int) bool { return all[i] < all[j] })
	r := result{requests: done.Load(), errors: errs.Load(), over: over.Load(), elapsed: elapsed}
	if len(all) > 0 {
		r.p50 = all[len(all)/2]
		r.p99 = all[len(all)*99/100]
	}
	return r, nil
}

func runDrive(args []string) error {
	fs := newFlags("drive")
	ld := load{}
	fs.StringVar(&ld.addr, "addr", contract.DefaultRateLimitAddr, "RLS v3 server")
	fs.IntVar(&ld.concurrency, "concurrency", 64, "concurrent callers")
	fs.IntVar(&ld.keys, "keys", 10000, "distinct descriptor values")
	fs.DurationVar(&ld.duration, "duration", 10*time.Second, "how long to drive (upper bound)")
	fs.Int64Var(&ld.maxRequests, "requests", 5_000_000, "most requests to send (upper bound)")
	fs.IntVar(&ld.conns, "conns", 4, "gRPC connections")
	fs.StringVar(&ld.domain, "domain", "bench", "domain")
	fs.StringVar(&ld.descKey, "key", "user", "descriptor key")
	fs.StringVar(&ld.run, "run", strconv.FormatInt(time.Now().UnixNano(), 36), "value prefix")
	fs.Parse(args)
	r, err := drive(ld)
	if err != nil {
		return err
	}
	fmt.Printf("requests %d errors %d over_limit %d in %s: %.0f req/s, p50 %s, p99 %s\n", r.requests, r.errors, r.over, r.elapsed.Round(time.Millisecond), r.rps(), r.p50, r.p99)
	return nil
}

func replayAgainst(addr, script, run string) ([]string, int, error) {
	f, err := os.Open(script)
	if err != nil {
		return nil, 0, err
	}
	defer f.Close()
	steps, err := replay.Parse(f, run)
	if err != nil {
		return nil, 0, err
	}
	clients, closeAll, err := dialConns(addr, 1)
	if err != nil {
		return nil, 0, err
	}
	defer closeAll()
	mism, err := replay.Run(context.Background(), steps, func(ctx context.Context, req *rlsv3.RateLimitRequest) (*rlsv3.RateLimitResponse, error) {
		ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
		return clients[0].ShouldRateLimit(ctx, req)
	})
	return mism, len(steps), err
}

func runReplay(args []string) error {
	fs := newFlags("replay")
	addr := fs.String("addr", contract.DefaultRateLimitAddr, "RLS v3 server")
	script := fs.String("script", "ratelimit/testdata/replay/script.txt", "script")
	run := fs.String("run", strconv.FormatInt(time.Now().UnixNano()%1000000, 10), "value for {run}")
	fs.Parse(args)
	mism, n, err := replayAgainst(*addr, *script, *run)
	if err != nil {
		return err
	}
	for _, m := range mism {
		fmt.Println(m)
	}
	fmt.Printf("%d steps, %d mismatches\n", n, len(mism))
	if len(mism) > 0 {
		return fmt.Errorf("%d mismatches", len(mism))
	}
	return nil
}
