package main

import (
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"time"

	"github.com/spf13/cobra"

	"github.com/gatehouse-edge/gatehouse/internal/tlsconfig"
)

// newHealthcheckCmd is the probe of container images that ship no curl:
// `gatehouse healthcheck http://127.0.0.1:9091/readyz` exits 0 on a 2xx
// answer and 1 otherwise, so a HEALTHCHECK or a Kubernetes exec probe can
// reach an admin port that listens on loopback only.
func newHealthcheckCmd() *cobra.Command {
	var (
		timeout time.Duration
		raw     string
		caFile  string
	)
	cmd := &cobra.Command{
		Use:   "healthcheck [URL]",
		Short: "GET an admin URL (e.g. http://127.0.0.1:9091/readyz); exit 0 on 2xx, 1 otherwise",
		Args:  cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if len(args) == 1 {
				raw = args[0]
			}
			if raw == "" {
				return fmt.Errorf("healthcheck: no URL (argument, --url or GATEHOUSE_HEALTHCHECK_URL)")
			}
			u, err := url.Parse(raw)
			if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
				return fmt.Errorf("healthcheck: want an http(s) URL such as http://127.0.0.1:9091/readyz")
			}
			if u.User != nil {
				return fmt.Errorf("healthcheck: the URL must not carry credentials")
			}
			ctx, cancel := context.WithTimeout(cmd.Context(), timeout)
			defer cancel()
			req, err := http.NewRequestWithContext(ctx, http.MethodGet, u.String(), nil)
			if err != nil {
				return err
			}
			hc := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
			if caFile != "" {
				// An https port of a role serving the internal CA's certificate.
				pool, err := tlsconfig.LoadPool(caFile)
				if err != nil {
					return fmt.Errorf("healthcheck: --ca-file: %w", err)
				}
				hc.Transport = &http.Transport{TLSClientConfig: &tls.Config{MinVersion: tls.VersionTLS12, RootCAs: pool}}
			}
			resp, err := hc.Do(req)
			if err != nil {
				return fmt.Errorf("healthcheck %s: %w", u.Redacted(), err)
			}
			defer resp.Body.Close()
			body, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
			if resp.StatusCode < 200 || resp.StatusCode > 299 {
				return fmt.Errorf("healthcheck %s: %s %s", u.Redacted(), resp.Status, body)
			}
			fmt.Fprintf(cmd.OutOrStdout(), "%s %s\n", u.Redacted(), resp.Status)
			return nil
		},
	}
	cmd.Flags().StringVar(&raw, "url", "", "URL to check when none is given as an argument")
	cmd.Flags().StringVar(&caFile, "ca-file", "", "PEM CA bundle an https URL's certificate is verified against (default: system roots)")
	cmd.Flags().DurationVar(&timeout, "timeout", 3*time.Second, "give up after this long")
	return cmd
}
