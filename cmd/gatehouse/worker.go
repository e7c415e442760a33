package main

import (
	"os"
	"time"

	"github.com/spf13/cobra"

	"github.com/gatehouse-edge/gatehouse/broker/worker"
	"github.com/gatehouse-edge/gatehouse/contract"
	"github.com/gatehouse-edge/gatehouse/controlplane/compile"
	"github.com/gatehouse-edge/gatehouse/internal/telemetry"
	"github.com/gatehouse-edge/gatehouse/spec"
)

func newWorkerCmd() *cobra.Command {
	var (
		rc     worker.RoleConfig
		logc   telemetry.LogConfig
		copts  compile.Options
		cflags compileFlags
	)
	cfg := &rc.Worker
	cmd := &cobra.Command{
		Use:   "worker",
		Short: "Run the broker worker: queue -> validate -> route store -> wait for the control plane -> succeeded/failed",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			log, err := telemetry.NewLogger(os.Stderr, logc)
			if err != nil {
				return err
			}
			cfg.Log, cfg.Registry = log, telemetry.NewRegistry()
			// Validate and compile with the control plane's own code and
			// options (the same compile flags) before anything is stored.
			if err := cflags.load(&copts); err != nil {
				return err
			}
			var own []spec.NodeService
			if rc.AdminAddr != "" && rc.AdminAddr != "-" {
				own = append(own, spec.NodeService{Addr: rc.AdminAddr, What: "the broker worker's admin server"})
			}
			cfg.SpecPolicy = spec.Policy{Upstreams: spec.UpstreamPolicy{Allow: copts.UpstreamAllow, Reserved: own}}
			copts.NodeServices = own
			copts.Log = log
			checker, err := compile.NewChecker(copts)
			if err != nil {
				return err
			}
			cfg.Compile = checker.Check
			return worker.RunRole(cmd.Context(), rc)
		},
	}
	f := cmd.Flags()
	f.StringVar(&rc.StoreURL, "store", "sqlite:.gatehouse/broker-store.db", "store: sqlite:PATH or dynamodb://TABLE")
	f.StringVar(&rc.QueueURL, "queue", "sqlite:.gatehouse/broker-queue.db", "queue: sqlite:PATH or sqs://QUEUE-URL")
	brokerAWSFlags(cmd, &rc.Backend)
	f.StringVar(&rc.AdminAddr, "admin-addr", contract.DefaultWorkerAdminAddr, `admin HTTP listen address; "-" for none`)
	f.IntVar(&cfg.Concurrency, "concurrency", 4, "tasks run at once")
	f.IntVar(&cfg.MaxAttempts, "max-attempts", 5, "deliveries before a task is dead-lettered and its operation failed")
	f.DurationVar(&cfg.PublishWait, "publish-wait", 30*time.Second, "how long one attempt waits for the control plane's report")
	f.DurationVar(&cfg.Visibility, "visibility", 30*time.Second, "queue visibility timeout (extended while working)")
	f.DurationVar(&cfg.UnconfirmedDeleteAfter, "unconfirmed-delete-after", 30*time.Second, "finish a deprovision whose deletion the control plane has not reported after this long (negative: wait for the report)")
	f.StringVar(&rc.DNSZone, "dns-zone", "", "Route 53 hosted zone id: create a CNAME per EdgeRoute host, with a TXT ownership marker, only where no record exists or the marker names the instance (off when empty)")
	f.StringVar(&cfg.DNSOwnerID, "dns-owner-id", "gatehouse", "this deployment's name in the DNS ownership markers (deployments sharing a zone need different ones)")
	f.StringVar(&cfg.DNSTarget, "dns-target", "", "the CNAME target (the edge fleet's name)")
	f.Int64Var(&cfg.DNSTTL, "dns-ttl", 300, "DNS record TTL, seconds")
	f.BoolVar(&rc.DNSDryRun, "dns-dry-run", false, "log the DNS records the step would create or delete instead of changing the zone")
	f.StringVar(&rc.DNSEndpoint, "dns-endpoint", "", "Route 53 endpoint override")
	cflags.register(f, &copts)
	f.StringVar(&rc.CDNOrigin, "cdn-origin", "", "the fleet's load balancer name: instances on plan standard-cdn get a CloudFront distribution with this origin (off when empty)")
	f.StringVar(&rc.CDNCertificateARN, "cdn-certificate-arn", "", "ACM certificate (us-east-1) covering the hosts of CDN distributions")
	f.StringVar(&rc.CDNEndpoint, "cdn-endpoint", "", "CloudFront endpoint override")
	f.BoolVar(&rc.CDNDryRun, "cdn-dry-run", false, "log the CloudFront distributions the step would create, update or delete instead of changing them")
	logFlags(f, &logc, "info", "debug|info|warn|error")
	return cmd
}
