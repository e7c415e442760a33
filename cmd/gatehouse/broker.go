package main

import (
	"crypto/tls"
	"fmt"
	"net"
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/gatehouse-edge/gatehouse/broker"
	"github.com/gatehouse-edge/gatehouse/broker/backend"
	"github.com/gatehouse-edge/gatehouse/contract"
	"github.com/gatehouse-edge/gatehouse/controlplane/compile"
	"github.com/gatehouse-edge/gatehouse/internal/telemetry"
	"github.com/gatehouse-edge/gatehouse/internal/tlsconfig"
)

// brokerPassword reads a secret from a file (trailing newline trimmed).
func brokerPassword(path, what string) (string, error) {
	if path == "" {
		return "", fmt.Errorf("--%s is required", what)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return "", fmt.Errorf("--%s: %w", what, err)
	}
	p := strings.TrimRight(string(b), "\r\n")
	if p == "" {
		return "", fmt.Errorf("--%s: %s is empty", what, path)
	}
	return p, nil
}

func newBrokerCmd() *cobra.Command {
	var (
		cfg           broker.Config
		logc          telemetry.LogConfig
		passwordFile  string
		tenantFiles   tenancyFiles
		upstreamAllow []string
		tlsc          tlsconfig.Server
	)
	cmd := &cobra.Command{
		Use:   "broker",
		Short: "Run the Open Service Broker (v2.17) API: product teams provision EdgeRoutes and API keys",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			log, err := telemetry.NewLogger(os.Stderr, logc)
			if err != nil {
				return err
			}
			if cfg.Password, err = brokerPassword(passwordFile, "password-file"); err != nil {
				return err
			}
			if cfg.Tenancy, err = tenantFiles.load(); err != nil {
				return err
			}
			if cfg.UpstreamAllow, err = parseUpstreamAllow(upstreamAllow); err != nil {
				return err
			}
			cfg.NodeServices = compile.NodeServices(compile.Options{})
			cfg.Log, cfg.Registry = log, telemetry.NewRegistry()
			if cfg.HTTPListener, err = httpsListener(cfg.HTTPAddr, "--http-addr", "broker OSB API", tlsc); err != nil {
				return err
			}
			return broker.Run(cmd.Context(), cfg)
		},
	}
	f := cmd.Flags()
	f.StringVar(&cfg.HTTPAddr, "http-addr", contract.DefaultBrokerAddr, "OSB API listen address")
	f.StringVar(&cfg.AdminAddr, "admin-addr", contract.DefaultBrokerAdminAddr, `admin HTTP listen address (/metrics, /healthz, /readyz); "-" for none`)
	f.StringVar(&cfg.StoreURL, "store", "sqlite:.gatehouse/broker-store.db", "store: sqlite:PATH or dynamodb://TABLE")
	f.StringVar(&cfg.QueueURL, "queue", "sqlite:.gatehouse/broker-queue.db", "queue: sqlite:PATH or sqs://QUEUE-URL")
	f.StringVar(&cfg.Username, "username", "broker", "basic-auth user name")
	f.StringVar(&passwordFile, "password-file", "", "file holding the basic-auth password (required)")
	brokerAWSFlags(cmd, &cfg.Backend)
	f.DurationVar(&cfg.BindWait, "bind-wait", 20*time.Second, "how long PUT binding waits for the key to go live (then 201; past it 202 with accepts_incomplete=true, else 201 anyway)")
	f.StringVar(&cfg.BindingKeyFile, "binding-key-file", "", "file (mode 0600) with the AES-256 key, 64 hex digits, that seals the API key of a bind answered 202 until GET binding fetches it; empty: a per-process key")
	f.DurationVar(&cfg.PendingKeyTTL, "pending-key-ttl", 24*time.Hour, "how long the key of a bind answered 202 waits, sealed, to be fetched before it is wiped")
	f.DurationVar(&cfg.SweepInterval, "sweep-interval", 5*time.Second, "outbox sweeper interval")
	f.DurationVar(&cfg.OpDeadline, "op-deadline", time.Hour, "fail operations no worker finished within this (their message was lost); negative: never")
	tenantFiles.flags(f)
	upstreamAllowFlag(f, &upstreamAllow)
	f.StringVar(&tlsc.CertFile, "tls-cert-file", "", "PEM certificate (chain): serve the OSB API over HTTPS (empty: plain HTTP, loopback addresses only)")
	f.StringVar(&tlsc.KeyFile, "tls-key-file", "", "PEM private key of --tls-cert-file")
	f.BoolVar(&tlsc.Insecure, "insecure", false, "allow plain HTTP on a non-loopback listen address")
	logFlags(f, &logc, "info", "debug|info|warn|error")
	return cmd
}

// httpsListener listens on addr, with TLS when s has a certificate; plain
// HTTP is refused off loopback unless s.Insecure.
func httpsListener(addr, flag, what string, s tlsconfig.Server) (net.Listener, error) {
	if err := s.CheckListen(flag, addr); err != nil {
		return nil, err
	}
	tc, err := s.Config(what)
	if err != nil {
		return nil, err
	}
	l, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("%s: listening on %s: %w", what, addr, err)
	}
	if tc != nil {
		l = tls.NewListener(l, tc)
	}
	return l, nil
}

func brokerAWSFlags(cmd *cobra.Command, o *backend.Options) {
	f := cmd.Flags()
	f.StringVar(&o.AWSEndpoint, "aws-endpoint", "", "AWS endpoint override for DynamoDB and SQS (emulators, VPC endpoints); credentials and region come from the standard AWS config chain")
	f.StringVar(&o.DynamoDBEndpoint, "dynamodb-endpoint", "", "DynamoDB endpoint override (wins over --aws-endpoint)")
	f.StringVar(&o.SQSEndpoint, "sqs-endpoint", "", "SQS endpoint override (wins over --aws-endpoint; an http:// queue URL is its own endpoint)")
	f.StringVar(&o.AWSRegion, "aws-region", "", "AWS region override")
	f.StringVar(&o.DeadLetterURL, "dlq", "", "SQS dead-letter queue URL (default: the queue URL + \"-dlq\")")
	f.BoolVar(&o.CreateResources, "aws-create", false, "create the DynamoDB table and SQS queues if missing")
}
