package accesslogtest

import (
	"fmt"
	"strings"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	alv3 "github.com/envoyproxy/go-control-plane/envoy/data/accesslog/v3"

	"github.com/gatehouse-edge/gatehouse/accesslog"
	"github.com/gatehouse-edge/gatehouse/spec"
)

// PetSpec is the EdgeRoute the access-log sidecar's tests serve, and the
// one the ingest benchmark (sidecars/accesslog BenchmarkIngestGRPC) serves
// IngestSpecs copies of, under the names IngestSpecName gives.
const PetSpec = `apiVersion: gatehouse/v1
kind: EdgeRoute
metadata: {name: petstore, team: pets}
spec:
  hosts: [petstore.example.com]
  upstreams:
    - {name: api, endpoints: ["192.0.2.10:9080"]}
  identity:
    apiKeys:
      - {name: partners, header: x-partner-key, keys: [{id: acme, sha256: "66e801a8cf159f1994aeaa3f6c3220ad1f7038dc1803667a5a3f41e9f0b45cc1"}]}
  routes:
    - name: list-pets
      match: {pathPrefix: /pets}
      upstream: api
      auth: {anyOf: [partners]}
      accessLog:
        headers: [user-agent, x-request-id, authorization, x-session-ref, x-partner-key, x-trace]
        redact: [x-session-ref]
`

// IngestSpecs is how many specs the ingest benchmark's sidecar serves (a
// sidecar next to an Envoy logs many routes, hosts and upstreams at once;
// a store batch holds a mix of them).
const IngestSpecs = 16

// IngestSpecName is the name of copy k of PetSpec (k = 0 is PetSpec).
func IngestSpecName(k int) string {
	if k == 0 {
		return "petstore"
	}
	return fmt.Sprintf("shop%d", k)
}

// IngestSpec is copy k of PetSpec, renamed.
func IngestSpec(k int) string {
	return strings.ReplaceAll(PetSpec, "petstore", IngestSpecName(k))
}

// IngestRedactor compiles the IngestSpecs copies of PetSpec into the
// redactor the ingest benchmark's sidecar builds from its spec directory
// (no HMAC key: the shipped default).
func IngestRedactor(tb testing.TB) *accesslog.Redactor {
	tb.Helper()
	var specs []*accesslog.SpecSettings
	for k := range IngestSpecs {
		docs, err := spec.Parse(IngestSpecName(k)+".yaml", []byte(IngestSpec(k)))
		if err != nil {
			tb.Fatal(err)
		}
		s, err := accesslog.Compile(&docs[0].EdgeRoute)
		if err != nil {
			tb.Fatal(err)
		}
		specs = append(specs, s)
	}
	return accesslog.NewRedactor(specs, nil)
}

// UniqueEntry is entry i of n of the ingest benchmark: every request id,
// path, query value, client IP and port, user agent, trace header and
// secret differs from every other entry's (no pool is cycled, so DuckDB's
// dictionary compression gets no help a real fleet would not give it);
// routes (of IngestSpecs specs, with their hosts and upstreams), methods,
// statuses and subjects come from realistic bounded sets. The secrets are
// in the headers and query parameters PetSpec and the defaults redact.
func UniqueEntry(i, n int, t0 time.Time) *alv3.HTTPAccessLogEntry {
	h := uint64(i)*0x9e3779b97f4a7c15 ^ 0xd1b54a32d192ed03 // a unique, scrambled 64-bit value
	tok := fmt.Sprintf("sekrit-%016x", h)
	e := Entry{
		Time:      t0.Add(20 * time.Minute / time.Duration(max(n, 1)) * time.Duration(i)),
		Route:     "petstore/list-pets",
		Method:    corev3.RequestMethod_GET,
		Path:      fmt.Sprintf("/pets/%d/photos/%x?page=%d&api_key=%s&sig=%x", i, h>>40, i%97, tok, h),
		Status:    200,
		ClientIP:  fmt.Sprintf("%d.%d.%d.%d", 11+i>>24&0x7f, i>>16&0xff, i>>8&0xff, i&0xff),
		Subject:   fmt.Sprintf("user-%d", h%50000),
		Decision:  "allow",
		RequestID: fmt.Sprintf("%08x-%04x-4%03x-a%03x-%012x", uint32(h), uint16(h>>32), i&0xfff, (i>>12)&0xfff, h>>16),
		Duration:  time.Duration(1+h%40000) * time.Microsecond,
		Headers: map[string]string{
			"authorization": "Bearer " + tok,
			"cookie":        "session=" + tok,
			"x-partner-key": tok,
			"x-session-ref": tok,
			"user-agent":    fmt.Sprintf("Mozilla/5.0 (X11; Linux x86_64) bench/%d.%d", i, h%1000),
			"x-trace":       fmt.Sprintf("trace-%x-%d", h, i),
			"x-not-kept":    "dropped",
		},
	}
	switch h % 100 {
	case 0, 1, 2, 3, 4:
		e.Status, e.Decision = 403, "deny"
		e.Flags = &alv3.ResponseFlags{UnauthorizedDetails: &alv3.ResponseFlags_Unauthorized{Reason: alv3.ResponseFlags_Unauthorized_EXTERNAL_SERVICE}}
	case 5, 6, 7:
		e.Status = 429
		e.Flags = &alv3.ResponseFlags{RateLimited: true}
	case 8, 9:
		e.Method, e.Status = corev3.RequestMethod_POST, 201
	}
	out := e.HTTP()
	name := IngestSpecName(int(h>>20) % IngestSpecs)
	out.CommonProperties.RouteName = name + "/list-pets"
	out.CommonProperties.UpstreamCluster = name + "/api"
	out.CommonProperties.TlsProperties.TlsSniHostname = name + ".example.com"
	out.Request.Authority = name + ".example.com"
	out.Request.UserAgent = e.Headers["user-agent"]
	out.CommonProperties.DownstreamRemoteAddress = &corev3.Address{Address: &corev3.Address_SocketAddress{SocketAddress: &corev3.SocketAddress{
		Address: e.ClientIP, PortSpecifier: &corev3.SocketAddress_PortValue{PortValue: uint32(1024 + i%64000)},
	}}}
	return out
}
