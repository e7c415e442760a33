package worker

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"time"

	"github.com/aws/aws-sdk-go-v2/service/cloudfront"
	"github.com/aws/aws-sdk-go-v2/service/route53"
	"golang.org/x/sync/errgroup"

	"github.com/gatehouse-edge/gatehouse/broker/backend"
	"github.com/gatehouse-edge/gatehouse/broker/cdn"
	"github.com/gatehouse-edge/gatehouse/broker/dns"
	"github.com/gatehouse-edge/gatehouse/internal/telemetry"
)

// RoleConfig is the `gatehouse worker` process: backends by URL, an admin
// server and the DNS step by flags. Worker carries the rest (Log and
// Registry default to discarding and a new registry; Store and Queue are
// opened from the URLs).
type RoleConfig struct {
	Worker    Config
	StoreURL  string // sqlite:PATH | dynamodb://TABLE
	QueueURL  string // sqlite:PATH | sqs://QUEUE-URL
	Backend   backend.Options
	AdminAddr string // /metrics, /healthz, /readyz; "" or "-" for none
	// DNSZone turns on the Route 53 step for that hosted zone; DNSDryRun
	// logs the change set instead. Worker.DNSTarget is then required.
	DNSZone     string
	DNSEndpoint string
	DNSDryRun   bool
	// CDNOrigin (the fleet's load balancer name) turns on the CloudFront
	// step for instances on the CDN plan; CDNDryRun logs instead.
	// CDNCertificateARN is the ACM certificate for the aliases.
	CDNOrigin         string
	CDNCertificateARN string
	CDNEndpoint       string
	CDNDryRun         bool
}

// RunRole opens the backends, serves the admin endpoints and runs the
// worker until ctx ends.
func RunRole(ctx context.Context, rc RoleConfig) error {
	cfg := rc.Worker
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	if cfg.Registry == nil {
		cfg.Registry = telemetry.NewRegistry()
	}
	if rc.Backend.Visibility == 0 {
		rc.Backend.Visibility = cfg.Visibility
	}
	st, err := backend.OpenStore(ctx, rc.StoreURL, rc.Backend)
	if err != nil {
		return fmt.Errorf("broker worker: %w", err)
	}
	defer st.Close()
	q, err := backend.OpenQueue(ctx, rc.QueueURL, rc.Backend)
	if err != nil {
		return fmt.Errorf("broker worker: %w", err)
	}
	defer q.Close()
	cfg.Store, cfg.Queue = st, q
	switch {
	case rc.DNSDryRun:
		cfg.DNS = dns.DryRun{Log: cfg.Log.With("component", "broker-dns")}
	case rc.DNSZone != "":
		awsCfg, err := backend.AWSConfig(ctx, rc.Backend)
		if err != nil {
			return fmt.Errorf("broker worker: dns step: %w", err)
		}
		c := route53.NewFromConfig(awsCfg, func(o *route53.Options) {
			if rc.DNSEndpoint != "" {
				o.BaseEndpoint = &rc.DNSEndpoint
			}
		})
		cfg.DNS = &dns.Route53{Client: c, ZoneID: rc.DNSZone, Log: cfg.Log.With("component", "broker-dns")}
	}
	switch {
	case rc.CDNDryRun:
		cfg.CDN = cdn.DryRun{Log: cfg.Log.With("component", "broker-cdn"), Origin: rc.CDNOrigin}
	case rc.CDNOrigin != "" && rc.CDNCertificateARN == "":
		return fmt.Errorf("broker worker: the CDN step needs --cdn-certificate-arn (CloudFront serves a distribution's hosts only with an ACM certificate covering them)")
	case rc.CDNOrigin != "":
		awsCfg, err := backend.AWSConfig(ctx, rc.Backend)
		if err != nil {
			return fmt.Errorf("broker worker: cdn step: %w", err)
		}
		c := cloudfront.NewFromConfig(awsCfg, func(o *cloudfront.Options) {
			if rc.CDNEndpoint != "" {
				o.BaseEndpoint = &rc.CDNEndpoint
			}
		})
		cfg.CDN = &cdn.CloudFront{Client: c, Origin: rc.CDNOrigin, CertificateARN: rc.CDNCertificateARN, Log: cfg.Log.With("component", "broker-cdn")}
	}
	if cfg.DNS != nil && cfg.DNSTarget == "" {
		return fmt.Errorf("broker worker: the DNS step needs a target (--dns-target)")
	}
	w, err := New(cfg)
	if err != nil {
		return err
	}
	g, gctx := errgroup.WithContext(ctx)
	if rc.AdminAddr != "" && rc.AdminAddr != "-" {
		l, err := net.Listen("tcp", rc.AdminAddr)
		if err != nil {
			return fmt.Errorf("broker worker: admin listener on %s: %w", rc.AdminAddr, err)
		}
		admin := telemetry.NewAdmin(cfg.Log, cfg.Registry)
		admin.AddReadyCheck("store", func() error {
			c, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			defer cancel()
			return st.Ping(c)
		})
		g.Go(func() error { return telemetry.ServeHTTP(gctx, l, admin.Handler()) })
		cfg.Log.Info("worker admin listening", "component", "broker-worker", "addr", l.Addr().String())
	}
	g.Go(func() error { return w.Run(gctx) })
	return g.Wait()
}
