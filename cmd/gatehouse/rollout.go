package main

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"sort"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/gatehouse-edge/gatehouse/contract"
	"github.com/gatehouse-edge/gatehouse/controlplane"
)

func newRolloutCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "rollout",
		Short: "The control plane's staged rollout",
	}
	var admin, output string
	var asJSON bool
	status := &cobra.Command{
		Use:   "status",
		Short: "Show the rollout phase, the candidate version, what each node group is served and the specs left out",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if asJSON {
				output = "json"
			}
			if err := checkOutput(output); err != nil {
				return err
			}
			c := &http.Client{Timeout: 10 * time.Second}
			resp, err := c.Get(strings.TrimRight(admin, "/") + "/debug/specs")
			if err != nil {
				return fmt.Errorf("rollout status: %w", err)
			}
			defer resp.Body.Close()
			body, err := io.ReadAll(io.LimitReader(resp.Body, 16<<20))
			if err != nil {
				return fmt.Errorf("rollout status: reading %s/debug/specs: %w", admin, err)
			}
			if resp.StatusCode != http.StatusOK {
				return fmt.Errorf("rollout status: %s/debug/specs: %s", admin, resp.Status)
			}
			switch output {
			case "json":
				_, err := cmd.OutOrStdout().Write(body)
				return err
			case "yaml":
				var doc any
				if err := json.Unmarshal(body, &doc); err != nil {
					return fmt.Errorf("rollout status: decoding %s/debug/specs: %w", admin, err)
				}
				return renderYAML(cmd.OutOrStdout(), doc)
			}
			var st struct {
				controlplane.State
				Publishing struct {
					Served map[string]string `json:"served"`
				} `json:"publishing"`
			}
			if err := json.Unmarshal(body, &st); err != nil {
				return fmt.Errorf("rollout status: decoding %s/debug/specs: %w", admin, err)
			}
			printRollout(cmd.OutOrStdout(), st.State, st.Publishing.Served, time.Now())
			return nil
		},
	}
	status.Flags().StringVar(&admin, "control-plane", "http://"+contract.DefaultControlPlaneAdminAddr, "the control plane's admin URL (serves /debug/specs)")
	status.Flags().StringVar(&admin, "controlplane-admin", "http://"+contract.DefaultControlPlaneAdminAddr, "the old spelling of --control-plane")
	_ = status.Flags().MarkHidden("controlplane-admin")
	outputFlag(status, &output)
	status.Flags().BoolVar(&asJSON, "json", false, "print /debug/specs as JSON")
	_ = status.Flags().MarkHidden("json") // the old spelling of -o json
	cmd.AddCommand(status)
	return cmd
}

func printRollout(w io.Writer, st controlplane.State, served map[string]string, now time.Time) {
	r := st.Rollout
	fmt.Fprintf(w, "phase:      %s\n", r.Phase)
	if r.CanaryGroup != "" {
		fmt.Fprintf(w, "canary:     group %s\n", r.CanaryGroup)
	}
	if r.Candidate != "" {
		fmt.Fprintf(w, "candidate:  %s", r.Candidate)
		if !r.Since.IsZero() {
			fmt.Fprintf(w, " (since %s, %s ago)", r.Since.UTC().Format(time.RFC3339), now.Sub(r.Since).Round(time.Second))
		}
		fmt.Fprintln(w)
	}
	fmt.Fprintf(w, "newest:     revision %s, version %s\n", st.Revision, st.Version)
	verdict := map[string]string{
		controlplane.PhaseIdle:       "the fleet runs the newest good version",
		controlplane.PhaseSoaking:    "the canary soaks the candidate; the rest of the fleet waits",
		controlplane.PhaseRolledBack: "rolled back: " + r.Reason,
	}[r.Phase]
	if verdict == "" {
		verdict = r.Reason
	}
	fmt.Fprintf(w, "verdict:    %s\n", verdict)
	printGate(w, r)
	if st.Refused != "" {
		fmt.Fprintf(w, "refused:    %s\n", st.Refused)
	}
	if len(st.AwaitingACK) > 0 {
		var ws []string
		for g, v := range st.AwaitingACK {
			ws = append(ws, g+" on "+v)
		}
		sort.Strings(ws)
		fmt.Fprintf(w, "awaiting:   ACKs from %s (specs are reported published after them)\n", strings.Join(ws, ", "))
	}
	groups := make([]string, 0, len(served))
	for g := range served {
		groups = append(groups, g)
	}
	sort.Strings(groups)
	fmt.Fprintln(w, "served:")
	for _, g := range groups {
		fmt.Fprintf(w, "  %-20s %s\n", g, served[g])
	}
	var ok, failed int
	for _, s := range st.Specs {
		if s.Error != "" {
			failed++
		} else {
			ok++
		}
	}
	fmt.Fprintf(w, "specs:      %d published, %d left out\n", ok, failed)
	for _, s := range st.Specs {
		if s.Error != "" {
			fmt.Fprintf(w, "  LEFT OUT %s: %s\n", s.Name, s.Error)
		}
	}
	fmt.Fprintln(w, "per-route:  no traffic comparison (the gate compares NACKs and ACKs only)")
}
