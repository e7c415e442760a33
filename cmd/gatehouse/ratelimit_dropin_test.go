package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	ratelimitv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/common/ratelimit/v3"
	rlsv3 "github.com/envoyproxy/go-control-plane/envoy/service/ratelimit/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/gatehouse-edge/gatehouse/internal/testenv"
)

func writeFiles(t *testing.T, files map[string]string) string {
	t.Helper()
	dir := t.TempDir()
	for name, body := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

func runRoot(args ...string) (string, string, error) {
	var out, errOut bytes.Buffer
	root := newRootCmd()
	root.SetOut(&out)
	root.SetErr(&errOut)
	root.SetArgs(args)
	err := root.ExecuteContext(context.Background())
	return out.String(), errOut.String(), err
}

const (
	rlKey1 = "domain: shop\ndescriptors:\n  - key: k1\n    rate_limit: {unit: minute, requests_per_unit: 10}\n"
	rlKey2 = "domain: shop\ndescriptors:\n  - key: k2\n    rate_limit: {unit: minute, requests_per_unit: 20}\n"
)

// TestRatelimitValidate: `gatehouse ratelimit validate DIR` checks a
// config directory offline: exit 0 and a summary when good; exit 1 and
// every problem as file:line: reason when not; MERGE_DOMAIN_CONFIG (or
// --merge-domain-config) as the service reads it.
func TestRatelimitValidate(t *testing.T) {
	good := writeFiles(t, map[string]string{"a.yaml": rlKey1})
	out, _, err := runRoot("ratelimit", "validate", good)
	if err != nil || !strings.Contains(out, "ok "+good+": 1 domain(s): shop (1 descriptors)") {
		t.Fatalf("good dir: %v %q", err, out)
	}
	bad := writeFiles(t, map[string]string{
		"a.yaml": "domain: d\ndescriptors:\n  - key: k\n    rate_limit: {unit: fortnight, requests_per_unit: 1}\n",
		"b.yaml": "domain: e\ndescriptors:\n  - key: k\n    ratelimit: {}\n  - nope\n",
	})
	_, errOut, err := runRoot("ratelimit", "validate", bad)
	var code exitCode
	if !errors.As(err, &code) || code != 1 {
		t.Fatalf("bad dir: err %v", err)
	}
	for _, want := range []string{
		filepath.Join(bad, "a.yaml") + ":4: invalid rate limit unit 'fortnight'",
		filepath.Join(bad, "b.yaml") + ":4: config error, unknown key 'ratelimit'",
		filepath.Join(bad, "b.yaml") + ":5: config error, yaml file contains list of type other than map: nope",
		"3 problem(s)",
	} {
		if !strings.Contains(errOut, want) {
			t.Errorf("stderr lacks %q:\n%s", want, errOut)
		}
	}
	two := writeFiles(t, map[string]string{"a.yaml": rlKey1, "b.yaml": rlKey2})
	if _, errOut, err := runRoot("ratelimit", "validate", two); err == nil || !strings.Contains(errOut, "b.yaml:1: duplicate domain 'shop'") {
		t.Fatalf("without merge: %v %s", err, errOut)
	}
	t.Setenv("MERGE_DOMAIN_CONFIG", "true")
	if out, errOut, err := runRoot("ratelimit", "validate", two); err != nil || !strings.Contains(out, "shop (2 descriptors)") {
		t.Fatalf("MERGE_DOMAIN_CONFIG=true: %v %s %s", err, out, errOut)
	}
	if _, _, err := runRoot("ratelimit", "validate", "--merge-domain-config=false", two); err == nil {
		t.Fatal("the flag does not win over MERGE_DOMAIN_CONFIG")
	}
}

// TestRatelimitUpstreamEnv: `gatehouse ratelimit` reads envoyproxy's
// setting names (MERGE_DOMAIN_CONFIG, LIMIT_RESPONSE_HEADERS_ENABLED,
// LIMIT_*_HEADER, RESPONSE_DYNAMIC_METADATA; QUOTA_MODE below); a
// GATEHOUSE_RATELIMIT_* twin wins over them.
func TestRatelimitUpstreamEnv(t *testing.T) {
	dir := writeFiles(t, map[string]string{"a.yaml": rlKey1, "b.yaml": rlKey2})
	grpcAddr := fmt.Sprintf("127.0.0.1:%d", testenv.FreePort(t))
	adminAddr := fmt.Sprintf("127.0.0.1:%d", testenv.FreePort(t))
	t.Setenv("MERGE_DOMAIN_CONFIG", "true")
	t.Setenv("LIMIT_RESPONSE_HEADERS_ENABLED", "true")
	t.Setenv("LIMIT_LIMIT_HEADER", "X-Upstream-Limit")
	t.Setenv("LIMIT_REMAINING_HEADER", "X-Upstream-Remaining")
	t.Setenv("GATEHOUSE_RATELIMIT_REMAINING_HEADER", "X-Left")
	t.Setenv("RESPONSE_DYNAMIC_METADATA", "true")
	t.Setenv("GATEHOUSE_RATELIMIT_LOG_LEVEL", "warn")
	startRole(t, adminAddr, "ratelimit", "--config-dir", dir, "--grpc-addr", grpcAddr, "--admin-addr", adminAddr)
	conn, err := grpc.NewClient(grpcAddr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	c := rlsv3.NewRateLimitServiceClient(conn)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	one := func(k string) *ratelimitv3.RateLimitDescriptor {
		return &ratelimitv3.RateLimitDescriptor{Entries: []*ratelimitv3.RateLimitDescriptor_Entry{{Key: k, Value: "v"}}}
	}
	resp, err := c.ShouldRateLimit(ctx, &rlsv3.RateLimitRequest{Domain: "shop", Descriptors: []*ratelimitv3.RateLimitDescriptor{one("k1"), one("k2")}})
	if err != nil {
		t.Fatal(err)
	}
	// Both files of domain shop loaded (MERGE_DOMAIN_CONFIG).
	if resp.GetStatuses()[0].GetCurrentLimit().GetRequestsPerUnit() != 10 || resp.GetStatuses()[1].GetCurrentLimit().GetRequestsPerUnit() != 20 {
		t.Fatalf("merged limits: %v", resp.GetStatuses())
	}
	h := map[string]string{}
	for _, hv := range resp.GetResponseHeadersToAdd() {
		h[hv.GetKey()] = hv.GetValue()
	}
	if h["X-Upstream-Limit"] != "10" || h["X-Left"] != "9" || len(h) != 3 {
		t.Fatalf("headers: %v", h)
	}
	if resp.GetDynamicMetadata().GetFields()["domain"].GetStringValue() != "shop" {
		t.Fatalf("dynamic metadata: %v", resp.GetDynamicMetadata())
	}
}

func TestRatelimitUpstreamEnvBadValue(t *testing.T) {
	t.Setenv("QUOTA_MODE", "sometimes")
	_, _, err := runRoot("ratelimit", "--config-dir", t.TempDir())
	if err == nil || !strings.Contains(err.Error(), "QUOTA_MODE") {
		t.Fatalf("err = %v", err)
	}
}
