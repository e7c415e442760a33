// Package xdsclient is the ADS client the sidecars use to receive their config.
//
// Run opens one aggregated (ADS) state-of-the-world stream for one resource
// type, hands every response to a Handler and answers it: an ACK when the
// handler accepts the resources, a NACK carrying the handler's error message
// (error_detail) when it rejects them, in which case the caller keeps its last
// good config. A broken stream is re-opened with exponential backoff until the
// context ends; the re-opened stream announces the last accepted version, as
// Envoy does. It imports no Gatehouse package.
package xdsclient

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/cenkalti/backoff/v5"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	statuspb "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/types/known/anypb"
)

// Handler gets the full current set of resources of one type each time the
// server sends them; returning an error NACKs with that message and the
// caller keeps its last good config.
type Handler func(version string, resources []*anypb.Any) error

// Config says where to connect and what to subscribe to.
type Config struct {
	Server        string // host:port of the xDS server
	NodeID        string
	NodeCluster   string // the node group
	TypeURL       string
	ResourceNames []string // empty = wildcard
	Log           *slog.Logger

	// DialOptions replace the default (plaintext transport credentials,
	// meant for loopback) when set.
	DialOptions []grpc.DialOption
	// InitialBackoff and MaxBackoff bound the reconnect delay; defaults
	// 250ms and 30s.
	InitialBackoff, MaxBackoff time.Duration
}

// UserAgent is the user_agent_name the client reports in its node.
const UserAgent = "gatehouse-xdsclient"

// Run keeps an ADS stream open and feeds h until ctx ends. It returns nil
// when ctx ends and an error only when cfg is unusable.
func Run(ctx context.Context, cfg Config, h Handler) error {
	if cfg.Server == "" || cfg.NodeID == "" || cfg.TypeURL == "" || h == nil {
		return errors.New("xdsclient: Server, NodeID, TypeURL and a handler are required")
	}
	log := cfg.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	log = log.With("component", "xdsclient", "xds_server", cfg.Server, "type_url", cfg.TypeURL)
	opts := cfg.DialOptions
	if len(opts) == 0 {
		opts = []grpc.DialOption{grpc.WithTransportCredentials(insecure.NewCredentials())}
	}
	conn, err := grpc.NewClient(cfg.Server, opts...)
	if err != nil {
		return fmt.Errorf("xdsclient: connecting to %s: %w", cfg.Server, err)
	}
	defer conn.Close()

	bo := backoff.NewExponentialBackOff()
	bo.InitialInterval = orDefault(cfg.InitialBackoff, 250*time.Millisecond)
	bo.MaxInterval = orDefault(cfg.MaxBackoff, 30*time.Second)
	bo.Reset()

	s := &stream{cfg: cfg, h: h, log: log, client: discoveryv3.NewAggregatedDiscoveryServiceClient(conn)}
	for {
		got, err := s.run(ctx)
		if ctx.Err() != nil {
			return nil
		}
		if got {
			// The stream worked for a while: start the backoff afresh.
			bo.Reset()
		}
		wait := bo.NextBackOff()
		log.Warn("xds stream ended; reconnecting", "error", err, "retry_in", wait)
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil
		case <-t.C:
		}
	}
}

func orDefault(d, def time.Duration) time.Duration {
	if d <= 0 {
		return def
	}
	return d
}

// stream is the state kept across reconnects: the last version accepted.
type stream struct {
	cfg         Config
	h           Handler
	log         *slog.Logger
	client      discoveryv3.AggregatedDiscoveryServiceClient
	lastVersion string
}

// run opens one stream and serves it until it breaks. got reports whether
// at least one response arrived.
func (s *stream) run(ctx context.Context) (got bool, err error) {
	sctx, cancel := context.WithCancel(ctx)
	defer cancel()
	st, err := s.client.StreamAggregatedResources(sctx)
	if err != nil {
		return false, fmt.Errorf("opening ADS stream: %w", err)
	}
	node := &corev3.Node{
		Id:                   s.cfg.NodeID,
		Cluster:              s.cfg.NodeCluster,
		UserAgentName:        UserAgent,
		UserAgentVersionType: &corev3.Node_UserAgentVersion{UserAgentVersion: "v1"},
	}
	first := &discoveryv3.DiscoveryRequest{
		Node:          node,
		TypeUrl:       s.cfg.TypeURL,
		ResourceNames: s.cfg.ResourceNames,
		VersionInfo:   s.lastVersion,
	}
	if err := st.Send(first); err != nil {
		return false, fmt.Errorf("sending the subscription: %w", err)
	}
	for {
		resp, err := st.Recv()
		if err != nil {
			return got, fmt.Errorf("receiving: %w", err)
		}
		got = true
		if resp.GetTypeUrl() != s.cfg.TypeURL {
			// ADS may multiplex; this stream only subscribed to one type.
			s.log.Warn("ignoring a response of an unsubscribed type", "got_type_url", resp.GetTypeUrl())
			continue
		}
		req := &discoveryv3.DiscoveryRequest{
			TypeUrl:       s.cfg.TypeURL,
			ResourceNames: s.cfg.ResourceNames,
			ResponseNonce: resp.GetNonce(),
		}
		if herr := s.h(resp.GetVersionInfo(), resp.GetResources()); herr != nil {
			s.log.Warn("rejecting config (NACK)", "version", resp.GetVersionInfo(), "kept_version", s.lastVersion, "error", herr)
			req.VersionInfo = s.lastVersion
			req.ErrorDetail = &statuspb.Status{Code: int32(codes.InvalidArgument), Message: herr.Error()}
		} else {
			s.log.Debug("accepted config (ACK)", "version", resp.GetVersionInfo(), "resources", len(resp.GetResources()))
			s.lastVersion = resp.GetVersionInfo()
			req.VersionInfo = s.lastVersion
		}
		if err := st.Send(req); err != nil {
			return got, fmt.Errorf("sending ACK/NACK: %w", err)
		}
	}
}
