package main

import (
	"fmt"
	"os"
	"runtime/debug"
	"strings"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
)

// version is set by the linker: -ldflags "-X main.version=...".
var version = "dev"

func newRootCmd() *cobra.Command {
	root := &cobra.Command{
		Use:           "gatehouse",
		Short:         "Gatehouse: edge policy (auth, rate limits, access logs) for Envoy fleets",
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.AddCommand(
		newVersionCmd(),
		newSpecCmd(),
		newDevCmd(),
		newAuthzCmd(),
		newAccesslogCmd(),
		newLogsCmd(),
		newRatelimitCmd(),
		newControlplaneCmd(), newExplainCmd(), newBootstrapCmd(),
		newBrokerCmd(), newWorkerCmd(), newRoutesCmd(), newKeysCmd(), newCertsCmd(),
		newHealthcheckCmd(), newRolloutCmd(),
		// Role subcommands register here, one line each.
	)
	for _, c := range root.Commands() {
		bindEnv(c, "GATEHOUSE")
		requireSubcommand(c)
	}
	return root
}

// requireSubcommand makes a command that only groups subcommands fail on
// an unknown or missing subcommand (exit status 1) instead of printing its
// help and exiting 0.
func requireSubcommand(cmd *cobra.Command) {
	if !cmd.HasSubCommands() {
		return
	}
	if cmd.Run == nil && cmd.RunE == nil {
		cmd.Args = cobra.ArbitraryArgs
		cmd.RunE = func(c *cobra.Command, args []string) error {
			var names []string
			for _, sub := range c.Commands() {
				if sub.IsAvailableCommand() {
					names = append(names, sub.Name())
				}
			}
			if len(args) == 0 {
				return fmt.Errorf("%s needs a subcommand: %s (see %s --help)", c.CommandPath(), strings.Join(names, ", "), c.CommandPath())
			}
			return fmt.Errorf("unknown subcommand %q for %s: want one of %s", args[0], c.CommandPath(), strings.Join(names, ", "))
		}
	}
	for _, sub := range cmd.Commands() {
		requireSubcommand(sub)
	}
}

// bindEnv gives every flag of cmd and its children an environment twin:
// GATEHOUSE_<SUBCOMMAND>_<FLAG>, upper case, '-' as '_'. A flag given on
// the command line wins over its twin. The twin is applied when the command
// runs, so a bad value fails with the variable's name.
func bindEnv(cmd *cobra.Command, prefix string) {
	name := prefix + "_" + envName(cmd.Name())
	prev := cmd.PreRunE
	cmd.PreRunE = func(c *cobra.Command, args []string) error {
		var err error
		c.Flags().VisitAll(func(f *pflag.Flag) {
			if err != nil || f.Changed || f.Name == "help" {
				return
			}
			key := name + "_" + envName(f.Name)
			if v, ok := os.LookupEnv(key); ok {
				if serr := c.Flags().Set(f.Name, v); serr != nil {
					err = fmt.Errorf("environment variable %s: %w", key, serr)
				}
			}
		})
		if err != nil || prev == nil {
			return err
		}
		return prev(c, args)
	}
	for _, sub := range cmd.Commands() {
		bindEnv(sub, name)
	}
}

func envName(s string) string { return strings.ToUpper(strings.ReplaceAll(s, "-", "_")) }

func newVersionCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "Print the version",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			v := version
			if bi, ok := debug.ReadBuildInfo(); ok {
				fmt.Fprintf(cmd.OutOrStdout(), "gatehouse %s (%s)\n", v, bi.GoVersion)
				return nil
			}
			fmt.Fprintf(cmd.OutOrStdout(), "gatehouse %s\n", v)
			return nil
		},
	}
}
