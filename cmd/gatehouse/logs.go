package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"gopkg.in/yaml.v3"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/gatehouse-edge/gatehouse/accesslog"
	"github.com/gatehouse-edge/gatehouse/accesslog/client"
	"github.com/gatehouse-edge/gatehouse/contract"
	"github.com/gatehouse-edge/gatehouse/sidecars/accesslog"
)

// logsFlags are the connection and filter flags shared by the logs
// subcommands; filters map one to one to the query API's parameters.
type logsFlags struct {
	server, tokenFile, output, dataDir string
	filters                            map[string]*string
	limit                              int
}

// DefaultLogsWindow is the time window of the logs commands and of the
// web page when no --since is given.
const DefaultLogsWindow = "15m"

// logsFilterNames are the filter flags: the API's parameters with '-' for
// '_' (the value syntax is the API's: value, prefix*, !value, 4xx).
var logsFilterNames = []string{"since", "until", "route", "subject", "client-ip", "status", "decision", "path-prefix", "path", "method",
	"node", "node-group", "request-id", "apikey-id", "authority", "provider", "auth-kind", "rule", "response-flags", "upstream-cluster", "user-agent", "denied"}

var logsFilterHelp = map[string]string{
	"since":       "start of the window: 15m, 1h, 7d, RFC 3339 or Unix seconds (default " + DefaultLogsWindow + ", as on the page)",
	"until":       "end of the window, same forms as --since (default now)",
	"status":      "status: 403, a class 4xx, or !2xx / !200 to exclude",
	"decision":    "decision: allow, deny or shadow-deny; !allow excludes",
	"path-prefix": "path starts with this (API parameter path_prefix)",
	"denied":      "true: only denied requests (401/403/429 and deny), false: only the others",
}

// registerConn adds the connection flags every logs command has.
func (lf *logsFlags) registerConn(f *pflag.FlagSet) {
	f.StringVar(&lf.server, "server", "http://"+contract.DefaultAccessLogHTTPAddr, "accesslog query API base URL")
	f.StringVar(&lf.tokenFile, "token-file", "", "file holding the API bearer token (or set GATEHOUSE_LOGS_TOKEN; default: <data-dir>/accesslog-token when --server is on loopback)")
	f.StringVar(&lf.dataDir, "data-dir", ".gatehouse", "data directory of a local gatehouse dev, where its token is read from")
}

func (lf *logsFlags) register(f *pflag.FlagSet, outputs string) {
	lf.registerConn(f)
	if outputs != "" {
		f.StringVarP(&lf.output, "output", "o", strings.SplitN(outputs, "|", 2)[0], "output: "+outputs)
	}
	lf.filters = map[string]*string{}
	for _, n := range logsFilterNames {
		help := logsFilterHelp[n]
		if help == "" {
			help = "match " + apiParam(n) + ": value, prefix* or !value (API parameter " + apiParam(n) + ")"
		}
		lf.filters[n] = f.String(n, "", help)
	}
}

// token finds the API token: --token-file, then GATEHOUSE_LOGS_TOKEN,
// then, for a server on loopback only (a local `gatehouse dev`), the dev
// data directory's token file. A dev token is never sent elsewhere.
func (lf *logsFlags) token() (string, error) {
	if lf.tokenFile != "" {
		return client.TokenFromFile(lf.tokenFile)
	}
	if tok := os.Getenv("GATEHOUSE_LOGS_TOKEN"); tok != "" {
		return tok, nil
	}
	devFile := filepath.Join(lf.dataDir, "accesslog-token")
	if isLoopbackURL(lf.server) {
		if _, err := os.Stat(devFile); err == nil {
			return client.TokenFromFile(devFile)
		}
	}
	return "", fmt.Errorf("no API token: pass --token-file, set GATEHOUSE_LOGS_TOKEN, or (for a local `gatehouse dev`) run where %s exists or pass --data-dir", devFile)
}

func (lf *logsFlags) client() (*client.Client, error) {
	tok, err := lf.token()
	if err != nil {
		return nil, err
	}
	return &client.Client{BaseURL: lf.server, Token: tok}, nil
}

// isLoopbackURL reports whether u's host is a loopback address or
// localhost.
func isLoopbackURL(u string) bool {
	p, err := url.Parse(u)
	if err != nil {
		return false
	}
	h := p.Hostname()
	if h == "localhost" {
		return true
	}
	ip, err := netip.ParseAddr(h)
	return err == nil && ip.IsLoopback()
}

func (lf *logsFlags) values() url.Values {
	q := url.Values{}
	for name, v := range lf.filters {
		if *v != "" {
			q.Set(apiParam(name), *v)
		}
	}
	if q.Get("since") == "" {
		q.Set("since", DefaultLogsWindow)
	}
	if lf.limit > 0 {
		q.Set("limit", strconv.Itoa(lf.limit))
	}
	return q
}

