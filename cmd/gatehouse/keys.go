package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net/http"
	"strings"

	"github.com/spf13/cobra"

	"github.com/gatehouse-edge/gatehouse/broker/osbclient"
)

func newKeysCmd() *cobra.Command {
	var o osbFlags
	cmd := &cobra.Command{Use: "keys", Short: "Issue and revoke API keys for an EdgeRoute (OSB bindings)"}
	o.register(cmd)
	cmd.AddCommand(newKeysCreateCmd(&o), newKeysRevokeCmd(&o), newKeysListCmd(&o))
	return cmd
}

func newKeysCreateCmd(o *osbFlags) *cobra.Command {
	var (
		provider, id, output string
		labels               []string
	)
	cmd := &cobra.Command{
		Use:   "create ROUTE --provider P [--label k=v]...",
		Short: "Create an API key; it is printed once and never stored",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := checkOutput(output); err != nil {
				return err
			}
			out, errw := cmd.OutOrStdout(), cmd.ErrOrStderr()
			lm := map[string]string{}
			for _, l := range labels {
				k, v, ok := strings.Cut(l, "=")
				if !ok || k == "" {
					return fmt.Errorf("--label %q: want key=value", l)
				}
				lm[k] = v
			}
			if id == "" {
				var b [6]byte
				_, _ = rand.Read(b[:])
				id = "key-" + hex.EncodeToString(b[:])
			}
			c, err := o.client()
			if err != nil {
				return err
			}
			route := args[0]
			r, err := c.Bind(cmd.Context(), route, id, provider, lm)
			if err != nil {
				return err
			}
			if r.Code == http.StatusAccepted {
				final, err := osbclient.Wait(cmd.Context(), o.timeout, func(ctx context.Context) (*osbclient.Response, error) {
					return c.BindingLastOperation(ctx, route, id, r.Operation)
				}, progress(errw, route+"/"+id))
				if err != nil {
					return fmt.Errorf("key %s is not live yet (%v); run this command again with --id %s to fetch it once it is", id, err, id)
				}
				if final.State == "failed" {
					fmt.Fprintf(errw, "key %s: failed\n%s\n", id, final.Description)
					return exitCode(1)
				}
				// The key waits, sealed, for exactly one GET binding.
				if r, err = c.Binding(cmd.Context(), route, id); err != nil {
					return err
				}
			}
			if r.Credentials == nil {
				return fmt.Errorf("the broker answered %d without credentials", r.Code)
			}
			cr := r.Credentials
			return render(out, output, cr, func() error {
				fmt.Fprintf(out, "key id:   %s\n", cr.APIKeyID)
				if cr.APIKey != "" {
					fmt.Fprintf(out, "api key:  %s   (shown once; only its SHA-256 is stored)\n", cr.APIKey)
				}
				if cr.Header != "" {
					fmt.Fprintf(out, "header:   %s\n", cr.Header)
				} else {
					fmt.Fprintf(out, "query:    %s\n", cr.Query)
				}
				fmt.Fprintf(out, "hosts:    %s\n", strings.Join(cr.Hosts, ", "))
				return nil
			})
		},
	}
	cmd.Flags().StringVar(&provider, "provider", "", "the EdgeRoute's apiKeys provider (required)")
	cmd.Flags().StringArrayVar(&labels, "label", nil, "key label k=v (repeatable)")
	cmd.Flags().StringVar(&id, "id", "", "key id (default: key-<random>)")
	outputFlag(cmd, &output)
	_ = cmd.MarkFlagRequired("provider")
	return cmd
}

func newKeysRevokeCmd(o *osbFlags) *cobra.Command {
	var (
		wait   bool
		output string
	)
	cmd := &cobra.Command{
		Use:   "revoke ROUTE KEY-ID",
		Short: "Revoke an API key",
		Args:  cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := checkOutput(output); err != nil {
				return err
			}
			out, errw := textOut(cmd, output)
			c, err := o.client()
			if err != nil {
				return err
			}
			route, id := args[0], args[1]
			res := opResult{Route: route, Key: id}
			r, err := c.Unbind(cmd.Context(), route, id)
			if err != nil {
				return err
			}
			if r.Code == http.StatusGone {
				fmt.Fprintf(out, "%s/%s: does not exist\n", route, id)
				res.Result = "does not exist"
				return renderResults(cmd.OutOrStdout(), output, []opResult{res})
			}
			fmt.Fprintf(out, "%s/%s: revocation accepted (operation %s)\n", route, id, r.Operation)
			res.Result, res.Operation = "accepted", r.Operation
			if !wait {
				return renderResults(cmd.OutOrStdout(), output, []opResult{res})
			}
			final, err := osbclient.Wait(cmd.Context(), o.timeout, func(ctx context.Context) (*osbclient.Response, error) {
				return c.BindingLastOperation(ctx, route, id, r.Operation)
			}, progress(out, route+"/"+id))
			if err != nil {
				return err
			}
			res.final(final)
			if final.Code == http.StatusGone {
				fmt.Fprintf(out, "%s/%s: revoked\n", route, id)
			} else {
				err = finish(out, errw, route+"/"+id, final)
			}
			if rerr := renderResults(cmd.OutOrStdout(), output, []opResult{res}); rerr != nil {
				return rerr
			}
			return err
		},
	}
	cmd.Flags().BoolVar(&wait, "wait", true, "wait until the revocation is live")
	outputFlag(cmd, &output)
	return cmd
}
