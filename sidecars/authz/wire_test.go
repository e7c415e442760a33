package authzsidecar

import (
	"context"
	"net"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"github.com/google/go-cmp/cmp"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/testing/protocmp"

	"github.com/gatehouse-edge/gatehouse/authn/authntest"
	"github.com/gatehouse-edge/gatehouse/authz"
)

// wireDecisions covers every shape of answer: allow with and without
// forwarded headers, removals, claims and API key ids; deny 401 with a
// challenge and 403 without; shadow; empty strings; lengths that need a
// two- and three-byte varint.
func wireDecisions() []authz.Decision {
	long := strings.Repeat("b", 200)
	huge := strings.Repeat("h", 20000)
	return []authz.Decision{
		{},
		{Allow: true, Status: 200, Metadata: authz.Metadata{Decision: "allow", Rule: "public"}},
		{Allow: true, Status: 200, ReasonCode: "allowed", HeadersToSet: []authz.Header{{Name: "x-user-id", Value: "alice"}, {Name: "x-tenant", Value: ""}, {Name: "", Value: "v"}},
			HeadersToRemove: []string{"authorization", "x-gatehouse-debug", ""}, QueryToRemove: []string{"api_key", ""},
			Metadata: authz.Metadata{Subject: "alice", Provider: "corp", Kind: "jwt", Rule: "rules[0]", Decision: "allow", Claims: map[string]string{"tenant": "t-9", "plan": "", "": "x", "group": long}}},
		{Allow: true, Status: 200, Metadata: authz.Metadata{Subject: "acme", Provider: "partners", Kind: "apiKey", APIKeyID: "acme", Rule: "rules[1]", Decision: "allow"}},
		{Allow: true, Status: 200, Metadata: authz.Metadata{Subject: "spiffe://corp/ns/pets/sa/web", Provider: "internal", Kind: "mtls", Decision: "shadow-deny", Rule: "no-match"}},
		{Status: 401, ReasonCode: "token_expired", Reason: "token expired", WWWAuthenticate: `Bearer realm="petstore/read", error="invalid_token", error_description="token expired"`,
			Body: `{"status":401,"error":"token_expired","reason":"token expired","request_id":"rid-42"}`, Metadata: authz.Metadata{Provider: "corp", Kind: "jwt", Decision: "deny"}},
		{Status: 403, ReasonCode: "no_rule_matched", Reason: "no rule\r\nof the route \xff allows", Body: long,
			Metadata: authz.Metadata{Subject: "bob", Provider: "corp", Kind: "jwt", Rule: "no-match", Decision: "deny", Claims: map[string]string{"tenant": "t-1"}}},
		{Status: 403, ReasonCode: "unknown_route", Reason: huge, Body: huge, Metadata: authz.Metadata{Decision: "deny"}},
		{Status: 500, ReasonCode: "internal_error", Metadata: authz.Metadata{Decision: "deny", Subject: "é ü 日本"}},
		{Allow: true, Status: 200, HeadersToSet: []authz.Header{{Name: "x-user-id", Value: huge}}, Metadata: authz.Metadata{Decision: "allow", Claims: map[string]string{"k": huge}}},
	}
}

// The pre-encoded response is the message Check returns: decoded, it
// equals fullResponse field by field, for every decision shape, with and
// without a config version.
func TestWireResponseMatchesResponse(t *testing.T) {
	for i, d := range wireDecisions() {
		for _, version := range []string{"", "r1", "config_version"} {
			want := fullResponse(&d, version)
			b, ok := appendResponse(nil, &d, version)
			if !ok {
				t.Fatalf("decision %d: not encoded", i)
			}
			got := new(authv3.CheckResponse)
			if err := proto.Unmarshal(b, got); err != nil {
				t.Fatalf("decision %d: %v", i, err)
			}
			if diff := cmp.Diff(want, got, protocmp.Transform()); diff != "" {
				t.Fatalf("decision %d version %q: wire response differs (-Response +wire):\n%s", i, version, diff)
			}
			// The same length as protobuf's own encoding.
			if n := proto.Size(want); n != len(b) {
				t.Fatalf("decision %d: %d bytes, proto.Size %d", i, len(b), n)
			}
		}
	}
}

// A string that is not valid UTF-8 cannot travel in a proto3 message:
// proto.Marshal refuses the response, and the wire form falls back to it
// so the call fails exactly as before.
func TestWireResponseInvalidUTF8FallsBack(t *testing.T) {
	for _, d := range []authz.Decision{
		{Allow: true, HeadersToSet: []authz.Header{{Name: "x-user-id", Value: "a\xffb"}}},
		{Allow: true, HeadersToRemove: []string{"\xc3"}},
		{Allow: true, QueryToRemove: []string{"\xc3"}},
		{Status: 401, ReasonCode: "x\xff"},
		{Status: 401, WWWAuthenticate: "\xff"},
		{Status: 403, Body: "\xff"},
		{Metadata: authz.Metadata{Subject: "\xff"}},
		{Metadata: authz.Metadata{Claims: map[string]string{"\xff": "v"}}},
		{Metadata: authz.Metadata{Claims: map[string]string{"k": "\xff"}}},
	} {
		if _, ok := appendResponse(nil, &d, ""); ok {
			t.Fatalf("%+v: encoded", d)
		}
		if _, err := proto.Marshal(fullResponse(&d, "")); err == nil {
			t.Fatalf("%+v: proto.Marshal accepts it", d)
		}
		w := newWireResponse(&d, "")
		if _, err := newCodec().Marshal(w); err == nil {
			t.Fatalf("%+v: the codec sends it", d)
		}
	}
}

