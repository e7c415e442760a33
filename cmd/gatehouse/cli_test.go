package main

import (
	"context"
	"encoding/json"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/gatehouse-edge/gatehouse/accesslog"
	"github.com/gatehouse-edge/gatehouse/accesslog/accesslogtest"
	"github.com/gatehouse-edge/gatehouse/accesslog/api"
	"github.com/gatehouse-edge/gatehouse/accesslog/duckstore"
)

// TestCLIHelpSharedFlags runs every subcommand's --help (the table must
// name each one: a new subcommand without a row fails) and checks the
// shared flags and their spellings: one -o with the same values, the
// connection flags of each client family, the API's value syntax and the
// 15m default window of the page, kebab-case flag names, no second output
// flag.
func TestCLIHelpSharedFlags(t *testing.T) {
	broker := []string{"--broker-url", "--username", "--password-file", "--data-dir", "--timeout"}
	logs := []string{"--server", "--token-file", "--data-dir"}
	cases := map[string]struct {
		outputs string   // "" when the command has no -o
		shared  []string // flags every command of its family has
		filters bool
	}{
		"logs query":     {outputs: "table|json|yaml|ndjson|csv", shared: logs, filters: true},
		"logs stats":     {outputs: "table|json|yaml", shared: logs, filters: true},
		"logs export":    {outputs: "ndjson|csv", shared: logs, filters: true},
		"logs verify":    {outputs: "table|json", shared: logs},
		"logs open":      {shared: logs},
		"explain":        {outputs: "table|json|yaml", shared: []string{"--control-plane", "--spec-dir", "--node-group"}},
		"rollout status": {outputs: "table|json|yaml", shared: []string{"--control-plane"}},
		"routes apply":   {outputs: "table|json|yaml", shared: broker},
		"routes status":  {outputs: "table|json|yaml", shared: broker},
		"routes delete":  {outputs: "table|json|yaml", shared: broker},
		"routes list":    {outputs: "table|json|yaml", shared: broker},
		"keys create":    {outputs: "table|json|yaml", shared: broker},
		"keys revoke":    {outputs: "table|json|yaml", shared: broker},
		"keys list":      {outputs: "table|json|yaml", shared: broker},
		// Servers and offline tools: no -o.
		"version": {}, "spec validate": {}, "spec render": {}, "dev": {}, "authz": {}, "accesslog": {},
		"ratelimit": {}, "controlplane": {}, "bootstrap": {}, "broker": {}, "worker": {}, "certs ca": {},
		"certs node": {}, "certs server": {}, "healthcheck": {}, "dev token": {}, "ratelimit validate": {},
		// Groups: their --help shows the family's shared flags.
		"routes": {shared: broker}, "keys": {shared: broker}, "logs": {}, "spec": {}, "certs": {}, "rollout": {},
	}
	kebab := regexp.MustCompile(`^[a-z0-9]+(-[a-z0-9]+)*$`)
	seen := map[string]bool{}
	var walk func(c *cobra.Command)
	walk = func(c *cobra.Command) {
		for _, sub := range c.Commands() {
			walk(sub)
		}
		if !c.HasParent() {
			return
		}
		name := strings.TrimPrefix(c.CommandPath(), "gatehouse ")
		seen[name] = true
		want, ok := cases[name]
		if !ok {
			t.Errorf("%s: no row in this table (say which shared flags it has)", name)
			return
		}
		c.Flags().VisitAll(func(f *pflag.Flag) {
			if !kebab.MatchString(f.Name) {
				t.Errorf("%s: flag --%s is not kebab-case", name, f.Name)
			}
			if f.Shorthand == "o" && f.Name != "output" {
				t.Errorf("%s: -o is --%s, not --output", name, f.Name)
			}
		})
		out, errOut, code := run(t, append(strings.Fields(name), "--help")...)
		if code != 0 {
			t.Fatalf("%s --help: %d %s", name, code, errOut)
		}
		for _, f := range want.shared {
			if !strings.Contains(out, f+" ") {
				t.Errorf("%s: no %s flag", name, f)
			}
		}
		if want.outputs != "" && (!strings.Contains(out, "-o, --output string") || !strings.Contains(out, "output: "+want.outputs)) {
			t.Errorf("%s: -o is not %q:\n%s", name, want.outputs, out)
		}
		if want.outputs == "" && strings.Contains(out, "--output") {
			t.Errorf("%s: an -o the table does not expect:\n%s", name, out)
		}
		if strings.Contains(out, "--json") || (strings.Contains(out, "--format") && name != "logs export") || strings.Contains(out, "--controlplane-admin ") {
			t.Errorf("%s: a second spelling of a shared flag:\n%s", name, out)
		}
		if want.filters {
			for _, want := range []string{"(default 15m, as on the page)", "prefix* or !value (API parameter client_ip)", "a class 4xx", "--user-agent", "--rule", "--provider"} {
				if !strings.Contains(out, want) {
					t.Errorf("%s: help lacks %q", name, want)
				}
			}
			if strings.Contains(out, "filter: ") {
				t.Errorf("%s: circular help text (filter: name)", name)
			}
		}
		if name == "logs stats" && !strings.Contains(out, strings.Join(accesslog.GroupByColumns, ", ")) {
			t.Errorf("logs stats: --group-by does not list the API's spellings")
		}
	}
	walk(newRootCmd())
	for name := range cases {
		if !seen[name] {
			t.Errorf("%s: in the table but not a subcommand", name)
		}
	}
}

