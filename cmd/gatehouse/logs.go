package main

import (
	"errors"
	"fmt"
	"net/url"
	"os"
	"strconv"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/gatehouse-edge/gatehouse/accesslog"
	"github.com/gatehouse-edge/gatehouse/accesslog/client"
	accesslogsidecar "github.com/gatehouse-edge/gatehouse/sidecars/accesslog"
)

// logsFlags are the connection and filter flags shared by the logs
// subcommands; filters map one to one to the query API's parameters.
type logsFlags struct {
	server, tokenFile, output string
	filters                   map[string]*string
	limit                     int
}

var logsFilterNames = []string{"since", "until", "route", "subject", "client-ip", "status", "decision", "path-prefix", "method", "node", "request-id", "apikey-id", "denied"}

func (lf *logsFlags) register(f *pflag.FlagSet, withOutput bool) {
	f.StringVar(&lf.server, "server", "http://127.0.0.1:9003", "accesslog query API base URL")
	f.StringVar(&lf.tokenFile, "token-file", "", "file holding the API bearer token (or set GATEHOUSE_LOGS_TOKEN)")
	if withOutput {
		f.StringVarP(&lf.output, "output", "o", "table", "table|json")
	}
	lf.filters = map[string]*string{}
	for _, n := range logsFilterNames {
		lf.filters[n] = f.String(n, "", "filter: "+n+map[string]string{"since": " (15m, 1h, 7d, RFC 3339; default 24h)", "until": " (default now)", "denied": " (true|false)"}[n])
	}
}

func (lf *logsFlags) client() (*client.Client, error) {
	tok := os.Getenv("GATEHOUSE_LOGS_TOKEN")
	if lf.tokenFile != "" {
		var err error
		if tok, err = client.TokenFromFile(lf.tokenFile); err != nil {
			return nil, err
		}
	}
	if tok == "" {
		return nil, errors.New("no API token: pass --token-file or set GATEHOUSE_LOGS_TOKEN")
	}
	return &client.Client{BaseURL: lf.server, Token: tok}, nil
}

func (lf *logsFlags) values() url.Values {
	q := url.Values{}
	for name, v := range lf.filters {
		if *v != "" {
			q.Set(apiParam(name), *v)
		}
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
	cmd.AddCommand(newLogsQueryCmd(), newLogsStatsCmd(), newLogsExportCmd(), newLogsVerifyCmd())
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
			r, err := c.Logs(cmd.Context(), q)
			if err != nil {
				return err
			}
			return client.RenderLogs(cmd.OutOrStdout(), r, lf.output)
		},
	}
	lf.register(cmd.Flags(), true)
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
			q.Set("group_by", groupBy)
			r, err := c.Stats(cmd.Context(), q)
			if err != nil {
				return err
			}
			return client.RenderStats(cmd.OutOrStdout(), r, lf.output)
		},
	}
	lf.register(cmd.Flags(), true)
	cmd.Flags().StringVar(&groupBy, "group-by", "client_ip", "client_ip|subject|route|status|decision|node|apikey_id|method|authority|response_flags")
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
			q.Set("format", format)
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
	lf.register(cmd.Flags(), false)
	cmd.Flags().StringVar(&format, "format", "ndjson", "ndjson|csv")
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
	f.StringVar(&lf.server, "server", "http://127.0.0.1:9003", "accesslog query API base URL")
	f.StringVar(&lf.tokenFile, "token-file", "", "file holding the API bearer token (or set GATEHOUSE_LOGS_TOKEN)")
	f.StringVarP(&lf.output, "output", "o", "table", "table|json")
	f.StringVar(&store, "store", "", "verify this store directly: duckdb:PATH or clickhouse://HOST:PORT/DB")
	f.StringVar(&keyFile, "chain-key-file", "", "with --store: the chain key ring the accesslog sidecar signs with (without it only an unkeyed chain verifies)")
	f.BoolVar(&unkeyed, "unkeyed", false, "with --store and no --chain-key-file: verify a chain that was never keyed (anyone who can write the store can recompute it)")
	f.BoolVar(&allowUnkeyed, "allow-unkeyed-prefix", false, "with --store: accept unkeyed batches at the start of a chain (written before the key was set) and the pruned flags of the retention before prune records")
	return cmd
}
