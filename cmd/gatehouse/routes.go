package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/gatehouse-edge/gatehouse/broker/osbclient"
	"github.com/gatehouse-edge/gatehouse/contract"
	"github.com/gatehouse-edge/gatehouse/spec"
)

// osbFlags are the broker connection flags of `routes` and `keys`.
type osbFlags struct {
	url, user, passwordFile, dataDir string
	timeout                          time.Duration
}

func (o *osbFlags) register(cmd *cobra.Command) {
	f := cmd.PersistentFlags()
	f.StringVar(&o.url, "broker-url", "http://"+contract.DefaultBrokerAddr, "the broker's OSB API")
	f.StringVar(&o.user, "username", "broker", "basic-auth user name")
	f.StringVar(&o.passwordFile, "password-file", "", "file holding the broker password (default: <data-dir>/broker-password when --broker-url is on loopback)")
	f.StringVar(&o.dataDir, "data-dir", ".gatehouse", "data directory of a local gatehouse dev, where its broker password is read from")
	f.DurationVar(&o.timeout, "timeout", 5*time.Minute, "how long --wait waits")
}

func (o *osbFlags) client() (*osbclient.Client, error) {
	file := o.passwordFile
	if dev := filepath.Join(o.dataDir, "broker-password"); file == "" && isLoopbackURL(o.url) {
		// A local `gatehouse dev`: its password, never sent off loopback.
		if _, err := os.Stat(dev); err == nil {
			file = dev
		}
	}
	if file == "" {
		return nil, fmt.Errorf("--password-file is required (or, for a local gatehouse dev, run where %s exists or pass --data-dir)", filepath.Join(o.dataDir, "broker-password"))
	}
	pw, err := brokerPassword(file, "password-file")
	if err != nil {
		return nil, err
	}
	return &osbclient.Client{BaseURL: o.url, Username: o.user, Password: pw, HTTP: &http.Client{Timeout: time.Minute}}, nil
}

// progress prints state changes while waiting.
func progress(w io.Writer, what string) func(*osbclient.Response) {
	start := time.Now()
	return func(r *osbclient.Response) {
		fmt.Fprintf(w, "  %s: %s (%s) %s\n", what, r.State, time.Since(start).Round(100*time.Millisecond), r.Description)
	}
}

// finish prints an operation's end and turns "failed" into exit code 1.
func finish(w, ew io.Writer, what string, r *osbclient.Response) error {
	if r.Code == http.StatusGone {
		fmt.Fprintf(w, "%s: deleted\n", what)
		return nil
	}
	if r.State == "failed" {
		fmt.Fprintf(ew, "%s: failed\n%s\n", what, r.Description)
		return exitCode(1)
	}
	fmt.Fprintf(w, "%s: %s — %s\n", what, r.State, r.Description)
	return nil
}

func newRoutesCmd() *cobra.Command {
	var o osbFlags
	cmd := &cobra.Command{Use: "routes", Short: "Provision EdgeRoutes through the broker (an OSB client for product teams)"}
	o.register(cmd)
	cmd.AddCommand(newRoutesApplyCmd(&o), newRoutesStatusCmd(&o), newRoutesDeleteCmd(&o), newRoutesListCmd(&o))
	return cmd
}

