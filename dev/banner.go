package dev

import (
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"text/tabwriter"
	"time"
)

// printBanner prints the roles and what to try. It advertises only what
// this suite serves: the example routes, tokens, the demo key and the
// commands that use them appear only when the route store holds that
// example (served, by spec name), and the front door's curl lines only
// when the front door listens. (status-page's upstream is a DNS name
// that does not resolve on a dev machine, so it gets no curl line.)
func printBanner(w io.Writer, c Config, ep Endpoints, idp *IdP, served map[string]bool) {
	passwordFile := filepath.Join(c.DataDir, "broker-password")
	tokenFile := filepath.Join(c.DataDir, "accesslog-token")
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "\nROLE\tADDRESS\tWHAT")
	rows := [][3]string{
		{"broker", ep.Broker, "OSB API, basic auth " + ep.BrokerUser + " / password in " + passwordFile + "; admin http://" + c.BrokerAdminAddr},
		{"controlplane", ep.XDS, "xDS (ADS, mutual TLS); admin and /debug on " + ep.ControlPlaneAdmin},
		{"authz", ep.Authz, "ext_authz gRPC (mutual TLS); admin http://" + c.AuthzAdminAddr},
		{"ratelimit", ep.RateLimit, "RLS gRPC (mutual TLS); admin http://" + c.RateLimitAdmin},
		{"accesslog", ep.AccessLogGRPC, "ALS gRPC (mutual TLS); query API and web page " + ep.AccessLogAPI},
	}
	if ep.FrontDoor != "" {
		rows = append(rows, [3]string{"front-door", ep.FrontDoor, "HTTP; plays an Envoy of node group " + c.NodeGroup + ", with its certificate (dev only; production runs Envoy)"})
	}
	petstore, status := served["petstore"], served["status-page"]
	if petstore {
		rows = append(rows,
			[3]string{"demo-idp", ep.IdP, "JWKS of the petstore example (dev only)"},
			[3]string{"demo-echo", ep.Echo, "the petstore upstream (dev only)"},
		)
	} else {
		rows = append(rows,
			[3]string{"demo-idp", ep.IdP, "demo JWT issuer, tokens from `bin/gatehouse dev token` (dev only)"},
			[3]string{"demo-echo", ep.Echo, "demo upstream that echoes the request (dev only)"},
		)
	}
	for _, r := range rows {
		fmt.Fprintf(tw, "%s\t%s\t%s\n", r[0], r[1], r[2])
	}
	tw.Flush()

	if ep.PKI != nil {
		fmt.Fprintf(w, `
mutual TLS: xDS and the sidecars' gRPC trust the throwaway CA %s; an Envoy of node group %q
presents %s (key %s). Attach one with:
  bin/gatehouse bootstrap --node-group %s --xds-server %s --authz-addr %s --ratelimit-addr %s --accesslog-addr %s \
    --xds-ca-file %s --xds-cert-file %s --xds-key-file %s
`, ep.PKI.CAFile, c.NodeGroup, ep.PKI.EnvoyCertFile, ep.PKI.EnvoyKeyFile,
			c.NodeGroup, ep.XDS, ep.Authz, ep.RateLimit, ep.AccessLogGRPC,
			absPath(ep.PKI.CAFile), absPath(ep.PKI.EnvoyCertFile), absPath(ep.PKI.EnvoyKeyFile))
		if ep.FrontDoor != "" {
			fmt.Fprintf(w, "  (its listener binds %s; move the front door out of its way with --front-door-addr)\n", c.EnvoyListenerAddr)
		}
	}
	if petstore || status {
		fmt.Fprintf(w, "\nexample routes (node group %q):\n", c.NodeGroup)
		if petstore {
			fmt.Fprint(w, `  GET  https://petstore.example.com/pets        JWT with scope pets:read, or API key (plan gold); 100/min per user
  POST https://petstore.example.com/pets/adopt  JWT in group adopters; token bucket 10/min, burst 3
  GET  https://petstore.example.com/healthz     public
`)
		}
		if status {
			fmt.Fprint(w, "  GET  https://status.example.com/              public; 50/s per client IP\n")
		}
	} else {
		fmt.Fprintf(w, "\nno example routes provisioned (node group %q)\n", c.NodeGroup)
	}

	fmt.Fprintln(w, "\ntry:")
	if petstore {
		alice, err := idp.Mint(TokenRequest{Subject: "alice", Scopes: []string{"pets:read"}, Groups: []string{"adopters"}, TTL: 12 * time.Hour}, time.Now())
		if err != nil {
			alice = "(minting failed: " + err.Error() + ")"
		}
		bob, err := idp.Mint(TokenRequest{Subject: "bob", Scopes: []string{"pets:read"}, TTL: 12 * time.Hour}, time.Now())
		if err != nil {
			bob = "(minting failed: " + err.Error() + ")"
		}
		fmt.Fprintf(w, "  ALICE='%s'  # sub alice, scope pets:read, group adopters; 12h\n", alice)
		fmt.Fprintf(w, "  BOB='%s'  # sub bob, scope pets:read, no groups; 12h\n", bob)
	}
	if ep.FrontDoor != "" {
		for _, l := range frontDoorLines(ep.FrontDoor, petstore) {
			fmt.Fprintln(w, "  "+l)
		}
	}
	if petstore && c.ExamplesDir != "" {
		fmt.Fprintf(w, "  bin/gatehouse explain --spec-dir %s --jwks-allow %s --request 'GET https://petstore.example.com/pets' -H \"authorization: Bearer $ALICE\"\n", c.ExamplesDir, c.IdPAddr)
		fmt.Fprintf(w, "  bin/gatehouse explain --spec-dir %s --request 'GET https://petstore.example.com/pets' -H 'x-api-key: %s'\n", c.ExamplesDir, DemoAPIKey)
	}
	if petstore {
		fmt.Fprintf(w, "  bin/gatehouse dev token --data-dir %s --sub bob --scope pets:read\n", c.DataDir)
		fmt.Fprintf(w, "  bin/gatehouse routes status petstore --broker-url %s --password-file %s\n", ep.Broker, passwordFile)
	}
	// Not petstore.yaml: its upstream is a documentation address that dev
	// swaps for the echo upstream at provision; applied as is, it would
	// point petstore away from it.
	if f := filepath.Join(c.ExamplesDir, "status-page.yaml"); status && c.ExamplesDir != "" && fileExists(f) {
		fmt.Fprintf(w, "  bin/gatehouse routes apply -f %s --wait --broker-url %s --password-file %s\n", f, ep.Broker, passwordFile)
	}
	fmt.Fprintf(w, "  bin/gatehouse logs query --since 1h --server %s --token-file %s\n", ep.AccessLogAPI, tokenFile)
	fmt.Fprintf(w, "  curl -s -u %s:$(cat %s) -H 'X-Broker-API-Version: 2.17' %s/v2/catalog\n", ep.BrokerUser, passwordFile, ep.Broker)
	fmt.Fprintf(w, "  open %s/ in a browser (token: %s)\n", ep.AccessLogAPI, tokenFile)
	if petstore {
		fmt.Fprintf(w, "\ndemo API key of the petstore example: %s\n", DemoAPIKey)
	}
	fmt.Fprintf(w, "\nCtrl-C stops everything; data stays in %s.\n", c.DataDir)
}

