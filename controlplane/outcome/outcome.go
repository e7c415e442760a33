// Package outcome is the small report stream from the accesslog sidecars
// to the control plane: per (node group, config version, route) counts of
// requests, 5xx, upstream failures, auth denials and rate-limited
// requests (accesslog.Outcomes). It runs on the control plane's xDS port,
// so it has that port's mutual TLS: a report from a sidecar whose client
// certificate names a node group may carry counts of that group only.
// The message is a google.protobuf.Struct (no generated code); Encode and
// Decode are its schema. It must not import compile, snapshot or the
// controlplane package (which serves it).
package outcome

import (
	"context"
	"errors"
	"fmt"
	"math"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/emptypb"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/gatehouse-edge/gatehouse/accesslog"
	"github.com/gatehouse-edge/gatehouse/internal/tlsconfig"
)

// Method is the full gRPC method name.
const Method = "/gatehouse.outcome.v1.Outcomes/Report"

// Limits of one report.
const (
	MaxCounts = 4096
	MaxString = 256
)

// Report is one sidecar's counts since its previous report.
type Report struct {
	NodeID string
	Counts []accesslog.Outcome
	// Authenticated: the sender's node group came from its verified
	// client certificate (CertGroup), and every count is of that group.
	Authenticated bool
	CertGroup     string
}

// Encode is the wire form of r.
func Encode(r Report) *structpb.Struct {
	list := make([]any, 0, len(r.Counts))
	for _, c := range r.Counts {
		list = append(list, map[string]any{
			"node_group": c.NodeGroup, "version": c.Version, "route": c.Route,
			"requests": float64(c.Requests), "status_5xx": float64(c.Status5xx),
			"upstream_failures": float64(c.UpstreamFailures), "auth_denied": float64(c.AuthDenied),
			"rate_limited": float64(c.RateLimited),
		})
	}
	s, err := structpb.NewStruct(map[string]any{"node_id": r.NodeID, "counts": list})
	if err != nil {
		panic(err) // only strings, numbers and lists above
	}
	return s
}

// Decode reads a report, refusing one that is too large or malformed
// (field path and reason in the error).
func Decode(s *structpb.Struct) (Report, error) {
	f := s.GetFields()
	r := Report{NodeID: f["node_id"].GetStringValue()}
	if len(r.NodeID) > MaxString {
		return Report{}, errors.New("node_id: longer than 256 bytes")
	}
	list := f["counts"].GetListValue().GetValues()
	if len(list) > MaxCounts {
		return Report{}, fmt.Errorf("counts: %d entries, at most %d", len(list), MaxCounts)
	}
	for i, v := range list {
		cf := v.GetStructValue().GetFields()
		var o accesslog.Outcome
		for _, p := range []struct {
			name string
			dst  *string
		}{{"node_group", &o.NodeGroup}, {"version", &o.Version}, {"route", &o.Route}} {
			*p.dst = cf[p.name].GetStringValue()
			if *p.dst == "" || len(*p.dst) > MaxString {
				return Report{}, fmt.Errorf("counts[%d].%s: empty or longer than %d bytes", i, p.name, MaxString)
			}
		}
		for _, p := range []struct {
			name string
			dst  *uint64
		}{{"requests", &o.Requests}, {"status_5xx", &o.Status5xx}, {"upstream_failures", &o.UpstreamFailures},
			{"auth_denied", &o.AuthDenied}, {"rate_limited", &o.RateLimited}} {
			n := cf[p.name].GetNumberValue()
			if n < 0 || n > 1<<50 || n != math.Trunc(n) {
				return Report{}, fmt.Errorf("counts[%d].%s: %v is not a count", i, p.name, n)
			}
			*p.dst = uint64(n)
		}
		if o.Status5xx > o.Requests || o.UpstreamFailures > o.Requests || o.AuthDenied > o.Requests || o.RateLimited > o.Requests {
			return Report{}, fmt.Errorf("counts[%d]: an outcome count exceeds requests (%d)", i, o.Requests)
		}
		r.Counts = append(r.Counts, o)
	}
	return r, nil
}

// Send sends one report over conn (the sidecar's connection to the
// control plane's xDS port).
func Send(ctx context.Context, conn grpc.ClientConnInterface, r Report) error {
	return conn.Invoke(ctx, Method, Encode(r), &emptypb.Empty{})
}

// Register serves reports on g; handle gets each accepted one and must
// not block (hand it to a channel). Over mutual TLS a report with a count
// of another node group than the one the sender's certificate names is
// refused with PermissionDenied.
func Register(g *grpc.Server, handle func(Report)) {
	g.RegisterService(&grpc.ServiceDesc{
		ServiceName: "gatehouse.outcome.v1.Outcomes",
		HandlerType: (*any)(nil),
		Methods: []grpc.MethodDesc{{
			MethodName: "Report",
			Handler: func(_ any, ctx context.Context, dec func(any) error, _ grpc.UnaryServerInterceptor) (any, error) {
				in := new(structpb.Struct)
				if err := dec(in); err != nil {
					return nil, err
				}
				r, err := Decode(in)
				if err != nil {
					return nil, status.Error(codes.InvalidArgument, "outcome report: "+err.Error())
				}
				if p, ok := peer.FromContext(ctx); ok {
					if ti, ok := p.AuthInfo.(credentials.TLSInfo); ok && len(ti.State.VerifiedChains) > 0 && len(ti.State.VerifiedChains[0]) > 0 {
						r.CertGroup, _ = tlsconfig.NodeGroup(ti.State.VerifiedChains[0][0])
					}
				}
				if r.CertGroup != "" {
					for i, c := range r.Counts {
						if c.NodeGroup != r.CertGroup {
							return nil, status.Errorf(codes.PermissionDenied, "outcome report: counts[%d].node_group %q differs from the node group %q of the client certificate", i, c.NodeGroup, r.CertGroup)
						}
					}
					r.Authenticated = true
				}
				handle(r)
				return &emptypb.Empty{}, nil
			},
		}},
		Metadata: "gatehouse/outcome",
	}, struct{}{})
}