// fixedDecider answers every request with one decision.
type fixedDecider struct{ d authz.Decision }

func (f fixedDecider) Decide(context.Context, authz.Request) authz.Decision { return f.d }

// serveBoth serves ext_authz for d twice on 127.0.0.1:0: as the sidecar
// does (RegisterServer, ServerOptions) and as before this change (the
// generated service over gRPC's default codec); plain: RegisterServer
// without the sidecar's codec.
func serveBoth(t *testing.T, d Decider) (wire, old, plain authv3.AuthorizationClient) {
	t.Helper()
	serve := func(opts []grpc.ServerOption, reg func(*grpc.Server)) authv3.AuthorizationClient {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		gs := grpc.NewServer(opts...)
		reg(gs)
		go func() { _ = gs.Serve(l) }()
		t.Cleanup(gs.Stop)
		return dial(t, l.Addr().String())
	}
	s := NewServer(d)
	wire = serve(ServerOptions(), func(gs *grpc.Server) { RegisterServer(gs, s) })
	old = serve(nil, func(gs *grpc.Server) { authv3.RegisterAuthorizationServer(gs, s) })
	plain = serve(nil, func(gs *grpc.Server) { RegisterServer(gs, s) })
	return wire, old, plain
}

// Over real gRPC, the sidecar's answers equal the generated service's for
// every decision shape, and a response that cannot be marshalled fails
// the call with the same status.
func TestWireResponseOverGRPC(t *testing.T) {
	ds := append(wireDecisions(), authz.Decision{Allow: true, HeadersToSet: []authz.Header{{Name: "x-user-id", Value: "a\xffb"}}})
	for i, d := range ds {
		wire, old, plain := serveBoth(t, fixedDecider{d})
		req := checkRequest("petstore/read", nil, "")
		want, wantErr := old.Check(ctxT(t), req)
		for name, c := range map[string]authv3.AuthorizationClient{"sidecar codec": wire, "default codec": plain} {
			got, err := c.Check(ctxT(t), req)
			if (err == nil) != (wantErr == nil) || status.Code(err) != status.Code(wantErr) {
				t.Fatalf("decision %d, %s: error %v, before %v", i, name, err, wantErr)
			}
			if diff := cmp.Diff(want, got, protocmp.Transform()); diff != "" {
				t.Fatalf("decision %d, %s: (-before +now):\n%s", i, name, diff)
			}
		}
		if i == len(ds)-1 && status.Code(wantErr) != codes.Internal {
			t.Fatalf("invalid UTF-8: %v, want Internal", wantErr)
		}
	}
}

