package accesslogsidecar_test

import (
	"bytes"
	"encoding/json"
	"net/url"
	"strings"
	"testing"
	"time"

	alv3 "github.com/envoyproxy/go-control-plane/envoy/data/accesslog/v3"
	"github.com/envoyproxy/go-control-plane/pkg/cache/types"
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"

	"github.com/gatehouse-edge/gatehouse/accesslog"
	"github.com/gatehouse-edge/gatehouse/accesslog/accesslogtest"
	"github.com/gatehouse-edge/gatehouse/contract"
	"github.com/gatehouse-edge/gatehouse/internal/testenv"
	"github.com/gatehouse-edge/gatehouse/sidecars/accesslog"
	"github.com/gatehouse-edge/gatehouse/spec"
)

// TestSettingsFromXDS runs a real go-control-plane ADS server, serves the
// settings Compile makes from a spec, and checks the sidecar redacts by
// them; a malformed resource is NACKed and the last good settings stay.
func TestSettingsFromXDS(t *testing.T) {
	x := testenv.StartXDS(t, "127.0.0.1:0")

	docs, err := spec.Parse("petstore.yaml", []byte(petSpec))
	if err != nil {
		t.Fatal(err)
	}
	r := docs[0].EdgeRoute
	r.Spec.Routes[0].AccessLog.Redact = append(r.Spec.Routes[0].AccessLog.Redact, "x-trace")
	ss, err := accesslog.Compile(&r)
	if err != nil {
		t.Fatal(err)
	}
	res, err := contract.Wrap(contract.AccessLogPrefix+"petstore", contract.AccessLogSettingType, ss)
	if err != nil {
		t.Fatal(err)
	}
	// Another concern's resource on the same type must be ignored.
	other, err := contract.Wrap(contract.AuthzPrefix+"petstore", contract.AuthzPolicyType, map[string]any{"x": 1})
	if err != nil {
		t.Fatal(err)
	}
	setSnap := func(version string, rs ...types.Resource) {
		x.Set(t, "accesslog-1", version, map[resourcev3.Type][]types.Resource{resourcev3.ExtensionConfigType: rs})
	}
	setSnap("v1", res, other)

	dir := t.TempDir()
	s := startSidecar(t, dir, func(c *accesslogsidecar.Config) {
		c.SpecDir = ""
		c.XDSServer = x.Addr
		c.NodeID = "accesslog-1"
		c.NodeCluster = "us-east-1"
	})
	c := apiClient{t: t, base: "http://" + s.httpAddr, seen: &bytes.Buffer{}}
	headersOf := func(reqID string) map[string]string {
		t.Helper()
		deadline := time.Now().Add(20 * time.Second)
		for {
			recs := c.logs(url.Values{"request_id": {reqID}}).Records
			if len(recs) == 1 {
				h := map[string]string{}
				if err := json.Unmarshal([]byte(recs[0].Headers), &h); err != nil {
					t.Fatal(err)
				}
				return h
			}
			if time.Now().After(deadline) {
				t.Fatalf("entry %s not stored", reqID)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	entry := func(id string) accesslogtest.Entry {
		e := accesslogtest.Random(3, 1, time.Now().Add(-time.Minute), time.Second)[0]
		e.Route, e.RequestID = "petstore/list-pets", id
		e.Headers = map[string]string{"x-trace": "trace-value", "user-agent": "ua", "x-unlisted": "v"}
		return e
	}
	send(t, s.grpcAddr, []*alv3.HTTPAccessLogEntry{entry("r1").HTTP()}, nil)
	h := headersOf("r1")
	if h["x-trace"] != accesslog.Mask || h["user-agent"] != "ua" || h["x-unlisted"] != "" {
		t.Fatalf("xDS settings not applied: %v", h)
	}
	if !x.Acked("", "v1") {
		t.Fatalf("no ACK seen")
	}
	if v := metric(t, s.httpAddr, "gatehouse_accesslog_settings_routes"); v != 1 {
		t.Fatalf("settings_routes = %v, want 1", v)
	}

	// A resource with the access-log prefix but a wrong payload is NACKed.
	bad, err := contract.Wrap(contract.AccessLogPrefix+"broken", contract.AccessLogSettingType, map[string]any{"spec": "broken", "routes": "not-a-map"})
	if err != nil {
		t.Fatal(err)
	}
	setSnap("v2", res, bad)
	deadline := time.Now().Add(20 * time.Second)
	for {
		if nack := x.NACK(); nack != nil {
			if msg := nack.GetErrorDetail().GetMessage(); !strings.Contains(msg, "broken") {
				t.Fatalf("NACK message %q does not name the resource", msg)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("no NACK for a malformed resource")
		}
		time.Sleep(20 * time.Millisecond)
	}
	if v := metric(t, s.httpAddr, "gatehouse_accesslog_settings_last_reload_success"); v != 0 {
		t.Fatalf("last_reload_success = %v after a NACK", v)
	}
	send(t, s.grpcAddr, []*alv3.HTTPAccessLogEntry{entry("r2").HTTP()}, nil)
	if h := headersOf("r2"); h["x-trace"] != accesslog.Mask {
		t.Fatalf("last good settings lost after NACK: %v", h)
	}

	// A good update without the extra redaction applies.
	r.Spec.Routes[0].AccessLog.Redact = nil
	ss2, _ := accesslog.Compile(&r)
	res2, _ := contract.Wrap(contract.AccessLogPrefix+"petstore", contract.AccessLogSettingType, ss2)
	setSnap("v3", res2)
	deadline = time.Now().Add(20 * time.Second)
	for i := 0; ; i++ {
		id := "r3-" + string(rune('a'+i%26)) + time.Now().Format("150405.000000")
		send(t, s.grpcAddr, []*alv3.HTTPAccessLogEntry{entry(id).HTTP()}, nil)
		if h := headersOf(id); h["x-trace"] == "trace-value" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("settings v3 never applied")
		}
		time.Sleep(50 * time.Millisecond)
	}
}
