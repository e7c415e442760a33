package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/gatehouse-edge/gatehouse/authn"
	"github.com/gatehouse-edge/gatehouse/authz"
	"github.com/gatehouse-edge/gatehouse/contract"
	"github.com/gatehouse-edge/gatehouse/controlplane"
	"github.com/gatehouse-edge/gatehouse/controlplane/compile"
	"github.com/gatehouse-edge/gatehouse/controlplane/explain"
	"github.com/gatehouse-edge/gatehouse/controlplane/source"
	"github.com/gatehouse-edge/gatehouse/internal/telemetry"
)

func newExplainCmd() *cobra.Command {
	var (
		specDir, request, group, clientIP string
		controlPlane                      string
		headers, jwksAllow                []string
		asJSON                            bool
		output                            string
	)
	cmd := &cobra.Command{
		Use:   "explain",
		Short: "Explain what happens to one request: matched route, auth requirement, rate-limit descriptors, authz decision",
		Example: `  gatehouse explain --request 'GET https://petstore.example.com/pets' -H 'x-api-key: ...'   (asks a local gatehouse dev)
  gatehouse explain --spec-dir deploy/examples --request 'GET https://petstore.example.com/pets'`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if request == "" {
				return fmt.Errorf("--request is required, e.g. --request 'GET https://petstore.example.com/pets'")
			}
			if specDir != "" && cmd.Flags().Changed("control-plane") {
				return fmt.Errorf("--spec-dir and --control-plane: pass one (the spec files, or the config a running control plane serves)")
			}
			req, err := explain.ParseRequest(request, headers)
			if err != nil {
				return err
			}
			req.ClientIP = clientIP
			var out *explain.Result
			var served string
			if specDir == "" {
				if out, served, err = explainRemote(cmd.Context(), controlPlane, request, headers, group, clientIP); err != nil {
					return err
				}
			} else if out, err = explainLocal(cmd, specDir, group, req, jwksAllow); err != nil {
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
				if served != "" {
					fmt.Fprintf(cmd.OutOrStdout(), "config:       %s\n", served)
				}
				return nil
			}
			return fmt.Errorf("--output %q: want table, json or yaml", output)
		},
	}
	f := cmd.Flags()
	f.StringVar(&specDir, "spec-dir", "", "directory (or file) of EdgeRoute specs to compile here (instead of asking --control-plane)")
	f.StringVar(&controlPlane, "control-plane", "http://"+contract.DefaultControlPlaneAdminAddr, "admin URL of the running control plane whose served config (keys issued by bindings included) explains the request; the default is a local gatehouse dev's")
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

// explainLocal compiles the specs under specDir as the control plane would.
func explainLocal(cmd *cobra.Command, specDir, group string, req explain.Request, jwksAllow []string) (*explain.Result, error) {
	rev, err := source.ReadPaths(specDir)
	if err != nil {
		return nil, err
	}
	c, err := compile.New(compile.Options{})
	if err != nil {
		return nil, err
	}
	res := c.Compile(rev)
	for _, s := range res.Failed() {
		fmt.Fprintf(cmd.ErrOrStderr(), "left out (as the control plane would): %v\n", s.Err)
	}
	var engine *authz.Engine
	if len(req.Headers) > 0 {
		log, err := telemetry.NewLogger(os.Stderr, telemetry.LogConfig{Level: "warn"})
		if err != nil {
			return nil, err
		}
		allow, err := authn.ParseAllowList(jwksAllow)
		if err != nil {
			return nil, fmt.Errorf("--jwks-allow: %w", err)
		}
		if engine, err = authz.NewEngine(authz.Options{Log: log, JWKSAllow: allow}); err != nil {
			return nil, err
		}
		defer engine.Close()
	}
	return explain.Explain(cmd.Context(), res, group, req, engine)
}

// explainRemote asks a running control plane's admin server (POST
// /debug/explain) and returns its explanation and which config served it.
// Credentials in headers go only to a loopback or HTTPS control plane.
func explainRemote(ctx context.Context, base, request string, headers []string, group, clientIP string) (*explain.Result, string, error) {
	u, err := url.Parse(base)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, "", fmt.Errorf("--control-plane %q: want the admin URL, e.g. http://127.0.0.1:18001", base)
	}
	if len(headers) > 0 && u.Scheme != "https" && !isLoopbackURL(base) {
		return nil, "", fmt.Errorf("--control-plane %q: -H may carry a credential, sent only to a control plane on loopback or over https", base)
	}
	body, err := json.Marshal(controlplane.ExplainRequest{Request: request, Headers: headers, NodeGroup: group, ClientIP: clientIP})
	if err != nil {
		return nil, "", err
	}
	endpoint := strings.TrimRight(base, "/") + "/debug/explain"
	hr, err := http.NewRequestWithContext(ctx, http.MethodPost, endpoint, bytes.NewReader(body))
	if err != nil {
		return nil, "", err
	}
	hr.Header.Set("Content-Type", "application/json")
	res, err := (&http.Client{Timeout: 30 * time.Second}).Do(hr)
	if err != nil {
		return nil, "", fmt.Errorf("asking the control plane at %s: %w (is gatehouse dev running? or pass --spec-dir DIR to explain against spec files)", base, err)
	}
	defer res.Body.Close()
	raw, err := io.ReadAll(io.LimitReader(res.Body, 4<<20))
	if err != nil {
		return nil, "", fmt.Errorf("reading the control plane's answer: %w", err)
	}
	if res.StatusCode != http.StatusOK {
		var e struct {
			Error string `json:"error"`
		}
		if json.Unmarshal(raw, &e) != nil || e.Error == "" {
			e.Error = strings.TrimSpace(string(raw))
		}
		return nil, "", fmt.Errorf("the control plane at %s answered %d: %s", base, res.StatusCode, e.Error)
	}
	var er controlplane.ExplainResponse
	if err := json.Unmarshal(raw, &er); err != nil || er.Result == nil {
		return nil, "", fmt.Errorf("the control plane at %s answered 200 without an explanation (%v)", base, err)
	}
	return er.Result, fmt.Sprintf("served by the control plane at %s to node group %s, version %s", base, er.NodeGroup, er.Version), nil
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
