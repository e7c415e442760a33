package main

import (
	"fmt"
	"os"
	"runtime/debug"

	"github.com/spf13/pflag"

	"github.com/gatehouse-edge/gatehouse/internal/telemetry"
	"github.com/gatehouse-edge/gatehouse/internal/tlsconfig"
	"github.com/gatehouse-edge/gatehouse/spec"
)

// Flags every long-running role has.

// logFlags adds --log-format and --log-level (default level def, help text
// levels) to f.
func logFlags(f *pflag.FlagSet, c *telemetry.LogConfig, def, levels string) {
	f.StringVar(&c.Format, "log-format", "text", "text|json")
	f.StringVar(&c.Level, "log-level", def, levels)
}

// gogcFlag adds --gogc with the role's default to f; applyGOGC sets it
// unless GOGC is in the environment, which wins.
func gogcFlag(f *pflag.FlagSet, p *int, def int) {
	f.IntVar(p, "gogc", def, "garbage-collector target percentage for this process (Go's GOGC; the GOGC variable wins; 0 keeps Go's default)")
}

func applyGOGC(gogc int) {
	if _, set := os.LookupEnv("GOGC"); !set && gogc != 0 {
		debug.SetGCPercent(gogc)
	}
}

// upstreamAllowFlag adds --upstream-allow (controlplane, worker, broker,
// spec validate); parseUpstreamAllow reads it.
func upstreamAllowFlag(f *pflag.FlagSet, p *[]string) {
	f.StringSliceVar(p, "upstream-allow", nil, "upstreams specs may name although they point at the node or the platform (loopback, link-local, localhost, ...): comma-separated CIDRs and host:port; the node's own services stay refused")
}

func parseUpstreamAllow(list []string) (spec.UpstreamAllow, error) {
	a, err := spec.ParseUpstreamAllow(list)
	if err != nil {
		return a, fmt.Errorf("--upstream-allow: %w", err)
	}
	return a, nil
}

// tlsServerFlags adds --tls-cert-file, --tls-key-file, --tls-client-ca-file
// and --insecure for the role's port (what: "xDS", "ext_authz gRPC").
func tlsServerFlags(f *pflag.FlagSet, s *tlsconfig.Server, what string) {
	f.StringVar(&s.CertFile, "tls-cert-file", "", "PEM certificate (chain) of the "+what+" port: serve TLS (empty: plaintext, loopback addresses only)")
	f.StringVar(&s.KeyFile, "tls-key-file", "", "PEM private key of --tls-cert-file")
	f.StringVar(&s.ClientCAFile, "tls-client-ca-file", "", "PEM CA bundle: require a client certificate issued by it on the "+what+" port (mutual TLS)")
	f.BoolVar(&s.Insecure, "insecure", false, "allow plaintext on a non-loopback listen address")
}

// xdsNodeFlags registers where a sidecar follows the control plane and
// who it is there: --xds-server, --node-id and --node-cluster (its node
// group), the same for the three sidecars.
func xdsNodeFlags(f *pflag.FlagSet, server, nodeID, cluster *string) {
	f.StringVar(server, "xds-server", "", "control plane xDS address (host:port)")
	f.StringVar(nodeID, "node-id", "", "xDS node id")
	f.StringVar(cluster, "node-cluster", "", "xDS node cluster (node group)")
}

// xdsClientTLSFlags adds --xds-ca-file, --xds-cert-file and --xds-key-file:
// how a sidecar verifies the control plane and which node certificate it
// presents.
func xdsClientTLSFlags(f *pflag.FlagSet, c *tlsconfig.Client) {
	f.StringVar(&c.CAFile, "xds-ca-file", "", "PEM CA bundle the control plane's certificate is verified against (turns on TLS toward --xds-server)")
	f.StringVar(&c.CertFile, "xds-cert-file", "", "PEM node certificate presented to the control plane (URI SAN spiffe://gatehouse/node-group/<group>; `gatehouse certs node`)")
	f.StringVar(&c.KeyFile, "xds-key-file", "", "PEM private key of --xds-cert-file")
}
