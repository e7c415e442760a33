package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"

	"github.com/spf13/cobra"
	"google.golang.org/protobuf/encoding/protojson"

	"github.com/gatehouse-edge/gatehouse/contract"
	"github.com/gatehouse-edge/gatehouse/controlplane/compile"
	"github.com/gatehouse-edge/gatehouse/controlplane/envoy"
)

func newBootstrapCmd() *cobra.Command {
	var (
		o   envoy.BootstrapOptions
		tls envoy.ClientTLS
	)
	cmd := &cobra.Command{
		Use:   "bootstrap",
		Short: "Print the Envoy bootstrap of a fleet node (ADS to the control plane, sidecar clusters) as JSON",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if o.NodeID == "" {
				h, err := os.Hostname()
				if err != nil {
					return fmt.Errorf("--node-id not given and no hostname: %w", err)
				}
				o.NodeID = h
			}
			if o.NodeGroup == "" || o.XDSServer == "" {
				return fmt.Errorf("--node-group and --xds-server are required")
			}
			if tls != (envoy.ClientTLS{}) {
				o.TLS = &tls
			}
			b, err := envoy.Bootstrap(o)
			if err != nil {
				return err
			}
			if err := compile.ValidateAll(b); err != nil {
				return fmt.Errorf("bootstrap does not validate: %w", err)
			}
			raw, err := protojson.Marshal(b)
			if err != nil {
				return err
			}
			// protojson varies its spacing on purpose; re-indent so the
			// output is byte-stable (checked-in bootstraps are diffed).
			var out bytes.Buffer
			if err := json.Indent(&out, raw, "", "  "); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "%s\n", out.Bytes())
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.NodeGroup, "node-group", "", "node group (node.cluster) of this Envoy")
	f.StringVar(&o.NodeID, "node-id", "", "node id (default: the hostname)")
	f.StringVar(&o.XDSServer, "xds-server", "", "control plane xDS address host:port")
	f.BoolVar(&o.Delta, "delta", false, "use incremental (delta) xDS: after a change only changed resources are sent")
	f.StringVar(&o.AdminAddr, "admin-addr", contract.DefaultEnvoyAdminAddr, "Envoy admin address (keep it on loopback: it can stop and reconfigure Envoy)")
	f.StringVar(&o.HealthAddr, "health-addr", "", "address of a health-check listener answering GET /ready (200 live, 503 draining) for load balancers and probes (empty: none)")
	f.StringVar(&o.Sidecars.Authz, "authz-addr", envoy.DefaultSidecars.Authz, "authz sidecar address")
	f.StringVar(&o.Sidecars.RateLimit, "ratelimit-addr", envoy.DefaultSidecars.RateLimit, "ratelimit sidecar address")
	f.StringVar(&o.Sidecars.AccessLog, "accesslog-addr", envoy.DefaultSidecars.AccessLog, "accesslog sidecar address")
	f.StringVar(&tls.CAFile, "xds-ca-file", "", "CA bundle (path on the node) Envoy verifies the control plane and the sidecars against: mutual TLS on the xds and sidecar clusters")
	f.StringVar(&tls.CertFile, "xds-cert-file", "", "node certificate (path on the node) Envoy presents: URI SAN spiffe://gatehouse/node-group/<node-group>")
	f.StringVar(&tls.KeyFile, "xds-key-file", "", "private key of --xds-cert-file (path on the node)")
	return cmd
}