func apiParam(flag string) string {
	b := []byte(flag)
	for i := range b {
		if b[i] == '-' {
			b[i] = '_'
		}
	}
	return string(b)
}

func newLogsCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "logs",
		Short: "Query, aggregate, export and verify access logs (query API client)",
	}
	cmd.AddCommand(newLogsQueryCmd(), newLogsStatsCmd(), newLogsExportCmd(), newLogsVerifyCmd(), newLogsOpenCmd())
	return cmd
}

func newLogsQueryCmd() *cobra.Command {
	var lf logsFlags
	var cursor string
	cmd := &cobra.Command{
		Use:   "query",
		Short: "List matching entries, newest first",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := lf.client()
			if err != nil {
				return err
			}
			q := lf.values()
			if cursor != "" {
				q.Set("cursor", cursor)
			}
			switch lf.output {
			case "ndjson", "csv":
				// Rows stream: an export of this page.
				q.Set("format", lf.output)
				if q.Get("limit") == "" {
					q.Set("limit", strconv.Itoa(accesslog.DefaultLimit))
				}
				_, err = c.Export(cmd.Context(), q, cmd.OutOrStdout())
				return err
			case "table", "json", "yaml":
			default:
				return fmt.Errorf("--output %q: want table, json, yaml, ndjson or csv", lf.output)
			}
			r, err := c.Logs(cmd.Context(), q)
			if err != nil {
				return err
			}
			if lf.output == "yaml" {
				return renderYAML(cmd.OutOrStdout(), r)
			}
			if err := client.RenderLogs(cmd.OutOrStdout(), r, lf.output); err != nil {
				return err
			}
			if lf.output == "table" && len(r.Records) == 0 {
				fmt.Fprintf(cmd.OutOrStdout(), "no entries match since %s; widen --since (e.g. --since 24h) or drop filters\n", q.Get("since"))
			}
			return nil
		},
	}
	lf.register(cmd.Flags(), "table|json|yaml|ndjson|csv")
	cmd.Flags().IntVar(&lf.limit, "limit", 0, "rows per page (default 100, max 10000)")
	cmd.Flags().StringVar(&cursor, "cursor", "", "continue after the last row of a previous page")
	return cmd
}

func newLogsStatsCmd() *cobra.Command {
	var lf logsFlags
	var groupBy string
	cmd := &cobra.Command{
		Use:   "stats",
		Short: "Top values of a column with counts, denials and p50/p99 duration",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := lf.client()
			if err != nil {
				return err
			}
			q := lf.values()
			g := apiParam(groupBy)
			if !slices.Contains(accesslog.GroupByColumns, g) {
				return fmt.Errorf("--group-by %q: not one of %s", groupBy, strings.Join(accesslog.GroupByColumns, ", "))
			}
			q.Set("group_by", g)
			if lf.output != "table" && lf.output != "json" && lf.output != "yaml" {
				return fmt.Errorf("--output %q: want table, json or yaml", lf.output)
			}
			r, err := c.Stats(cmd.Context(), q)
			if err != nil {
				return err
			}
			if lf.output == "yaml" {
				return renderYAML(cmd.OutOrStdout(), r)
			}
			if err := client.RenderStats(cmd.OutOrStdout(), r, lf.output); err != nil {
				return err
			}
			if lf.output == "table" {
				fmt.Fprintln(cmd.OutOrStdout(), "(DENIED counts 401, 403 and deny decisions and the 429s of rate limits)")
			}
			return nil
		},
	}
	lf.register(cmd.Flags(), "table|json|yaml")
	cmd.Flags().StringVar(&groupBy, "group-by", "client_ip", "the API's group_by: "+strings.Join(accesslog.GroupByColumns, ", ")+" (client-ip is read as client_ip)")
	cmd.Flags().IntVar(&lf.limit, "limit", 0, "top N (default 10)")
	return cmd
}

