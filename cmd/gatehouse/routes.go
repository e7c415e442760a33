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
	"time"

	"github.com/spf13/cobra"

	"github.com/gatehouse-edge/gatehouse/broker/osbclient"
	"github.com/gatehouse-edge/gatehouse/spec"
)

// osbFlags are the broker connection flags of `routes` and `keys`.
type osbFlags struct {
	url, user, passwordFile, dataDir string
	timeout                          time.Duration
}

func (o *osbFlags) register(cmd *cobra.Command) {
	f := cmd.PersistentFlags()
	f.StringVar(&o.url, "broker-url", "http://127.0.0.1:8080", "the broker's OSB API")
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
	cmd.AddCommand(newRoutesApplyCmd(&o), newRoutesStatusCmd(&o), newRoutesDeleteCmd(&o))
	return cmd
}

func newRoutesApplyCmd(o *osbFlags) *cobra.Command {
	var (
		file string
		wait bool
	)
	cmd := &cobra.Command{
		Use:   "apply -f SPEC.yaml [--wait]",
		Short: "Create or update the EdgeRoutes in a file (the instance id is metadata.name)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			out, errw := cmd.OutOrStdout(), cmd.ErrOrStderr()
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
			for _, d := range docs {
				if err := applyOne(ctx, c, o, d, wait, out, errw); err != nil {
					var ec exitCode
					if errors.As(err, &ec) {
						failed = true
						continue
					}
					return err
				}
			}
			if failed {
				return exitCode(1)
			}
			return nil
		},
	}
	cmd.Flags().StringVarP(&file, "file", "f", "", "EdgeRoute YAML or JSON file (required)")
	cmd.Flags().BoolVar(&wait, "wait", false, "wait until the route is live (or failed), printing progress")
	_ = cmd.MarkFlagRequired("file")
	return cmd
}

func applyOne(ctx context.Context, c *osbclient.Client, o *osbFlags, d *spec.Document, wait bool, out, errw io.Writer) error {
	name := d.Name()
	body, err := d.EdgeRoute.CanonicalJSON()
	if err != nil {
		return err
	}
	r, err := c.Provision(ctx, name, json.RawMessage(body))
	var oe *osbclient.Error
	if errors.As(err, &oe) && oe.Code == http.StatusConflict {
		r, err = c.Update(ctx, name, json.RawMessage(body))
	}
	if err != nil {
		if errors.As(err, &oe) {
			fmt.Fprintf(errw, "%s: %s\n", name, oe.Error())
			return exitCode(1)
		}
		return err
	}
	if r.Code == http.StatusOK {
		fmt.Fprintf(out, "%s: unchanged\n", name)
		return nil
	}
	fmt.Fprintf(out, "%s: accepted (operation %s)\n", name, r.Operation)
	if !wait {
		return nil
	}
	final, err := osbclient.Wait(ctx, o.timeout, func(ctx context.Context) (*osbclient.Response, error) {
		return c.LastOperation(ctx, name, r.Operation)
	}, progress(out, name))
	if err != nil {
		return err
	}
	return finish(out, errw, name, final)
}

func newRoutesStatusCmd(o *osbFlags) *cobra.Command {
	return &cobra.Command{
		Use:   "status NAME",
		Short: "Show an EdgeRoute's last operation",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := o.client()
			if err != nil {
				return err
			}
			r, err := c.LastOperation(cmd.Context(), args[0], "")
			if err != nil {
				return err
			}
			if r.Code == http.StatusGone {
				fmt.Fprintf(cmd.OutOrStdout(), "%s: deleted\n", args[0])
				return nil
			}
			fmt.Fprintf(cmd.OutOrStdout(), "%s: %s\n%s\n", args[0], r.State, r.Description)
			if r.State == "failed" {
				return exitCode(1)
			}
			return nil
		},
	}
}

func newRoutesDeleteCmd(o *osbFlags) *cobra.Command {
	var wait bool
	cmd := &cobra.Command{
		Use:   "delete NAME [--wait]",
		Short: "Delete an EdgeRoute",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			out, errw := cmd.OutOrStdout(), cmd.ErrOrStderr()
			c, err := o.client()
			if err != nil {
				return err
			}
			name := args[0]
			r, err := c.Deprovision(cmd.Context(), name)
			if err != nil {
				return err
			}
			if r.Code == http.StatusGone {
				fmt.Fprintf(out, "%s: does not exist\n", name)
				return nil
			}
			fmt.Fprintf(out, "%s: deletion accepted (operation %s)\n", name, r.Operation)
			if !wait {
				return nil
			}
			final, err := osbclient.Wait(cmd.Context(), o.timeout, func(ctx context.Context) (*osbclient.Response, error) {
				return c.LastOperation(ctx, name, r.Operation)
			}, progress(out, name))
			if err != nil {
				return err
			}
			return finish(out, errw, name, final)
		},
	}
	cmd.Flags().BoolVar(&wait, "wait", false, "wait until the deletion is live")
	return cmd
}