// The golden comparison on the real engine: allow (JWT, API key, mTLS),
// invalid token, expired, wrong audience, unknown key, no credentials,
// unknown route, no rule matched, each Check answered by the sidecar's
// service and by the generated one over gRPC, compared as whole
// CheckResponse protos.
func TestCheckResponsesUnchanged(t *testing.T) {
	e := newEngine(t, compileSpec(t, "petstore"))
	wire, old, plain := serveBoth(t, e)
	now := time.Now()
	foreign := authntest.NewRSA("k1", 2048)
	bearer := func(mod func(map[string]any)) map[string]string {
		return map[string]string{"authorization": "Bearer " + token("petstore", mod)}
	}
	reqs := []*authv3.CheckRequest{
		checkRequest("petstore/read", bearer(nil), ""),
		checkRequest("petstore/read", map[string]string{"authorization": "Bearer " + token("petstore", nil), "x-gatehouse-debug": "1", "x-user-id": "mallory"}, ""),
		checkRequest("petstore/read", bearer(func(m map[string]any) { m["sub"] = "bob"; m["tenant"] = "t-2"; m["jti"] = "j" }), ""),
		checkRequest("petstore/read", bearer(func(m map[string]any) { m["exp"] = now.Add(-time.Hour).Unix() }), ""),
		checkRequest("petstore/read", bearer(func(m map[string]any) { m["aud"] = "billing" }), ""),
		checkRequest("petstore/read", bearer(func(m map[string]any) { m["scope"] = "x" }), ""),
		checkRequest("petstore/read", map[string]string{"authorization": "Bearer " + foreign.Sign(map[string]any{"iss": issuer, "aud": "petstore", "exp": now.Add(time.Hour).Unix()}, nil)}, ""),
		checkRequest("petstore/read", map[string]string{"authorization": "Bearer eyJhbGciOiJSUzI1NiJ9.x.!!"}, ""),
		checkRequest("petstore/read", map[string]string{"x-api-key": "acme-key"}, ""),
		checkRequest("petstore/read", map[string]string{"x-api-key": "globex-key"}, ""),
		checkRequest("petstore/read", nil, "spiffe://corp/ns/pets/sa/web"),
		checkRequest("petstore/read", nil, "spiffe://other/ns/x/sa/y"),
		checkRequest("petstore/read", nil, ""),
		checkRequest("petstore/admin", bearer(nil), ""),
		checkRequest("", bearer(nil), ""),
		{},
	}
	noVersion := checkRequest("petstore/read", bearer(nil), "")
	delete(noVersion.Attributes.ContextExtensions, "gatehouse.revision")
	badVersion := checkRequest("petstore/read", bearer(nil), "")
	badVersion.Attributes.ContextExtensions["gatehouse.revision"] = "r 1"
	reqs = append(reqs, noVersion, badVersion)
	for i, req := range reqs {
		want, err := old.Check(ctxT(t), req)
		if err != nil {
			t.Fatalf("request %d: before: %v", i, err)
		}
		for name, c := range map[string]authv3.AuthorizationClient{"sidecar codec": wire, "default codec": plain} {
			got, err := c.Check(ctxT(t), req)
			if err != nil {
				t.Fatalf("request %d, %s: %v", i, name, err)
			}
			if diff := cmp.Diff(want, got, protocmp.Transform()); diff != "" {
				t.Fatalf("request %d, %s: (-before +now):\n%s", i, name, diff)
			}
		}
	}
}

// Concurrent Checks of different callers each get their own subject,
// claims and headers (run with -race).
func TestWireResponsesConcurrentCallers(t *testing.T) {
	c := startCheckServer(t, newEngine(t, compileSpec(t, "petstore")))
	const callers, rounds = 8, 25
	reqs := make([]*authv3.CheckRequest, callers)
	for i := range reqs {
		u := strconv.Itoa(i)
		reqs[i] = checkRequest("petstore/read", map[string]string{"authorization": "Bearer " + token("petstore", func(m map[string]any) {
			m["sub"] = "user-" + u
			m["tenant"] = "t-" + u
		})}, "")
	}
	var wg sync.WaitGroup
	errs := make(chan error, callers)
	for i := range callers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			u := strconv.Itoa(i)
			for range rounds {
				resp, err := c.Check(context.Background(), reqs[i])
				if err != nil {
					errs <- err
					return
				}
				f := resp.GetDynamicMetadata().GetFields()
				if f["subject"].GetStringValue() != "user-"+u || f["claims"].GetStructValue().GetFields()["tenant"].GetStringValue() != "t-"+u ||
					respHeaders(resp)["x-user-id"] != "user-"+u {
					errs <- &mixup{u, resp}
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
}

type mixup struct {
	user string
	resp *authv3.CheckResponse
}

func (m *mixup) Error() string { return "user-" + m.user + " got " + m.resp.String() }

// FuzzWireResponse: for any strings in a decision, the wire form decodes
// to fullResponse's message, or (invalid UTF-8) is refused exactly when
// proto.Marshal refuses that message.
func FuzzWireResponse(f *testing.F) {
	f.Add(true, 200, "allowed", "reason", "x-user-id", "alice", "authorization", "alice", "t-9", "r1")
	f.Add(false, 401, "token_expired", "token expired", "", "", "", "", "", "")
	f.Add(false, 403, "x", strings.Repeat("r", 300), "k", "\xff", "\xc3", "é", "", "v v")
	f.Fuzz(func(t *testing.T, allow bool, st int, code, reason, hk, hv, remove, subject, claim, version string) {
		d := authz.Decision{Allow: allow, Status: st, ReasonCode: code, Reason: reason, WWWAuthenticate: reason, Body: reason + code,
			HeadersToSet: []authz.Header{{Name: hk, Value: hv}}, HeadersToRemove: []string{remove}, QueryToRemove: []string{remove, hk},
			Metadata: authz.Metadata{Subject: subject, Provider: hk, Kind: hv, APIKeyID: claim, Rule: remove, Decision: code, Claims: map[string]string{claim: subject, hk: hv}}}
		want := fullResponse(&d, version)
		_, merr := proto.Marshal(want)
		b, ok := appendResponse(nil, &d, version)
		if ok != (merr == nil) {
			t.Fatalf("encoded %v, proto.Marshal error %v", ok, merr)
		}
		if !ok {
			return
		}
		got := new(authv3.CheckResponse)
		if err := proto.Unmarshal(b, got); err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff(want, got, protocmp.Transform()); diff != "" {
			t.Fatalf("(-Response +wire):\n%s", diff)
		}
	})
}