func newRoutesApplyCmd(o *osbFlags) *cobra.Command {
	var (
		file, output string
		wait         bool
	)
	cmd := &cobra.Command{
		Use:   "apply -f SPEC.yaml [--wait]",
		Short: "Create or update the EdgeRoutes in a file (the instance id is metadata.name)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := checkOutput(output); err != nil {
				return err
			}
			out, errw := textOut(cmd, output)
			data, err := os.ReadFile(file)
			if err != nil {
				return err
			}
			docs, err := spec.Parse(file, data)
			if err == nil {
				err = spec.Validate(docs)
			}
			var problems spec.ErrorList
			if errors.As(err, &problems) {
				for _, p := range problems {
					fmt.Fprintln(errw, p)
				}
				return exitCode(1)
			} else if err != nil {
				return err
			}
			c, err := o.client()
			if err != nil {
				return err
			}
			ctx := cmd.Context()
			failed := false
			var results []opResult
			for _, d := range docs {
				res, err := applyOne(ctx, c, o, d, wait, out, errw)
				results = append(results, res)
				if err != nil {
					var ec exitCode
					if errors.As(err, &ec) {
						failed = true
						continue
					}
					return err
				}
			}
			if err := renderResults(cmd.OutOrStdout(), output, results); err != nil {
				return err
			}
			if failed {
				return exitCode(1)
			}
			return nil
		},
	}
	cmd.Flags().StringVarP(&file, "file", "f", "", "EdgeRoute YAML or JSON file (required)")
	cmd.Flags().BoolVar(&wait, "wait", false, "wait until the route is live (or failed), printing progress")
	outputFlag(cmd, &output)
	_ = cmd.MarkFlagRequired("file")
	return cmd
}

func applyOne(ctx context.Context, c *osbclient.Client, o *osbFlags, d *spec.Document, wait bool, out, errw io.Writer) (opResult, error) {
	name := d.Name()
	res := opResult{Route: name}
	body, err := d.EdgeRoute.CanonicalJSON()
	if err != nil {
		return res, err
	}
	r, err := c.Provision(ctx, name, json.RawMessage(body))
	var oe *osbclient.Error
	if errors.As(err, &oe) && oe.Code == http.StatusConflict {
		r, err = c.Update(ctx, name, json.RawMessage(body))
	}
	if err != nil {
		if errors.As(err, &oe) {
			fmt.Fprintf(errw, "%s: %s\n", name, oe.Error())
			res.Result, res.Description = "refused", oe.Description
			return res, exitCode(1)
		}
		return res, err
	}
	if r.Code == http.StatusOK {
		fmt.Fprintf(out, "%s: unchanged\n", name)
		res.Result = "unchanged"
		return res, nil
	}
	fmt.Fprintf(out, "%s: accepted (operation %s)\n", name, r.Operation)
	res.Result, res.Operation = "accepted", r.Operation
	if !wait {
		return res, nil
	}
	final, err := osbclient.Wait(ctx, o.timeout, func(ctx context.Context) (*osbclient.Response, error) {
		return c.LastOperation(ctx, name, r.Operation)
	}, progress(out, name))
	if err != nil {
		return res, err
	}
	res.final(final)
	return res, finish(out, errw, name, final)
}

func newRoutesStatusCmd(o *osbFlags) *cobra.Command {
	var output string
	cmd := &cobra.Command{
		Use:   "status NAME",
		Short: "Show an EdgeRoute: state, hosts, last error",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := o.client()
			if err != nil {
				return err
			}
			name := args[0]
			st := routeStatus{Route: name}
			r, err := c.LastOperation(cmd.Context(), name, "")
			var oe *osbclient.Error
			switch {
			case errors.As(err, &oe) && oe.Code == http.StatusNotFound:
				return fmt.Errorf("%s: no such EdgeRoute (create it with: gatehouse routes apply -f SPEC.yaml)", name)
			case errors.As(err, &oe):
				// Kind and description only: the request path carries the
				// broker's internal service and plan ids.
				return fmt.Errorf("%s: the broker answered %d %s: %s", name, oe.Code, oe.Kind, oe.Description)
			case err != nil:
				return err
			}
			if r.Code == http.StatusGone {
				st.State = "deleted"
			} else {
				st.State, st.Detail = r.State, r.Description
				if r.State == "failed" {
					st.LastError = r.Description
				}
				// The broker's summary: hosts, and the revision the
				// control plane reported live.
				if sum, err := c.Route(cmd.Context(), name); err == nil {
					st.Hosts, st.LiveRevision = sum.Hosts, sum.LiveRevision
					if st.LastError == "" {
						st.LastError = sum.LastError
					}
				} else if inst, err := c.Instance(cmd.Context(), name); err == nil {
					// An older broker without /gatehouse/v1.
					var sp struct {
						Spec struct {
							Hosts []string `json:"hosts"`
						} `json:"spec"`
					}
					if json.Unmarshal(inst.Parameters, &sp) == nil {
						st.Hosts = sp.Spec.Hosts
					}
				}
			}
			if err := renderRouteStatus(cmd.OutOrStdout(), st, output); err != nil {
				return err
			}
			if st.State == "failed" {
				return exitCode(1)
			}
			return nil
		},
	}
	outputFlag(cmd, &output)
	return cmd
}

