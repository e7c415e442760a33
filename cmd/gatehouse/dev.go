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
	c := dev.Config{}
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
	f.StringVar(&c.DataDir, "data-dir", ".gatehouse", "directory of the embedded stores")
	f.StringVar(&c.ExamplesDir, "examples", "deploy/examples", "specs provisioned on first start")
	f.StringVar(&c.IdPAddr, "idp-addr", "127.0.0.1:9081", "demo identity provider address")
	f.StringVar(&c.EchoAddr, "echo-addr", "127.0.0.1:9080", "demo echo upstream address")
	f.StringVar(&logc.Level, "log-level", "info", "debug|info|warn|error")
	f.StringVar(&logc.Format, "log-format", "text", "text|json")
	cmd.AddCommand(newDevTokenCmd(&c.DataDir))
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