func newLogsExportCmd() *cobra.Command {
	var lf logsFlags
	var format, out string
	cmd := &cobra.Command{
		Use:   "export",
		Short: "Stream every matching entry as NDJSON or CSV",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := lf.client()
			if err != nil {
				return err
			}
			q := lf.values()
			if cmd.Flags().Changed("format") {
				lf.output = format
			}
			if lf.output != "ndjson" && lf.output != "csv" {
				return fmt.Errorf("--output %q: want ndjson or csv", lf.output)
			}
			q.Set("format", lf.output)
			w := cmd.OutOrStdout()
			if out != "" && out != "-" {
				f, err := os.OpenFile(out, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o600)
				if err != nil {
					return fmt.Errorf("export: %w", err)
				}
				defer f.Close()
				w = f
			}
			_, err = c.Export(cmd.Context(), q, w)
			return err
		},
	}
	lf.register(cmd.Flags(), "ndjson|csv")
	cmd.Flags().StringVar(&format, "format", "ndjson", "ndjson|csv")
	_ = cmd.Flags().MarkHidden("format") // the old spelling of -o
	cmd.Flags().StringVar(&out, "out", "-", "output file (- for stdout)")
	cmd.Flags().IntVar(&lf.limit, "limit", 0, "at most this many rows (default all)")
	return cmd
}

func newLogsVerifyCmd() *cobra.Command {
	var lf logsFlags
	var store, keyFile string
	var allowUnkeyed, unkeyed bool
	cmd := &cobra.Command{
		Use:   "verify",
		Short: "Check the hash chain of the stored batches; reports the first broken batch",
		Long: "With --store the store is read directly (duckdb:PATH read-only, only while no sidecar writes it; " +
			"or clickhouse://...); otherwise the sidecar at --server verifies its own store.",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if store != "" {
				if keyFile == "" && !unkeyed {
					return errors.New("logs verify --store: give --chain-key-file (the key ring the accesslog sidecar signs with); " +
						"--unkeyed checks a store whose chain was never keyed, which only shows careless edits")
				}
				opts := accesslog.VerifyOptions{AllowUnkeyedPrefix: allowUnkeyed}
				if keyFile != "" {
					keys, err := accesslogsidecar.LoadChainKeys(keyFile, nil)
					if err != nil {
						return err
					}
					opts.Keys = keys
				}
				res, err := accesslogsidecar.VerifyStore(cmd.Context(), store, opts, nil)
				if err != nil {
					return err
				}
				return client.RenderVerify(cmd.OutOrStdout(), &res, lf.output)
			}
			c, err := lf.client()
			if err != nil {
				return err
			}
			res, err := c.Verify(cmd.Context())
			if err != nil {
				return err
			}
			return client.RenderVerify(cmd.OutOrStdout(), res, lf.output)
		},
	}
	f := cmd.Flags()
	lf.registerConn(f)
	f.StringVarP(&lf.output, "output", "o", "table", "output: table|json")
	f.StringVar(&store, "store", "", "verify this store directly: duckdb:PATH or clickhouse://HOST:PORT/DB")
	f.StringVar(&keyFile, "chain-key-file", "", "with --store: the chain key ring the accesslog sidecar signs with (without it only an unkeyed chain verifies)")
	f.BoolVar(&unkeyed, "unkeyed", false, "with --store and no --chain-key-file: verify a chain that was never keyed (anyone who can write the store can recompute it)")
	f.BoolVar(&allowUnkeyed, "allow-unkeyed-prefix", false, "with --store: accept unkeyed batches at the start of a chain (written before the key was set) and the pruned flags of the retention before prune records")
	return cmd
}

func renderYAML(w io.Writer, v any) error {
	// Through JSON, so YAML keys are the API's field names.
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	var generic any
	if err := json.Unmarshal(b, &generic); err != nil {
		return err
	}
	enc := yaml.NewEncoder(w)
	enc.SetIndent(2)
	if err := enc.Encode(generic); err != nil {
		return err
	}
	return enc.Close()
}

func newLogsOpenCmd() *cobra.Command {
	var lf logsFlags
	var printOnly bool
	cmd := &cobra.Command{
		Use:   "open",
		Short: "Open the access-log page in a browser, signed in with the token",
		Long: "Opens <server>/#token=... : the token is in the fragment, which the browser never sends to the server; " +
			"the page moves it into the tab's sessionStorage and removes it from the address bar.",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			tok, err := lf.token()
			if err != nil {
				return err
			}
			page := strings.TrimSuffix(lf.server, "/") + "/#" + url.Values{"token": {tok}}.Encode()
			if !printOnly {
				for _, opener := range []string{"xdg-open", "open"} {
					if p, err := exec.LookPath(opener); err == nil && exec.Command(p, page).Start() == nil {
						fmt.Fprintf(cmd.OutOrStdout(), "opened %s/ in the browser\n", strings.TrimSuffix(lf.server, "/"))
						return nil
					}
				}
			}
			fmt.Fprintf(cmd.OutOrStdout(), "open this address (it carries the token; do not share it):\n%s\n", page)
			return nil
		},
	}
	lf.registerConn(cmd.Flags())
	cmd.Flags().BoolVar(&printOnly, "print", false, "print the address instead of starting a browser")
	return cmd
}
