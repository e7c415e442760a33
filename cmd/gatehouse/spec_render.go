package main

import (
	"fmt"

	"github.com/spf13/cobra"

	"github.com/gatehouse-edge/gatehouse/contract"
	"github.com/gatehouse-edge/gatehouse/controlplane/compile"
	"github.com/gatehouse-edge/gatehouse/controlplane/envoy"
	"github.com/gatehouse-edge/gatehouse/controlplane/source"
)

func newSpecRenderCmd() *cobra.Command {
	var (
		group string
		opts  compile.Options
	)
	cmd := &cobra.Command{
		Use:   "render FILE|DIR...",
		Short: "Compile EdgeRoute specs and print one node group's Envoy and sidecar resources as JSON",
		Args:  cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			rev, err := source.ReadPaths(args...)
			if err != nil {
				return err
			}
			c, err := compile.New(opts)
			if err != nil {
				return err
			}
			res := c.Compile(rev)
			if failed := res.Failed(); len(failed) > 0 {
				for _, s := range failed {
					fmt.Fprintln(cmd.ErrOrStderr(), s.Err)
				}
				fmt.Fprintf(cmd.ErrOrStderr(), "%d of %d spec(s) failed; nothing rendered\n", len(failed), len(res.Specs))
				return exitCode(1)
			}
			r, warnings, err := res.Resources(group)
			if err != nil {
				return err
			}
			out, err := compile.Render(group, res.GroupVersion(group), r, warnings)
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "%s\n", out)
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&group, "node-group", "default", "node group (Envoy node.cluster) to render for; specs without nodeGroups serve every group")
	f.StringVar(&opts.HTTPAddress, "listener-addr", contract.DefaultEnvoyHTTPAddr, "address the Envoy HTTP listener binds")
	f.StringVar(&opts.HTTPSAddress, "https-listener-addr", contract.DefaultEnvoyHTTPSAddr, "address the Envoy HTTPS listener binds (when a spec names a certificate)")
	f.StringVar(&opts.CertDir, "cert-dir", "", "directory of the certificates specs name in spec.tls.certificate, as NAME.crt and NAME.key (PEM); private keys are rendered as \"[redacted]\"")
	f.StringVar(&opts.Sidecars.Authz, "authz-addr", envoy.DefaultSidecars.Authz, "authz sidecar address")
	f.StringVar(&opts.Sidecars.RateLimit, "ratelimit-addr", envoy.DefaultSidecars.RateLimit, "ratelimit sidecar address")
	f.StringVar(&opts.Sidecars.AccessLog, "accesslog-addr", envoy.DefaultSidecars.AccessLog, "accesslog sidecar address")
	f.StringVar(&opts.Upstream.CAFile, "upstream-ca-file", "/etc/ssl/certs/ca-certificates.crt", "CA bundle for TLS upstreams (empty: no verification)")
	return cmd
}