// TestCLIUnknownSubcommandsFail: a group command given an unknown or no
// subcommand exits non-zero and names the ones it has.
func TestCLIUnknownSubcommandsFail(t *testing.T) {
	for _, args := range [][]string{{"routes", "list-all"}, {"keys", "nosuch"}, {"logs", "tail"}, {"logs"}, {"spec", "lint"}} {
		_, errOut, code := run(t, args...)
		if code == 0 || !(strings.Contains(errOut, "unknown subcommand") || strings.Contains(errOut, "needs a subcommand")) {
			t.Errorf("%v: exit %d, %q", args, code, errOut)
		}
	}
}

// TestLogsCLIUsesDevTokenAndAPISpelling: against a query API on loopback,
// `logs stats` with no token flag reads <data-dir>/accesslog-token,
// accepts --group-by client-ip as client_ip, and asks for the last 15
// minutes; the dev token is not sent to a server off loopback.
func TestLogsCLIUsesDevTokenAndAPISpelling(t *testing.T) {
	t.Setenv("GATEHOUSE_LOGS_TOKEN", "")
	os.Unsetenv("GATEHOUSE_LOGS_TOKEN")
	const token = "dev-token-0123456789abcdef"
	dataDir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dataDir, "accesslog-token"), []byte(token+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	now := time.Now().UTC()
	recs := accesslogtest.RandomRecords(3, 400, now.Add(-40*time.Minute), 39*time.Minute)
	s, err := duckstore.Open(context.Background(), duckstore.Config{Path: filepath.Join(t.TempDir(), "l.duckdb"), MemoryLimit: "256MB", Threads: 1})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	b := &accesslog.Batch{Records: recs}
	b.Seq, b.SpoolSeq, b.Count = 1, 1, uint32(len(recs))
	for i := range recs {
		recs[i].Batch, recs[i].Index = 1, uint32(i)
	}
	b.MinTime, b.MaxTime = recs[0].Time, recs[len(recs)-1].Time
	b.Hash, _ = accesslog.ChainHash("", 1, recs)
	if err := s.WriteBatch(context.Background(), b); err != nil {
		t.Fatal(err)
	}
	toks, _ := api.NewTokens(token)
	h, err := api.NewHandler(api.Config{Store: s, Tokens: toks})
	if err != nil {
		t.Fatal(err)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: h}
	go srv.Serve(l)
	defer srv.Close()
	server := "http://" + l.Addr().String()

	out, errOut, code := run(t, "logs", "stats", "--server", server, "--data-dir", dataDir, "--group-by", "client-ip", "--status", "!2xx", "-o", "json")
	if code != 0 {
		t.Fatalf("logs stats: %d %s", code, errOut)
	}
	var r api.StatsResponse
	if err := json.Unmarshal([]byte(out), &r); err != nil || r.GroupBy != "client_ip" {
		t.Fatalf("stats answer %s %v", out, err)
	}
	var got, want int64
	for _, g := range r.Groups {
		got += g.Count
	}
	for _, rec := range recs {
		if rec.Time.After(now.Add(-15*time.Minute)) && rec.Status/100 != 2 {
			want++
		}
	}
	// Top 10 groups only: at most the 15-minute count, and some rows.
	if got == 0 || got > want+2 {
		t.Fatalf("stats over the default window counted %d, the last 15 minutes have %d non-2xx", got, want)
	}
	out, errOut, code = run(t, "logs", "query", "--server", server, "--data-dir", dataDir, "--route", "svc1/*", "-o", "yaml", "--limit", "3")
	if code != 0 || !strings.Contains(out, "route: svc1/") || strings.Contains(out, "map[") {
		t.Fatalf("logs query -o yaml: %d %s %s", code, out, errOut)
	}
	out, errOut, code = run(t, "logs", "query", "--server", server, "--data-dir", dataDir, "-o", "ndjson", "--limit", "5")
	if code != 0 || strings.Count(out, "\n") != 5 {
		t.Fatalf("logs query -o ndjson: %d %q %s", code, out, errOut)
	}
	// Off loopback the dev token is not used.
	_, errOut, code = run(t, "logs", "stats", "--server", "http://192.0.2.1:9003", "--data-dir", dataDir)
	if code == 0 || !strings.Contains(errOut, "no API token") {
		t.Fatalf("remote server with only a dev token: %d %s", code, errOut)
	}
	out, _, code = run(t, "logs", "open", "--server", server, "--data-dir", dataDir, "--print")
	if code != 0 || !strings.Contains(out, server+"/#token="+token) {
		t.Fatalf("logs open --print: %q", out)
	}
}

