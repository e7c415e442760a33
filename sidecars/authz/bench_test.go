package authzsidecar

import (
	"context"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"

	"github.com/gatehouse-edge/gatehouse/authn/authntest"
	"github.com/gatehouse-edge/gatehouse/authz"
)

// In-process Check (CheckRequest → Decision → CheckResponse, no network)
// for a cached JWT, an uncached RS256 JWT, an API key and a CEL rule.
func BenchmarkCheckInProcess(b *testing.B) {
	jwt := map[string]string{"authorization": "Bearer " + token("petstore", nil)}
	for _, bc := range []struct {
		name    string
		opts    authz.Options
		headers map[string]string
		rule    string
	}{
		{"cached-jwt", authz.Options{}, jwt, "rules[0]"},
		{"uncached-rs256", authz.Options{TokenCacheSize: -1}, jwt, "rules[0]"},
		{"api-key-cel", authz.Options{}, map[string]string{"x-api-key": "acme-key"}, "rules[1]"},
	} {
		b.Run(bc.name, func(b *testing.B) {
			e, err := authz.NewEngine(bc.opts)
			if err != nil {
				b.Fatal(err)
			}
			defer e.Close()
			if err := e.Update([]*authz.SpecPolicy{compileSpec(b, "petstore")}); err != nil {
				b.Fatal(err)
			}
			s := NewServer(e)
			req := checkRequest("petstore/read", bc.headers, "")
			ctx := context.Background()
			b.ReportAllocs()
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					resp, _ := s.Check(ctx, req)
					if resp.GetOkResponse() == nil || resp.GetDynamicMetadata().GetFields()["rule"].GetStringValue() != bc.rule {
						b.Errorf("not allowed by %s: %v", bc.rule, resp)
						return
					}
				}
			})
		})
	}
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
