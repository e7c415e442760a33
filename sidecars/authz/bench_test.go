package authz

import (
	"context"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"

	"github.com/gatehouse-edge/gatehouse/authn/authntest"
)

// In-process Check: CheckRequest → Decision → CheckResponse, cached JWT.
func BenchmarkCheckInProcess(b *testing.B) {
	s := NewServer(newEngine(b, compileSpec(b, "petstore")))
	req := checkRequest("petstore/read", map[string]string{"authorization": "Bearer " + token("petstore", nil)}, "")
	ctx := context.Background()
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			resp, _ := s.Check(ctx, req)
			if resp.GetOkResponse() == nil {
				b.Error("denied")
				return
			}
		}
	})
}

// Check over a real gRPC connection on loopback, cached JWT.
func BenchmarkCheckGRPC(b *testing.B) {
	c := startCheckServer(b, newEngine(b, compileSpec(b, "petstore")))
	req := checkRequest("petstore/read", map[string]string{"authorization": "Bearer " + token("petstore", nil)}, "")
	benchGRPC(b, c, req)
}

// The floor: the same gRPC path to a server that answers OK doing nothing.
func BenchmarkCheckGRPCNoop(b *testing.B) {
	c := startCheckServerFor(b, noop{})
	req := checkRequest("petstore/read", map[string]string{"authorization": "Bearer " + token("petstore", nil)}, "")
	benchGRPC(b, c, req)
}

func benchGRPC(b *testing.B, c authv3.AuthorizationClient, req *authv3.CheckRequest) {
	ctx := context.Background()
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			resp, err := c.Check(ctx, req)
			if err != nil || resp.GetOkResponse() == nil {
				b.Errorf("check: %v %v", resp, err)
				return
			}
		}
	})
}

// The mixed workload of `make bench-authz` over gRPC: 1,000 users, 20 %
// invalid tokens (expired, foreign signature, wrong audience, garbage).
func BenchmarkCheckGRPCMixed(b *testing.B) {
	c := startCheckServer(b, newEngine(b, compileSpec(b, "petstore")))
	valid := make([]*authv3.CheckRequest, 1000)
	for i := range valid {
		u := strconv.Itoa(i)
		valid[i] = checkRequest("petstore/read", map[string]string{"authorization": "Bearer " + token("petstore", func(m map[string]any) { m["sub"] = "user-" + u })}, "")
	}
	foreign := authntest.NewRSA("k1", 2048)
	invalid := []*authv3.CheckRequest{
		checkRequest("petstore/read", map[string]string{"authorization": "Bearer " + token("petstore", func(m map[string]any) { m["exp"] = time.Now().Add(-time.Hour).Unix() })}, ""),
		checkRequest("petstore/read", map[string]string{"authorization": "Bearer " + foreign.Sign(map[string]any{"iss": issuer, "aud": "petstore", "exp": time.Now().Add(time.Hour).Unix()}, nil)}, ""),
		checkRequest("petstore/read", map[string]string{"authorization": "Bearer " + token("other", nil)}, ""),
		checkRequest("petstore/read", map[string]string{"authorization": "Bearer eyJhbGciOiJSUzI1NiJ9.x.!!"}, ""),
	}
	var seq atomic.Uint64
	ctx := context.Background()
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			i := seq.Add(1)
			req, bad := valid[i%1000], i%5 == 0
			if bad {
				req = invalid[(i/5)%4]
			}
			resp, err := c.Check(ctx, req)
			if err != nil || (resp.GetOkResponse() != nil) == bad {
				b.Errorf("check %d: %v %v", i, resp, err)
				return
			}
		}
	})
}