// TestExplainAlwaysDecidesInPlainText: explain prints a decision line in
// every case and rules, context and metadata as text, never Go maps;
// -o json and -o yaml give the same result as data.
func TestExplainAlwaysDecidesInPlainText(t *testing.T) {
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"--request", "GET https://petstore.example.com/pets"}, "decision:     deny, status 401 without credentials"},
		{[]string{"--request", "GET https://petstore.example.com/pets", "-H", "x-api-key: gh_unknown_0123456789abcdef"}, "decision:     deny, status 401 ("},
		{[]string{"--request", "GET https://nosuch.example.com/x"}, "decision:     no route matches"},
	} {
		out, errOut, code := run(t, append([]string{"explain", "--spec-dir", "../../deploy/examples"}, c.args...)...)
		if code != 0 {
			t.Fatalf("%v: %d %s", c.args, code, errOut)
		}
		if !strings.Contains(out, c.want) || strings.Contains(out, "map[") || strings.Contains(out, `when=""`) {
			t.Errorf("%v:\n%s\nwant %q and no Go maps", c.args, out, c.want)
		}
	}
	out, _, code := run(t, "explain", "--spec-dir", "../../deploy/examples", "--request", "GET https://petstore.example.com/pets", "-o", "json")
	var r map[string]any
	if code != 0 || json.Unmarshal([]byte(out), &r) != nil || r["route"] != "petstore/list-pets" {
		t.Fatalf("-o json: %d %s", code, out)
	}
	out, _, code = run(t, "explain", "--spec-dir", "../../deploy/examples", "--request", "GET https://petstore.example.com/pets", "-o", "yaml")
	if code != 0 || !strings.Contains(out, "route: petstore/list-pets") {
		t.Fatalf("-o yaml: %d %s", code, out)
	}
}
