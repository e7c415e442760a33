package main

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"sort"
	"strconv"
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
		output                            string
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
				output = "json"
			}
			switch output {
			case "json":
				enc := json.NewEncoder(cmd.OutOrStdout())
				enc.SetIndent("", "  ")
				return enc.Encode(out)
			case "yaml":
				return renderYAML(cmd.OutOrStdout(), out)
			case "table":
				printExplanation(cmd.OutOrStdout(), req, out)
				return nil
			}
			return fmt.Errorf("--output %q: want table, json or yaml", output)
		},
	}
	f := cmd.Flags()
	f.StringVar(&specDir, "spec-dir", "", "directory (or file) of EdgeRoute specs")
	f.StringVar(&request, "request", "", "the request: 'METHOD https://host/path?query'")
	f.StringArrayVarP(&headers, "header", "H", nil, "request header 'name: value' (repeatable); credentials here get an authz decision")
	f.StringVar(&group, "node-group", "default", "node group whose config to use")
	f.StringVar(&clientIP, "client-ip", "127.0.0.1", "client address Envoy would see")
	f.StringSliceVar(&jwksAllow, "jwks-allow", nil, jwksAllowUsage)
	f.StringVarP(&output, "output", "o", "table", "output: table|json|yaml")
	f.BoolVar(&asJSON, "json", false, "print JSON")
	_ = f.MarkHidden("json") // the old spelling of -o json
	return cmd
}

func printExplanation(w io.Writer, req explain.Request, out *explain.Result) {
	fmt.Fprintf(w, "request:      %s %s (host %s, path %s)\n", req.Method, req.URL, out.Host, out.Path)
	if out.VirtualHost == "" || out.Route == "" {
		if out.VirtualHost != "" {
			fmt.Fprintf(w, "virtual host: %s\n", out.VirtualHost)
		}
		fmt.Fprintln(w, "decision:     no route matches: Envoy answers 404 before any auth or rate limit")
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
		fmt.Fprintf(w, ", providers %s", strings.Join(a.Providers, "|"))
		if len(a.ContextExtensions) > 0 {
			fmt.Fprintf(w, ", context %s", keyValues(a.ContextExtensions))
		}
	} else {
		fmt.Fprint(w, ", ext_authz disabled")
	}
	fmt.Fprintln(w)
	for i, r := range a.Rules {
		verb := "deny"
		if r.Allow {
			verb = "allow"
		}
		fmt.Fprintf(w, "  rule %d:     %s", i, verb)
		if len(r.Scopes) > 0 {
			fmt.Fprintf(w, " if scopes include %s", strings.Join(r.Scopes, ", "))
		}
		if len(r.Claims) > 0 {
			fmt.Fprintf(w, " if claims %s", keyValues(r.Claims))
		}
		if r.When != "" {
			fmt.Fprintf(w, " when %s", r.When)
		}
		if len(r.Scopes) == 0 && len(r.Claims) == 0 && r.When == "" {
			fmt.Fprint(w, " (every authenticated caller)")
		}
		fmt.Fprintln(w)
	}
	switch d := out.Decision; {
	case d != nil:
		verdict := "deny"
		if d.Allow {
			verdict = "allow"
		}
		fmt.Fprintf(w, "decision:     %s, status %d (%s: %s)\n", verdict, d.Status, d.Code, d.Reason)
		if len(d.Metadata) > 0 {
			fmt.Fprintf(w, "  metadata:   %s\n", keyValues(d.Metadata))
		}
	case !a.ExtAuthz:
		fmt.Fprintln(w, "decision:     allow (no auth on this route)")
	case a.Mode == "shadow":
		fmt.Fprintln(w, "decision:     allow (mode shadow: evaluated and logged, never denied); pass -H with a credential to see the shadow decision")
	default:
		fmt.Fprintln(w, "decision:     deny, status 401 without credentials; pass -H 'authorization: Bearer ...' or -H 'x-api-key: ...' to evaluate one")
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

// keyValues prints a map as sorted k=v pairs (never Go's map[...] form).
func keyValues(m map[string]string) string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	parts := make([]string, len(keys))
	for i, k := range keys {
		parts[i] = k + "=" + strconv.Quote(m[k])
	}
	return strings.Join(parts, " ")
}
