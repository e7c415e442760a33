package main

import (
	"fmt"
	"os"
	"time"

	"github.com/spf13/cobra"

	"github.com/gatehouse-edge/gatehouse/dev"
	"github.com/gatehouse-edge/gatehouse/internal/telemetry"
)

func newDevCmd() *cobra.Command {
	c := dev.DefaultConfig()
	var logc telemetry.LogConfig
	cmd := &cobra.Command{
		Use:   "dev",
		Short: "Run the whole suite in one process on embedded stores (for trying Gatehouse)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			log, err := telemetry.NewLogger(os.Stderr, logc)
			if err != nil {
				return err
			}
			c.Out, c.Log = cmd.OutOrStdout(), log
			return dev.Run(cmd.Context(), c)
		},
	}
	f := cmd.Flags()
	cmd.PersistentFlags().StringVar(&c.DataDir, "data-dir", c.DataDir, "directory of the embedded stores (and of the demo IdP key)")
	f.StringVar(&c.ExamplesDir, "examples", c.ExamplesDir, "specs provisioned on first start (empty: none)")
	f.StringVar(&c.NodeGroup, "node-group", c.NodeGroup, "node group (node.cluster) of the dev sidecars and of an Envoy you attach")
	f.StringVar(&c.BrokerAddr, "broker-addr", c.BrokerAddr, "OSB API address")
	f.StringVar(&c.BrokerAdminAddr, "broker-admin-addr", c.BrokerAdminAddr, "broker admin address (/metrics, /healthz, /readyz)")
	f.StringVar(&c.XDSAddr, "xds-addr", c.XDSAddr, "control plane xDS address")
	f.StringVar(&c.ControlPlaneAdminAddr, "controlplane-admin-addr", c.ControlPlaneAdminAddr, "control plane admin and /debug address")
	f.StringVar(&c.AuthzAddr, "authz-addr", c.AuthzAddr, "authz sidecar gRPC address")
	f.StringVar(&c.AuthzAdminAddr, "authz-admin-addr", c.AuthzAdminAddr, "authz sidecar admin address")
	f.StringVar(&c.RateLimitAddr, "ratelimit-addr", c.RateLimitAddr, "ratelimit sidecar gRPC address")
	f.StringVar(&c.RateLimitAdmin, "ratelimit-admin-addr", c.RateLimitAdmin, "ratelimit sidecar admin address")
	f.StringVar(&c.AccessLogGRPCAddr, "accesslog-addr", c.AccessLogGRPCAddr, "accesslog sidecar ALS gRPC address")
	f.StringVar(&c.AccessLogAPI, "accesslog-api-addr", c.AccessLogAPI, "access-log query API and web page address")
	f.StringVar(&c.FrontDoorAddr, "front-door-addr", c.FrontDoorAddr, "front door address: plays an Envoy of the node group for curl (empty: none; production runs Envoy)")
	f.StringVar(&c.EnvoyListenerAddr, "envoy-listener-addr", c.EnvoyListenerAddr, "address the compiled Envoy listener binds")
	f.StringVar(&c.IdPAddr, "idp-addr", c.IdPAddr, "demo identity provider address")
	f.StringVar(&c.EchoAddr, "echo-addr", c.EchoAddr, "demo echo upstream address")
	f.StringSliceVar(&c.JWKSAllow, "jwks-allow", nil, jwksAllowUsage+"; the demo IdP (--idp-addr) is always allowed")
	logFlags(f, &logc, "warn", "debug|info|warn|error (info shows every role's activity)")
	cmd.AddCommand(newDevTokenCmd(&c.DataDir))
	cmd.Flags().SortFlags = false
	return cmd
}

func newDevTokenCmd(dataDir *string) *cobra.Command {
	var r dev.TokenRequest
	cmd := &cobra.Command{
		Use:   "token",
		Short: "Mint a token from the demo identity provider (valid for the petstore example)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			idp, err := dev.LoadIdP(*dataDir)
			if err != nil {
				return err
			}
			tok, err := idp.Mint(r, time.Now())
			if err != nil {
				return err
			}
			fmt.Fprintln(cmd.OutOrStdout(), tok)
			return nil
		},
	}
	cmd.Flags().StringVar(&r.Subject, "sub", "", "subject (sub claim)")
	cmd.Flags().StringSliceVar(&r.Scopes, "scope", nil, "scope (repeatable)")
	cmd.Flags().StringSliceVar(&r.Groups, "group", nil, "groups claim entry (repeatable)")
	cmd.Flags().DurationVar(&r.TTL, "ttl", time.Hour, "lifetime")
	return cmd
}
