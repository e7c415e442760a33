// Package accesslogtest generates realistic Envoy ALS entries for tests and
// benchmarks of the access-log packages. It is imported by tests and
// benchmark programs only and must not import a store or a sidecar.
package accesslogtest

import (
	"fmt"
	"math/rand/v2"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	alv3 "github.com/envoyproxy/go-control-plane/envoy/data/accesslog/v3"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/structpb"
	"google.golang.org/protobuf/types/known/timestamppb"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/gatehouse-edge/gatehouse/accesslog"
	"github.com/gatehouse-edge/gatehouse/contract"
)

// Entry describes one request; HTTP builds the ALS entry Envoy would send.
type Entry struct {
	Time      time.Time
	Route     string
	Method    corev3.RequestMethod
	Path      string // may carry ?query
	Status    uint32
	ClientIP  string
	Subject   string
	Decision  string
	APIKeyID  string
	RequestID string
	Headers   map[string]string
	Duration  time.Duration
	Flags     *alv3.ResponseFlags
}

// HTTP returns the ALS entry for e.
func (e Entry) HTTP() *alv3.HTTPAccessLogEntry {
	md := map[string]any{"decision": e.Decision}
	if e.Subject != "" {
		md["subject"] = e.Subject
		md["provider"] = "corp"
		md["kind"] = "jwt"
		md["rule"] = "0"
	}
	if e.APIKeyID != "" {
		md["apikey_id"] = e.APIKeyID
		md["kind"] = "apiKey"
		md["provider"] = "partners"
	}
	st, err := structpb.NewStruct(md)
	if err != nil {
		panic(err) // only strings above
	}
	return &alv3.HTTPAccessLogEntry{
		CommonProperties: &alv3.AccessLogCommon{
			StartTime:               timestamppb.New(e.Time),
			Duration:                durationpb.New(e.Duration),
			RouteName:               e.Route,
			AccessLogType:           alv3.AccessLogType_DownstreamEnd,
			DownstreamRemoteAddress: sockAddr(e.ClientIP, 40000+uint32(len(e.RequestID))),
			UpstreamRemoteAddress:   sockAddr("10.0.0.5", 8080),
			UpstreamCluster:         "petstore/api",
			ResponseFlags:           e.Flags,
			TlsProperties:           &alv3.TLSProperties{TlsVersion: alv3.TLSProperties_TLSv1_3, TlsSniHostname: "petstore.example.com"},
			Metadata:                &corev3.Metadata{FilterMetadata: map[string]*structpb.Struct{contract.ExtAuthzNamespace: st}},
		},
		Request: &alv3.HTTPRequestProperties{
			RequestMethod:    e.Method,
			Authority:        "petstore.example.com",
			Path:             e.Path,
			UserAgent:        "curl/8.5.0",
			RequestId:        e.RequestID,
			RequestHeaders:   e.Headers,
			RequestBodyBytes: 120,
		},
		Response: &alv3.HTTPResponseProperties{ResponseCode: wrapperspb.UInt32(e.Status), ResponseBodyBytes: 2048},
	}
}

func sockAddr(ip string, port uint32) *corev3.Address {
	return &corev3.Address{Address: &corev3.Address_SocketAddress{SocketAddress: &corev3.SocketAddress{
		Address: ip, PortSpecifier: &corev3.SocketAddress_PortValue{PortValue: port},
	}}}
}

// Random returns n varied entries spread over [start, start+span), from a
// seeded generator: 20 routes, 5000 client IPs, 2000 subjects, ~8% denied.
func Random(seed uint64, n int, start time.Time, span time.Duration) []Entry {
	rng := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
	out := make([]Entry, n)
	for i := range out {
		e := Entry{
			Time:      start.Add(span / time.Duration(max(n, 1)) * time.Duration(i)),
			Route:     fmt.Sprintf("svc%d/route%d", rng.IntN(5), rng.IntN(4)),
			Method:    corev3.RequestMethod_GET,
			Path:      fmt.Sprintf("/items/%d", rng.IntN(10000)),
			Status:    200,
			ClientIP:  fmt.Sprintf("10.%d.%d.%d", rng.IntN(20), rng.IntN(250), rng.IntN(25)),
			Subject:   fmt.Sprintf("user-%d", rng.IntN(2000)),
			Decision:  "allow",
			RequestID: fmt.Sprintf("req-%d-%d", seed, i),
			Duration:  time.Duration(1+rng.ExpFloat64()*20) * time.Millisecond,
			Headers:   map[string]string{"user-agent": "curl/8.5.0", "authorization": "Bearer tok-" + fmt.Sprint(rng.IntN(1000))},
		}
		switch x := rng.IntN(100); {
		case x < 5:
			e.Status, e.Decision = 403, "deny"
			e.Flags = &alv3.ResponseFlags{UnauthorizedDetails: &alv3.ResponseFlags_Unauthorized{Reason: alv3.ResponseFlags_Unauthorized_EXTERNAL_SERVICE}}
		case x < 8:
			e.Status = 429
			e.Flags = &alv3.ResponseFlags{RateLimited: true}
		case x < 10:
			e.Method = corev3.RequestMethod_POST
			e.Status = 201
		}
		out[i] = e
	}
	return out
}

// RandomRecords is Random as ready records (no protobuf round trip), for
// loading large stores quickly: same distributions, Node "node-<seed%4>".
func RandomRecords(seed uint64, n int, start time.Time, span time.Duration) []accesslog.Record {
	rng := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
	out := make([]accesslog.Record, n)
	routes := make([]string, 20)
	for i := range routes {
		routes[i] = fmt.Sprintf("svc%d/route%d", i/4, i%4)
	}
	for i := range out {
		r := accesslog.Record{
			Time:      start.Add(span / time.Duration(max(n, 1)) * time.Duration(i)).UTC().Truncate(time.Millisecond),
			RequestID: fmt.Sprintf("req-%d-%d", seed, i),
			Kind:      "http", LogType: "DownstreamEnd", Node: fmt.Sprintf("node-%d", seed%4), NodeGroup: "us-east-1",
			Route:     routes[rng.IntN(len(routes))],
			Authority: "api.example.com", Method: "GET",
			Path:       fmt.Sprintf("/items/%d", rng.IntN(10000)),
			Status:     200,
			DurationUS: int64((1 + rng.ExpFloat64()*20) * 1000),
			BytesIn:    120, BytesOut: 2048,
			ClientIP:   fmt.Sprintf("10.%d.%d.%d", rng.IntN(20), rng.IntN(250), rng.IntN(25)),
			ClientPort: uint32(1024 + rng.IntN(60000)),
			TLSVersion: "TLSv1_3", TLSSNI: "api.example.com", UserAgent: "curl/8.5.0",
			Headers:         `{"authorization":"REDACTED","user-agent":"curl/8.5.0"}`,
			UpstreamCluster: "api", UpstreamHost: "10.0.0.5:8080",
			Subject: fmt.Sprintf("user-%d", rng.IntN(2000)), Provider: "corp", AuthKind: "jwt", Rule: "0", Decision: "allow",
		}
		switch x := rng.IntN(100); {
		case x < 5:
			r.Status, r.Decision, r.ResponseFlags = 403, "deny", "UAEX"
		case x < 8:
			r.Status, r.ResponseFlags = 429, "RL"
		case x < 10:
			r.Method, r.Status = "POST", 201
		}
		out[i] = r
	}
	return out
}
