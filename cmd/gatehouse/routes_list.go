package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/gatehouse-edge/gatehouse/broker/osbclient"
)

// outputFlag registers the one output flag of the routes and keys
// commands: -o table|json|yaml.
func outputFlag(cmd *cobra.Command, output *string) {
	cmd.Flags().StringVarP(output, "output", "o", "table", "output: table|json|yaml")
}

// render writes v as JSON or YAML, or calls table for the table form.
func render(w io.Writer, output string, v any, table func() error) error {
	switch output {
	case "json":
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		return enc.Encode(v)
	case "yaml":
		return renderYAML(w, v)
	case "table":
		return table()
	}
	return fmt.Errorf("--output %q: want table, json or yaml", output)
}

// opResult is the outcome of one broker operation, for -o json|yaml.
type opResult struct {
	Route       string `json:"route"`
	Key         string `json:"key,omitempty"`
	Result      string `json:"result"` // accepted, unchanged, refused, succeeded, failed, deleted, revoked, does not exist
	Operation   string `json:"operation,omitempty"`
	Description string `json:"description,omitempty"`
}

// final records an operation's end as finish prints it.
func (r *opResult) final(f *osbclient.Response) {
	switch {
	case f.Code == http.StatusGone && r.Key != "":
		r.Result = "revoked"
	case f.Code == http.StatusGone:
		r.Result = "deleted"
	default:
		r.Result, r.Description = f.State, f.Description
	}
}

// textOut is where a command's human-readable lines go: stdout for -o
// table; stderr for json and yaml, whose stdout is the document alone.
func textOut(cmd *cobra.Command, output string) (io.Writer, io.Writer) {
	if output == "table" {
		return cmd.OutOrStdout(), cmd.ErrOrStderr()
	}
	return cmd.ErrOrStderr(), cmd.ErrOrStderr()
}

// renderResults prints the operations' outcomes for -o json|yaml (the
// table form has printed them line by line already).
func renderResults(w io.Writer, output string, results []opResult) error {
	return render(w, output, map[string]any{"results": results}, func() error { return nil })
}

func checkOutput(output string) error {
	return render(io.Discard, output, nil, func() error { return nil })
}

func newRoutesListCmd(o *osbFlags) *cobra.Command {
	var output string
	cmd := &cobra.Command{
		Use:   "list",
		Short: "List the EdgeRoutes in the route store: state, hosts, live revision, last error",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := checkOutput(output); err != nil {
				return err
			}
			c, err := o.client()
			if err != nil {
				return err
			}
			routes, err := c.Routes(cmd.Context())
			if err != nil {
				return brokerError("", err)
			}
			w := cmd.OutOrStdout()
			return render(w, output, map[string]any{"routes": routes}, func() error {
				tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
				fmt.Fprintln(tw, "NAME\tSTATE\tLIVE REVISION\tHOSTS\tLAST ERROR")
				for _, r := range routes {
					fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", r.ID, r.State, revision(r.LiveRevision), strings.Join(r.Hosts, ","), dash(oneLine(r.LastError)))
				}
				return tw.Flush()
			})
		},
	}
	outputFlag(cmd, &output)
	return cmd
}

func newKeysListCmd(o *osbFlags) *cobra.Command {
	var output string
	cmd := &cobra.Command{
		Use:   "list ROUTE",
		Short: "List a route's API keys: id, provider, labels, created (never the key)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := checkOutput(output); err != nil {
				return err
			}
			c, err := o.client()
			if err != nil {
				return err
			}
			keys, err := c.Keys(cmd.Context(), args[0])
			if err != nil {
				return brokerError(args[0], err)
			}
			w := cmd.OutOrStdout()
			return render(w, output, map[string]any{"route": args[0], "keys": keys}, func() error {
				tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
				fmt.Fprintln(tw, "ID\tPROVIDER\tLABELS\tSTATE\tCREATED")
				for _, k := range keys {
					fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", k.ID, k.Provider, dash(labelText(k.Labels)), k.State, k.Created.UTC().Format(time.RFC3339))
				}
				return tw.Flush()
			})
		},
	}
	outputFlag(cmd, &output)
	return cmd
}

// brokerError turns a broker answer about route into a plain sentence.
func brokerError(route string, err error) error {
	var oe *osbclient.Error
	switch {
	case errors.As(err, &oe) && oe.Code == http.StatusNotFound && route != "":
		return fmt.Errorf("%s: no such EdgeRoute (create it with: gatehouse routes apply -f SPEC.yaml)", route)
	case errors.As(err, &oe):
		return fmt.Errorf("the broker answered %d %s: %s", oe.Code, oe.Kind, oe.Description)
	}
	return err
}

func labelText(m map[string]string) string {
	var parts []string
	for k, v := range m {
		parts = append(parts, k+"="+v)
	}
	sort.Strings(parts)
	return strings.Join(parts, ",")
}

func revision(r int64) string {
	if r == 0 {
		return "-"
	}
	return fmt.Sprint(r)
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func oneLine(s string) string {
	s, _, _ = strings.Cut(s, "\n")
	return s
}
