package main

import (
	"errors"
	"fmt"

	"github.com/spf13/cobra"

	"github.com/gatehouse-edge/gatehouse/broker/specio"
	"github.com/gatehouse-edge/gatehouse/controlplane/compile"
	"github.com/gatehouse-edge/gatehouse/spec"
)

func newSpecCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "spec",
		Short: "Work with EdgeRoute specs offline",
	}
	cmd.AddCommand(newSpecValidateCmd(), newSpecRenderCmd())
	return cmd
}

func newSpecValidateCmd() *cobra.Command {
	var upstreamAllow []string
	cmd := &cobra.Command{
		Use:   "validate FILE|DIR...",
		Short: "Validate EdgeRoute specs with the production rules; print every problem",
		Args:  cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			allow, err := parseUpstreamAllow(upstreamAllow)
			if err != nil {
				return err
			}
			// The control plane's defaults: the sidecars, Envoy admin and
			// listener stay refused whatever the allow-list says.
			own := compile.NodeServices(compile.Options{})
			docs, err := spec.Policy{Upstreams: spec.UpstreamPolicy{Allow: allow, Reserved: own}}.Load(args...)
			var problems spec.ErrorList
			if err != nil && !errors.As(err, &problems) {
				return err
			}
			// Host names nobody may claim (public suffixes, wildcards over
			// them, single labels, localhost, IPs), as broker and control
			// plane refuse them; overlaps need the other specs and a tenant.
			for _, d := range docs {
				problems = append(problems, specio.Problems(specio.CheckHostNames(d, "", nil))...)
			}
			if len(problems) > 0 {
				for _, p := range problems {
					fmt.Fprintln(cmd.ErrOrStderr(), p)
				}
				fmt.Fprintf(cmd.ErrOrStderr(), "%d problem(s) in %d spec(s)\n", len(problems), len(docs))
				return exitCode(1)
			}
			for _, d := range docs {
				r := d.EdgeRoute
				fmt.Fprintf(cmd.OutOrStdout(), "ok %s (%s): team %s, %d host(s), %d route(s), %d upstream(s)\n",
					r.Metadata.Name, d.File, r.Metadata.Team, len(r.Spec.Hosts), len(r.Spec.Routes), len(r.Spec.Upstreams))
			}
			return nil
		},
	}
	upstreamAllowFlag(cmd.Flags(), &upstreamAllow)
	return cmd
}
