package authz

import (
	"context"
	"testing"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
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