// routeStatus is what a product team needs to know about its route.
type routeStatus struct {
	Route string   `json:"route"`
	State string   `json:"state"` // in progress | succeeded | failed | deleted
	Hosts []string `json:"hosts,omitempty"`
	// LiveRevision is the store revision the control plane reported
	// published (0: none yet).
	LiveRevision int64  `json:"live_revision"`
	LastError    string `json:"last_error,omitempty"`
	Detail       string `json:"detail,omitempty"` // the last operation's description
}

func renderRouteStatus(w io.Writer, st routeStatus, output string) error {
	switch output {
	case "json":
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		return enc.Encode(st)
	case "yaml":
		return renderYAML(w, st)
	case "table":
	default:
		return fmt.Errorf("--output %q: want table, json or yaml", output)
	}
	// The first line keeps the "NAME: STATE" form scripts grep for.
	fmt.Fprintf(w, "%s: %s\n", st.Route, st.State)
	if len(st.Hosts) > 0 {
		fmt.Fprintf(w, "hosts:       %s\n", strings.Join(st.Hosts, ", "))
	}
	if st.State != "deleted" {
		fmt.Fprintf(w, "live revision: %s\n", revision(st.LiveRevision))
	}
	lastErr := st.LastError
	if lastErr == "" {
		lastErr = "none"
	}
	fmt.Fprintf(w, "last error:  %s\n", lastErr)
	if st.Detail != "" && st.Detail != st.LastError {
		fmt.Fprintf(w, "detail:      %s\n", st.Detail)
	}
	return nil
}

func newRoutesDeleteCmd(o *osbFlags) *cobra.Command {
	var (
		wait   bool
		output string
	)
	cmd := &cobra.Command{
		Use:   "delete NAME [--wait]",
		Short: "Delete an EdgeRoute",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := checkOutput(output); err != nil {
				return err
			}
			out, errw := textOut(cmd, output)
			c, err := o.client()
			if err != nil {
				return err
			}
			name := args[0]
			res := opResult{Route: name}
			r, err := c.Deprovision(cmd.Context(), name)
			if err != nil {
				return err
			}
			if r.Code == http.StatusGone {
				fmt.Fprintf(out, "%s: does not exist\n", name)
				res.Result = "does not exist"
				return renderResults(cmd.OutOrStdout(), output, []opResult{res})
			}
			fmt.Fprintf(out, "%s: deletion accepted (operation %s)\n", name, r.Operation)
			res.Result, res.Operation = "accepted", r.Operation
			if wait {
				final, err := osbclient.Wait(cmd.Context(), o.timeout, func(ctx context.Context) (*osbclient.Response, error) {
					return c.LastOperation(ctx, name, r.Operation)
				}, progress(out, name))
				if err != nil {
					return err
				}
				res.final(final)
				err = finish(out, errw, name, final)
				if rerr := renderResults(cmd.OutOrStdout(), output, []opResult{res}); rerr != nil {
					return rerr
				}
				return err
			}
			return renderResults(cmd.OutOrStdout(), output, []opResult{res})
		},
	}
	cmd.Flags().BoolVar(&wait, "wait", false, "wait until the deletion is live")
	outputFlag(cmd, &output)
	return cmd
}
