package dev

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"text/tabwriter"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/gatehouse-edge/gatehouse/internal/telemetry"
)

// Config is what `gatehouse dev` needs.
type Config struct {
	DataDir     string // embedded stores live here (./.gatehouse)
	ExamplesDir string // specs provisioned on first start (deploy/examples)
	IdPAddr     string // demo identity provider (127.0.0.1:9081)
	EchoAddr    string // demo upstream (127.0.0.1:9080)
	Out         io.Writer
	Log         *slog.Logger
}

// endpoint is one line of the table printed at start.
type endpoint struct{ role, addr, what string }

// Run starts the suite and blocks until ctx ends.
func Run(ctx context.Context, c Config) error {
	idp, err := LoadIdP(c.DataDir)
	if err != nil {
		return err
	}
	g, ctx := errgroup.WithContext(ctx)
	var eps []endpoint
	serve := func(role, addr, what string, h http.Handler) error {
		l, err := net.Listen("tcp", addr)
		if err != nil {
			return fmt.Errorf("%s: %w", role, err)
		}
		eps = append(eps, endpoint{role, l.Addr().String(), what})
		g.Go(func() error { return telemetry.ServeHTTP(ctx, l, h) })
		return nil
	}
	if err := serve("demo-idp", c.IdPAddr, "JWKS at /.well-known/jwks.json (dev only)", idp.Handler()); err != nil {
		return err
	}
	if err := serve("demo-echo", c.EchoAddr, "echo upstream of the petstore example (dev only)", EchoHandler()); err != nil {
		return err
	}
	token, err := idp.Mint(TokenRequest{Subject: "alice", Scopes: []string{"pets:read"}, Groups: []string{"adopters"}, TTL: 12 * time.Hour}, time.Now())
	if err != nil {
		return err
	}
	printTable(c.Out, eps)
	fmt.Fprintf(c.Out, "\nsample token (sub alice, scope pets:read, 12h):\n  %s\nmint another: bin/gatehouse dev token --sub bob --scope pets:read\nCtrl-C stops everything.\n", token)
	return g.Wait()
}

func printTable(w io.Writer, eps []endpoint) {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ROLE\tADDRESS\tWHAT")
	for _, e := range eps {
		fmt.Fprintf(tw, "%s\t%s\t%s\n", e.role, e.addr, e.what)
	}
	tw.Flush()
}
