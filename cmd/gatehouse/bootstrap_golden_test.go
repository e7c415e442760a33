package main

import (
	"os"
	"strings"
	"testing"
)

// TestCheckedInBootstraps: deploy/envoy/*.json are exactly what
// `gatehouse bootstrap` prints for them today (regenerate with `make deploy-envoy`).
func TestCheckedInBootstraps(t *testing.T) {
	for file, args := range bootstrapFiles {
		t.Run(file, func(t *testing.T) {
			want, err := os.ReadFile("../../" + file)
			if err != nil {
				t.Fatal(err)
			}
			out, errOut, code := run(t, append([]string{"bootstrap"}, strings.Fields(args)...)...)
			if code != 0 {
				t.Fatalf("bootstrap %s: exit %d: %s", args, code, errOut)
			}
			if out != string(want) {
				t.Fatalf("%s is stale: run `make deploy-envoy`\n--- got ---\n%s", file, out)
			}
		})
	}
}

// bootstrapFiles are the checked-in Envoy bootstraps and the flags that
// generate them; the Makefile's deploy-envoy target uses the same lines.
var bootstrapFiles = map[string]string{
	"deploy/envoy/dev.json":       "--node-group dev --node-id envoy-dev --xds-server 127.0.0.1:18000 --xds-ca-file .gatehouse/pki/ca.crt --xds-cert-file .gatehouse/pki/envoy-dev.crt --xds-key-file .gatehouse/pki/envoy-dev.key",
	"deploy/envoy/compose.json":   "--node-group dev --node-id envoy-compose --xds-server controlplane:18000 --authz-addr authz:9001 --ratelimit-addr ratelimit:8081 --accesslog-addr accesslog:9002 --admin-addr 127.0.0.1:9901 --health-addr 0.0.0.0:9902 --xds-ca-file /etc/gatehouse/tls/ca.crt --xds-cert-file /etc/gatehouse/tls/node.crt --xds-key-file /etc/gatehouse/tls/node.key",
	"deploy/envoy/us-east-1.json": "--node-group us-east-1 --node-id envoy --xds-server gatehouse-controlplane.gatehouse.svc:18000 --admin-addr 127.0.0.1:9901 --health-addr 0.0.0.0:9902 --xds-ca-file /etc/gatehouse/tls/ca.crt --xds-cert-file /etc/gatehouse/tls/node.crt --xds-key-file /etc/gatehouse/tls/node.key",
}
