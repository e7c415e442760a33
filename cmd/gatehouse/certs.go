package main

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/spf13/cobra"

	"github.com/gatehouse-edge/gatehouse/internal/tlsconfig"
)

// newCertsCmd is `gatehouse certs`: a small internal CA for the mutual TLS
// of xDS and the sidecars (docs/DEPLOY.md, rotating the internal CA).
func newCertsCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "certs",
		Short: "Issue the internal CA and its node and server certificates (mutual TLS of xDS and the sidecars)",
	}
	cmd.AddCommand(newCertsCACmd(), newCertsNodeCmd(), newCertsServerCmd())
	return cmd
}

func newCertsCACmd() *cobra.Command {
	var (
		outDir, name string
		validity     time.Duration
	)
	cmd := &cobra.Command{
		Use:   "ca",
		Short: "Mint a CA: <out-dir>/ca.crt and ca.key (0600); an existing CA is never overwritten",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			crt, key := filepath.Join(outDir, "ca.crt"), filepath.Join(outDir, "ca.key")
			for _, f := range []string{crt, key} {
				if _, err := os.Stat(f); err == nil {
					return fmt.Errorf("%s exists: refusing to overwrite a CA (move it away to mint a new one)", f)
				}
			}
			ca, err := tlsconfig.NewCA(name, validity, time.Now())
			if err != nil {
				return err
			}
			kp, err := ca.KeyPEM()
			if err != nil {
				return err
			}
			if err := tlsconfig.WritePair(crt, ca.CertPEM(), key, kp); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "%s\n%s\n", crt, key)
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&outDir, "out-dir", ".", "directory to write ca.crt and ca.key into")
	f.StringVar(&name, "name", "Gatehouse internal CA", "CA common name")
	f.DurationVar(&validity, "validity", 5*365*24*time.Hour, "how long the CA is valid")
	return cmd
}

// caFlags are the flags of the commands that issue from a CA.
type caFlags struct {
	cert, key, outDir, name string
	validity                time.Duration
}

func (c *caFlags) add(cmd *cobra.Command, what string) {
	f := cmd.Flags()
	f.StringVar(&c.cert, "ca-cert", "ca.crt", "CA certificate (PEM)")
	f.StringVar(&c.key, "ca-key", "ca.key", "CA private key (PEM)")
	f.StringVar(&c.outDir, "out-dir", ".", "directory to write <name>.crt and <name>.key (0600) into")
	f.StringVar(&c.name, "name", "", what+" name: the certificate's common name and file name (required)")
	f.DurationVar(&c.validity, "validity", 365*24*time.Hour, "how long the certificate is valid (at most the CA's remaining validity)")
}

func (c *caFlags) issue(cmd *cobra.Command, mint func(*tlsconfig.CA) (*tlsconfig.Issued, error)) error {
	if c.name == "" {
		return errors.New("--name is required")
	}
	if err := tlsconfig.ValidGroup(c.name); err != nil {
		return fmt.Errorf("--name: %w", err)
	}
	ca, err := tlsconfig.LoadCA(c.cert, c.key)
	if err != nil {
		return err
	}
	iss, err := mint(ca)
	if err != nil {
		return err
	}
	crt, key := filepath.Join(c.outDir, c.name+".crt"), filepath.Join(c.outDir, c.name+".key")
	if err := iss.Write(crt, key); err != nil {
		return err
	}
	fmt.Fprintf(cmd.OutOrStdout(), "%s\n%s\n", crt, key)
	return nil
}

func newCertsNodeCmd() *cobra.Command {
	var (
		c     caFlags
		group string
	)
	cmd := &cobra.Command{
		Use:   "node",
		Short: "Issue a node certificate of a node group (URI SAN spiffe://gatehouse/node-group/<group>) for an Envoy or a sidecar",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if group == "" {
				return errors.New("--group is required")
			}
			return c.issue(cmd, func(ca *tlsconfig.CA) (*tlsconfig.Issued, error) {
				return ca.IssueNode(c.name, group, c.validity, time.Now())
			})
		},
	}
	c.add(cmd, "node")
	cmd.Flags().StringVar(&group, "group", "", "node group (node.cluster) the holder belongs to (required)")
	return cmd
}

func newCertsServerCmd() *cobra.Command {
	var (
		c     caFlags
		hosts []string
	)
	cmd := &cobra.Command{
		Use:   "server",
		Short: "Issue a server certificate (DNS and IP SANs) for the control plane, a sidecar, the broker or the query API",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return c.issue(cmd, func(ca *tlsconfig.CA) (*tlsconfig.Issued, error) {
				return ca.IssueServer(c.name, hosts, c.validity, time.Now())
			})
		},
	}
	c.add(cmd, "server")
	cmd.Flags().StringSliceVar(&hosts, "host", nil, "DNS name or IP address the server is reached at (repeatable, required)")
	return cmd
}
