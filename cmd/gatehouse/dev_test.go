package main

import (
	"context"
	"net"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/gatehouse-edge/gatehouse/internal/testenv"
)

// TestDevEveryAddressMoves: `gatehouse dev` takes every address it
// listens on from a flag (or its GATEHOUSE_DEV_* twin), so it starts with
// none of the defaults, serves on each, and its banner shows them; with
// an empty --examples the banner advertises no petstore route or demo key.
func TestDevEveryAddressMoves(t *testing.T) {
	addr := func() string { return "127.0.0.1:" + strconv.Itoa(testenv.FreePort(t)) }
	flags := map[string]string{}
	for _, f := range []string{"broker-addr", "broker-admin-addr", "xds-addr", "controlplane-admin-addr",
		"authz-addr", "authz-admin-addr", "ratelimit-addr", "ratelimit-admin-addr",
		"accesslog-addr", "accesslog-api-addr", "idp-addr", "echo-addr"} {
		flags[f] = addr()
	}
	frontDoor := addr()
	t.Setenv("GATEHOUSE_DEV_FRONT_DOOR_ADDR", frontDoor) // env twin
	args := []string{"dev", "--data-dir", t.TempDir(), "--examples", "", "--envoy-listener-addr", addr()}
	for f, a := range flags {
		args = append(args, "--"+f, a)
	}
	flags["front-door-addr"] = frontDoor

	out := startDevCmd(t, args)
	banner := out.String()
	for f, a := range flags {
		c, err := net.DialTimeout("tcp", a, 2*time.Second)
		if err != nil {
			t.Fatalf("--%s %s: nothing listens: %v", f, a, err)
		}
		c.Close()
		if f != "echo-addr" && f != "idp-addr" && !strings.Contains(banner, a) {
			t.Fatalf("banner does not show --%s %s:\n%s", f, a, banner)
		}
	}
	for _, bad := range []string{"petstore", "gh_demo_", "--spec-dir", "-f /petstore.yaml", "ALICE"} {
		if strings.Contains(banner, bad) {
			t.Fatalf("banner with --examples '' contains %q:\n%s", bad, banner)
		}
	}
	checkBannerBootstrap(t, banner)
}

// checkBannerBootstrap runs the banner's `bin/gatehouse bootstrap` line as
// a shell would read it (a trailing backslash continues the line): it
// succeeds and points Envoy at the dev PKI with mutual TLS.
func checkBannerBootstrap(t *testing.T, banner string) {
	t.Helper()
	lines := strings.Split(banner, "\n")
	var cmdline string
	for i, l := range lines {
		if l = strings.TrimSpace(l); !strings.HasPrefix(l, "bin/gatehouse bootstrap ") {
			continue
		}
		for strings.HasSuffix(l, "\\") && i+1 < len(lines) {
			i++
			l = strings.TrimSuffix(l, "\\") + " " + strings.TrimSpace(lines[i])
		}
		cmdline = l
		break
	}
	if cmdline == "" || !strings.Contains(cmdline, "--xds-cert-file") {
		t.Fatalf("banner has no bootstrap line with --xds-cert-file:\n%s", banner)
	}
	var out, errOut testenv.SyncBuffer
	root := newRootCmd()
	root.SetArgs(strings.Fields(cmdline)[1:])
	root.SetOut(&out)
	root.SetErr(&errOut)
	if err := root.Execute(); err != nil {
		t.Fatalf("the banner's bootstrap line %q: %v\n%s", cmdline, err, errOut.String())
	}
	if !strings.Contains(out.String(), "envoy-dev.crt") || !strings.Contains(out.String(), "ca.crt") {
		t.Fatalf("the banner's bootstrap line %q: the bootstrap names no node certificate or CA:\n%.2000s", cmdline, out.String())
	}
}

// startDevCmd runs `gatehouse <args>` (a dev suite) until the test ends
// and returns its output once the banner is printed.
func startDevCmd(t *testing.T, args []string) *testenv.SyncBuffer {
	t.Helper()
	var out, errOut testenv.SyncBuffer
	root := newRootCmd()
	root.SetArgs(args)
	root.SetOut(&out)
	root.SetErr(&errOut)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- root.ExecuteContext(ctx) }()
	t.Cleanup(func() {
		cancel()
		select {
		case <-done:
		case <-time.After(30 * time.Second):
			t.Error("gatehouse dev did not stop within 30s")
		}
	})
	deadline := time.Now().Add(90 * time.Second)
	for !strings.Contains(out.String(), "Ctrl-C stops everything") {
		select {
		case err := <-done:
			t.Fatalf("gatehouse dev ended: %v\n%s\n%s", err, out.String(), errOut.String())
		case <-time.After(100 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatalf("no banner after 90s:\n%s\n%s", out.String(), errOut.String())
		}
	}
	return &out
}
