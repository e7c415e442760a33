package main

import (
	"context"
	"fmt"
	"net"
	"os"
	"time"

	"github.com/aws/aws-sdk-go-v2/service/route53"
	"github.com/spf13/cobra"
	"golang.org/x/sync/errgroup"

	"github.com/gatehouse-edge/gatehouse/broker/backend"
	"github.com/gatehouse-edge/gatehouse/broker/dns"
	"github.com/gatehouse-edge/gatehouse/broker/worker"
	"github.com/gatehouse-edge/gatehouse/internal/telemetry"
)

func newWorkerCmd() *cobra.Command {
	var (
		cfg                  worker.Config
		be                   backend.Options
		logc                 telemetry.LogConfig
		storeURL, queueURL   string
		adminAddr            string
		dnsZone, dnsEndpoint string
		dnsDryRun            bool
	)
	cmd := &cobra.Command{
		Use:   "worker",
		Short: "Run the broker worker: queue -> validate -> route store -> wait for the control plane -> succeeded/failed",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx := cmd.Context()
			log, err := telemetry.NewLogger(os.Stderr, logc)
			if err != nil {
				return err
			}
			be.Visibility = cfg.Visibility
			st, err := backend.OpenStore(ctx, storeURL, be)
			if err != nil {
				return err
			}
			defer st.Close()
			q, err := backend.OpenQueue(ctx, queueURL, be)
			if err != nil {
				return err
			}
			defer q.Close()
			switch {
			case dnsDryRun:
				cfg.DNS = dns.DryRun{Log: log.With("component", "broker-dns")}
			case dnsZone != "":
				awsCfg, err := backend.AWSConfig(ctx, be)
				if err != nil {
					return err
				}
				c := route53.NewFromConfig(awsCfg, func(o *route53.Options) {
					if dnsEndpoint != "" {
						o.BaseEndpoint = &dnsEndpoint
					}
				})
				cfg.DNS = &dns.Route53{Client: c, ZoneID: dnsZone, Log: log.With("component", "broker-dns")}
			}
			if cfg.DNS != nil && cfg.DNSTarget == "" {
				return fmt.Errorf("--dns-target is required with --dns-zone or --dns-dry-run")
			}
			reg := telemetry.NewRegistry()
			cfg.Store, cfg.Queue, cfg.Logger, cfg.Registry = st, q, log, reg
			g, gctx := errgroup.WithContext(ctx)
			if adminAddr != "-" {
				l, err := net.Listen("tcp", adminAddr)
				if err != nil {
					return fmt.Errorf("worker: admin listener on %s: %w", adminAddr, err)
				}
				admin := telemetry.NewAdmin(log, reg)
				admin.AddReadyCheck("store", func() error {
					c, cancel := context.WithTimeout(context.Background(), 2*time.Second)
					defer cancel()
					return st.Ping(c)
				})
				g.Go(func() error { return telemetry.ServeHTTP(gctx, l, admin.Handler()) })
			}
			g.Go(func() error { return worker.Run(gctx, cfg) })
			return g.Wait()
		},
	}
	f := cmd.Flags()
	f.StringVar(&storeURL, "store", "sqlite:.gatehouse/broker-store.db", "store: sqlite:PATH or dynamodb://TABLE")
	f.StringVar(&queueURL, "queue", "sqlite:.gatehouse/broker-queue.db", "queue: sqlite:PATH or sqs://QUEUE-URL")
	brokerAWSFlags(cmd, &be)
	f.StringVar(&adminAddr, "admin-addr", "127.0.0.1:8084", `admin HTTP listen address; "-" for none`)
	f.IntVar(&cfg.Concurrency, "concurrency", 4, "tasks run at once")
	f.IntVar(&cfg.MaxAttempts, "max-attempts", 5, "deliveries before a task is dead-lettered and its operation failed")
	f.DurationVar(&cfg.PublishWait, "publish-wait", 30*time.Second, "how long one attempt waits for the control plane's report")
	f.DurationVar(&cfg.Visibility, "visibility", 30*time.Second, "queue visibility timeout (extended while working)")
	f.DurationVar(&cfg.UnconfirmedDeleteAfter, "unconfirmed-delete-after", 30*time.Second, "finish a deprovision whose deletion the control plane has not reported after this long (negative: wait for the report)")
	f.StringVar(&dnsZone, "dns-zone", "", "Route 53 hosted zone id: create a CNAME per EdgeRoute host (off when empty)")
	f.StringVar(&cfg.DNSTarget, "dns-target", "", "the CNAME target (the edge fleet's name)")
	f.Int64Var(&cfg.DNSTTL, "dns-ttl", 300, "DNS record TTL, seconds")
	f.BoolVar(&dnsDryRun, "dns-dry-run", false, "log the DNS change set instead of applying it")
	f.StringVar(&dnsEndpoint, "dns-endpoint", "", "Route 53 endpoint override")
	f.StringVar(&logc.Format, "log-format", "text", "text|json")
	f.StringVar(&logc.Level, "log-level", "info", "debug|info|warn|error")
	return cmd
}
