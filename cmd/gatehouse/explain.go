package main

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/spf13/cobra"

	"github.com/gatehouse-edge/gatehouse/authn"
	"github.com/gatehouse-edge/gatehouse/authz"
	"github.com/gatehouse-edge/gatehouse/controlplane/compile"
	"github.com/gatehouse-edge/gatehouse/controlplane/explain"
	"github.com/gatehouse-edge/gatehouse/controlplane/source"
	"github.com/gatehouse-edge/gatehouse/internal/telemetry"
)

func newExplainCmd() *cobra.Command {
	var (
		specDir, request, group, clientIP string
		headers, jwksAllow                []string
		asJSON                            bool
	)
	cmd := &cobra.Command{
		Use:   "explain",
		Short: "Explain what happens to one request: matched route, auth requirement, rate-limit descriptors, authz decision",
		Example: `  gatehouse explain --spec-dir deploy/examples --request 'GET https://petstore.example.com/pets'
  gatehouse explain --spec-dir deploy/examples --request 'GET https://petstore.example.com/pets' -H 'x-api-key: ...'`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if specDir == "" || request == "" {
				return fmt.Errorf("--spec-dir and --request are required")
			}
			req, err := explain.ParseRequest(request, headers)
			if err != nil {
				return err
			}
			req.ClientIP = clientIP
			rev, err := source.ReadPaths(specDir)
			if err != nil {
				return err
			}
			c, err := compile.New(compile.Options{})
			if err != nil {
				return err
			}
			res := c.Compile(rev)
			for _, s := range res.Failed() {
				fmt.Fprintf(cmd.ErrOrStderr(), "left out (as the control plane would): %v\n", s.Err)
			}
			var engine *authz.Engine
			if len(req.Headers) > 0 {
				log, err := telemetry.NewLogger(os.Stderr, telemetry.LogConfig{Level: "warn"})
				if err != nil {
					return err
				}
				allow, err := authn.ParseAllowList(jwksAllow)
				if err != nil {
					return fmt.Errorf("--jwks-allow: %w", err)
				}
				if engine, err = authz.NewEngine(authz.Options{Log: log, JWKSAllow: allow}); err != nil {
					return err
				}
				defer engine.Close()
			}
			out, err := explain.Explain(cmd.Context(), res, group, req, engine)
			if err != nil {
				return err
			}
			if asJSON {
				enc := json.NewEncoder(cmd.OutOrStdout())
				enc.SetIndent("", "  ")
				return enc.Encode(out)
			}
			printExplanation(cmd.OutOrStdout(), req, out)
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&specDir, "spec-dir", "", "directory (or file) of EdgeRoute specs")
	f.StringVar(&request, "request", "", "the request: 'METHOD https://host/path?query'")
	f.StringArrayVarP(&headers, "header", "H", nil, "request header 'name: value' (repeatable); credentials here get an authz decision")
	f.StringVar(&group, "node-group", "default", "node group whose config to use")
	f.StringVar(&clientIP, "client-ip", "127.0.0.1", "client address Envoy would see")
	f.StringSliceVar(&jwksAllow, "jwks-allow", nil, jwksAllowUsage)
	f.BoolVar(&asJSON, "json", false, "print JSON")
	return cmd
}

func printExplanation(w io.Writer, req explain.Request, out *explain.Result) {
	fmt.Fprintf(w, "request:      %s %s (host %s, path %s)\n", req.Method, req.URL, out.Host, out.Path)
	if out.VirtualHost == "" || out.Route == "" {
		if out.VirtualHost != "" {
			fmt.Fprintf(w, "virtual host: %s\n", out.VirtualHost)
		}
		for _, n := range out.Notes {
			fmt.Fprintf(w, "note:         %s\n", n)
		}
		return
	}
	fmt.Fprintf(w, "virtual host: %s\nroute:        %s → cluster %s (timeout %s", out.VirtualHost, out.Route, out.Cluster, out.Timeout)
	if out.Rewrite != "" {
		fmt.Fprintf(w, ", prefix rewrite %s", out.Rewrite)
	}
	fmt.Fprintln(w, ")")
	a := out.Auth
	fmt.Fprintf(w, "auth:         mode %s", a.Mode)
	if a.ExtAuthz {
		fmt.Fprintf(w, ", providers %s, context %v", strings.Join(a.Providers, "|"), a.ContextExtensions)
	} else {
		fmt.Fprint(w, ", ext_authz disabled")
	}
	fmt.Fprintln(w)
	for i, r := range a.Rules {
		fmt.Fprintf(w, "  rule %d:     allow=%v scopes=%v claims=%v when=%q\n", i, r.Allow, r.Scopes, r.Claims, r.When)
	}
	if d := out.Decision; d != nil {
		fmt.Fprintf(w, "decision:     allow=%v status %d (%s: %s)\n", d.Allow, d.Status, d.Code, d.Reason)
		if len(d.Metadata) > 0 {
			fmt.Fprintf(w, "  metadata:   %v\n", d.Metadata)
		}
	}
	for _, d := range out.RateLimits {
		var parts []string
		for _, e := range d.Entries {
			parts = append(parts, fmt.Sprintf("(%s, %s)", e[0], e[1]))
		}
		fmt.Fprintf(w, "rate limit:   %s %d per %s %s/%s shadow=%v\n  descriptor: %s\n", d.Limit, d.Requests, d.Window, d.Algorithm, d.Scope, d.Shadow, strings.Join(parts, " "))
		if !d.Sent {
			fmt.Fprintf(w, "  not sent:   %s\n", d.Why)
		}
	}
	for _, n := range out.Notes {
		fmt.Fprintf(w, "note:         %s\n", n)
	}
}