// frontDoorLines are the banner's curl lines through the front door, each
// with the status (or statuses) it shows after "# ". They use the ALICE
// and BOB variables the banner sets just before.
func frontDoorLines(base string, petstore bool) []string {
	curl := func(method, host, path string, headers ...string) string {
		var b strings.Builder
		b.WriteString(`curl -s -o /dev/null -w '%{http_code}\n'`)
		if method != "GET" {
			b.WriteString(" -X " + method)
		}
		b.WriteString(" -H 'host: " + host + "'")
		for _, h := range headers {
			if strings.Contains(h, "$") {
				b.WriteString(` -H "` + h + `"`)
			} else {
				b.WriteString(" -H '" + h + "'")
			}
		}
		b.WriteString(" " + base + path)
		return b.String()
	}
	const ps = "petstore.example.com"
	var out []string
	if petstore {
		out = append(out,
			curl("GET", ps, "/healthz")+"  # 200 public route",
			curl("GET", ps, "/pets")+"  # 401 no credentials",
			curl("GET", ps, "/pets", "authorization: Bearer $ALICE")+"  # 200 scope pets:read",
			curl("GET", ps, "/pets", "x-api-key: "+DemoAPIKey)+"  # 200 demo API key, plan gold",
			curl("POST", ps, "/pets/adopt", "authorization: Bearer $BOB")+"  # 403 bob is not in group adopters",
			"for i in 1 2 3 4; do "+curl("POST", ps, "/pets/adopt", "authorization: Bearer $ALICE")+"; done  # 200 200 200 429 (burst 3, then 10/min)",
		)
	}
	return out
}

func fileExists(path string) bool {
	_, err := os.Stat(path)
	return err == nil
}
