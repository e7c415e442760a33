package ratelimitsidecar

import (
	"context"
	"errors"

	rlsv3 "github.com/envoyproxy/go-control-plane/envoy/service/ratelimit/v3"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/gatehouse-edge/gatehouse/ratelimit"
)

// ServiceName is the gRPC service Envoy calls.
const ServiceName = "envoy.service.ratelimit.v3.RateLimitService"

// Server maps RLS v3 calls onto a ratelimit.Service: a malformed request
// is INVALID_ARGUMENT; "over limit" is a response, never an error.
type Server struct {
	rlsv3.UnimplementedRateLimitServiceServer
	svc *ratelimit.Service
}

// NewServer wraps svc.
func NewServer(svc *ratelimit.Service) *Server { return &Server{svc: svc} }

// ShouldRateLimit implements rlsv3.RateLimitServiceServer.
func (s *Server) ShouldRateLimit(ctx context.Context, req *rlsv3.RateLimitRequest) (*rlsv3.RateLimitResponse, error) {
	resp, err := s.svc.ShouldRateLimit(ctx, req)
	if err != nil {
		var ie *ratelimit.InvalidRequestError
		if errors.As(err, &ie) {
			return nil, status.Error(codes.InvalidArgument, ie.Error())
		}
		return nil, status.Error(codes.Internal, err.Error())
	}
	return resp, nil
}
