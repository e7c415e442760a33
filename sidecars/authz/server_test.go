package authzsidecar

import (
	"crypto/hmac"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"strings"
	"testing"
	"time"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"github.com/lestrrat-go/jwx/v2/jwa"
	"github.com/lestrrat-go/jwx/v2/jwe"
	"google.golang.org/genproto/googleapis/rpc/code"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/gatehouse-edge/gatehouse/authn/authntest"
	"github.com/gatehouse-edge/gatehouse/authz"
)

func newEngine(t testing.TB, ps ...*authz.SpecPolicy) *authz.Engine {
	t.Helper()
	e, err := authz.NewEngine(authz.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(e.Close)
	if len(ps) > 0 {
		if err := e.Update(ps); err != nil {
			t.Fatal(err)
		}
	}
	return e
}

func respHeaders(r *authv3.CheckResponse) map[string]string {
	out := map[string]string{}
	for _, h := range r.GetDeniedResponse().GetHeaders() {
		out[h.GetHeader().GetKey()] = h.GetHeader().GetValue()
	}
	for _, h := range r.GetOkResponse().GetHeaders() {
		out[h.GetHeader().GetKey()] = h.GetHeader().GetValue()
	}
	return out
}

func TestCheckAllowOverGRPC(t *testing.T) {
	c := startCheckServer(t, newEngine(t, compileSpec(t, "petstore")))
	resp, err := c.Check(ctxT(t), checkRequest("petstore/read", map[string]string{
		"authorization": "Bearer " + token("petstore", nil), "x-user-id": "mallory"}, ""))
	if err != nil {
		t.Fatal(err)
	}
	if resp.GetStatus().GetCode() != int32(code.Code_OK) || resp.GetOkResponse() == nil {
		t.Fatalf("not allowed: %v", resp)
	}
	ok := resp.GetOkResponse()
	if h := respHeaders(resp); h["x-user-id"] != "alice" {
		t.Fatalf("forwarded claim headers = %v", h)
	}
	if ok.GetHeaders()[0].GetAppendAction().String() != "OVERWRITE_IF_EXISTS_OR_ADD" {
		t.Fatal("claim header would be appended to a client-sent value")
	}
	if strings.Join(ok.GetHeadersToRemove(), ",") != "authorization" {
		t.Fatalf("headers to remove = %v", ok.GetHeadersToRemove())
	}
	md := resp.GetDynamicMetadata().AsMap()
	want := map[string]any{"subject": "alice", "provider": "corp", "kind": "jwt", "rule": "rules[0]", "decision": "allow",
		"claims": map[string]any{"tenant": "t-9"}, "config_version": "r1"}
	if got, _ := json.Marshal(md); string(got) != mustJSON(want) {
		t.Fatalf("dynamic metadata = %s, want %s", got, mustJSON(want))
	}

	resp, err = c.Check(ctxT(t), checkRequest("petstore/read", map[string]string{"x-api-key": "acme-key"}, ""))
	if err != nil || resp.GetOkResponse() == nil {
		t.Fatalf("api key: %v %v", resp, err)
	}
	if f := resp.GetDynamicMetadata().GetFields(); f["apikey_id"].GetStringValue() != "acme" || f["kind"].GetStringValue() != "apiKey" {
		t.Fatalf("api key metadata = %v", f)
	}
	resp, err = c.Check(ctxT(t), checkRequest("petstore/read", nil, "spiffe://corp/ns/pets/sa/web"))
	if err != nil || resp.GetOkResponse() == nil || resp.GetDynamicMetadata().GetFields()["subject"].GetStringValue() != "spiffe://corp/ns/pets/sa/web" {
		t.Fatalf("mtls: %v %v", resp, err)
	}
}

func mustJSON(v any) string { b, _ := json.Marshal(v); return string(b) }

// TestCheckSecurity runs the known attacks on token and credential
// checking (unsigned and key-confused tokens, keys from elsewhere, expiry,
// audience and issuer, size, JWE, weak keys, unknown keys and principals,
// unknown routes) end to end over gRPC: each must be denied with the
// right status and reason.
func TestCheckSecurity(t *testing.T) {
	k := key()
	weak := authntest.NewRSA("weak", 1024)
	legacy := compileSpecJWKS(t, "legacy", string(authntest.JWKS(k, weak)))
	c := startCheckServer(t, newEngine(t, compileSpec(t, "petstore"), legacy))
	now := time.Now()
	base := func(mod func(map[string]any)) map[string]any {
		m := map[string]any{"iss": issuer, "aud": "petstore", "sub": "alice", "exp": now.Add(time.Hour).Unix(), "scope": "pets:read"}
		if mod != nil {
			mod(m)
		}
		return m
	}
	pubDER, _ := x509.MarshalPKIXPublicKey(k.Public())
	hs := func() string {
		tok := authntest.Unsigned(map[string]any{"alg": "HS256", "kid": "k1"}, base(nil), nil)
		in := tok[:strings.LastIndex(tok, ".")]
		m := hmac.New(sha256.New, pubDER)
		m.Write([]byte(in))
		return in + "." + base64.RawURLEncoding.EncodeToString(m.Sum(nil))
	}()
	jweTok, err := jwe.Encrypt([]byte(`{}`), jwe.WithKey(jwa.RSA_OAEP_256, k.Public()))
	if err != nil {
		t.Fatal(err)
	}
	evil := authntest.NewRSA("k1", 2048)

	cases := []struct {
		name      string
		route     string
		headers   map[string]string
		status    int
		reason    string
		principal string
	}{
		{name: "alg none", route: "petstore/read", headers: map[string]string{"authorization": "Bearer " + authntest.Unsigned(map[string]any{"alg": "none"}, base(nil), nil)}, status: 401, reason: "algorithm_not_allowed"},
		{name: "HS256 signed with the RSA public key", route: "petstore/read", headers: map[string]string{"authorization": "Bearer " + hs}, status: 401, reason: "algorithm_not_allowed"},
		{name: "jku elsewhere", route: "petstore/read", headers: map[string]string{"authorization": "Bearer " + evil.Sign(base(nil), map[string]any{"jku": "http://127.0.0.1:1/jwks"})}, status: 401, reason: "bad_signature"},
		{name: "x5u elsewhere", route: "petstore/read", headers: map[string]string{"authorization": "Bearer " + evil.Sign(base(nil), map[string]any{"x5u": "http://127.0.0.1:1/c.pem"})}, status: 401, reason: "bad_signature"},
		{name: "embedded jwk", route: "petstore/read", headers: map[string]string{"authorization": "Bearer " + evil.Sign(base(nil), map[string]any{"jwk": evil.PublicJWK()})}, status: 401, reason: "bad_signature"},
		{name: "no exp", route: "petstore/read", headers: map[string]string{"authorization": "Bearer " + k.Sign(base(func(m map[string]any) { delete(m, "exp") }), nil)}, status: 401, reason: "missing_exp"},
		{name: "expired", route: "petstore/read", headers: map[string]string{"authorization": "Bearer " + k.Sign(base(func(m map[string]any) { m["exp"] = now.Add(-time.Hour).Unix() }), nil)}, status: 401, reason: "token_expired"},
		{name: "nbf in the future", route: "petstore/read", headers: map[string]string{"authorization": "Bearer " + k.Sign(base(func(m map[string]any) { m["nbf"] = now.Add(time.Hour).Unix() }), nil)}, status: 401, reason: "token_not_yet_valid"},
		{name: "wrong aud", route: "petstore/read", headers: map[string]string{"authorization": "Bearer " + k.Sign(base(func(m map[string]any) { m["aud"] = "billing" }), nil)}, status: 401, reason: "audience_not_accepted"},
		{name: "wrong iss", route: "petstore/read", headers: map[string]string{"authorization": "Bearer " + k.Sign(base(func(m map[string]any) { m["iss"] = "https://evil.test/" }), nil)}, status: 401, reason: "issuer_not_accepted"},
		{name: "over the size cap", route: "petstore/read", headers: map[string]string{"authorization": "Bearer " + k.Sign(base(func(m map[string]any) { m["pad"] = strings.Repeat("p", 9000) }), nil)}, status: 401, reason: "token_too_large"},
		{name: "JWE", route: "petstore/read", headers: map[string]string{"authorization": "Bearer " + string(jweTok)}, status: 401, reason: "unsupported_token"},
		{name: "malformed base64", route: "petstore/read", headers: map[string]string{"authorization": "Bearer %%%.###.$$$"}, status: 401, reason: "malformed_token"},
		{name: "key not in the JWKS", route: "petstore/read", headers: map[string]string{"authorization": "Bearer " + weak.Sign(base(nil), nil)}, status: 401, reason: "unknown_key"},
		{name: "RSA-1024 key in the JWKS", route: "legacy/read", headers: map[string]string{"authorization": "Bearer " + weak.Sign(base(func(m map[string]any) { m["aud"] = "legacy" }), nil)}, status: 401, reason: "key_refused"},
		{name: "revoked/unknown API key", route: "petstore/read", headers: map[string]string{"x-api-key": "globex-key"}, status: 401, reason: "unknown_api_key"},
		{name: "mTLS principal outside the globs", route: "petstore/read", status: 401, reason: "principal_not_allowed", principal: "spiffe://other/ns/x/sa/y"},
		{name: "missing gatehouse.route", headers: map[string]string{"authorization": "Bearer " + token("petstore", nil)}, status: 403, reason: "unknown_route"},
		{name: "unknown gatehouse.route", route: "petstore/admin", headers: map[string]string{"authorization": "Bearer " + token("petstore", nil)}, status: 403, reason: "unknown_route"},
		{name: "no credentials", route: "petstore/read", status: 401, reason: "no_credentials"},
		{name: "valid token without the scope", route: "petstore/read", headers: map[string]string{"authorization": "Bearer " + k.Sign(base(func(m map[string]any) { m["scope"] = "x" }), nil)}, status: 403, reason: "no_rule_matched"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			resp, err := c.Check(ctxT(t), checkRequest(tc.route, tc.headers, tc.principal))
			if err != nil {
				t.Fatalf("a denial must be a CheckResponse, not a gRPC error: %v", err)
			}
			dr := resp.GetDeniedResponse()
			if dr == nil || resp.GetOkResponse() != nil {
				t.Fatalf("not denied: %v", resp)
			}
			wantCode := code.Code_PERMISSION_DENIED
			if tc.status == 401 {
				wantCode = code.Code_UNAUTHENTICATED
			}
			if int(dr.GetStatus().GetCode()) != tc.status || resp.GetStatus().GetCode() != int32(wantCode) {
				t.Fatalf("status http %d grpc %d, want %d", dr.GetStatus().GetCode(), resp.GetStatus().GetCode(), tc.status)
			}
			h := respHeaders(resp)
			if !strings.HasPrefix(h["x-gatehouse-reason"], tc.reason+": ") {
				t.Fatalf("x-gatehouse-reason = %q, want %s", h["x-gatehouse-reason"], tc.reason)
			}
			if tc.status == 401 {
				w := h["www-authenticate"]
				if !strings.HasPrefix(w, `Bearer realm="`+tc.route+`"`) {
					t.Fatalf("www-authenticate = %q", w)
				}
				if tc.reason != "no_credentials" && !strings.Contains(w, `error="invalid_token", error_description="`) {
					t.Fatalf("www-authenticate = %q", w)
				}
			} else if _, ok := h["www-authenticate"]; ok {
				t.Fatal("403 with a challenge")
			}
			var body struct {
				RequestID string `json:"request_id"`
				Error     string `json:"error"`
			}
			if err := json.Unmarshal([]byte(dr.GetBody()), &body); err != nil || body.RequestID != "rid-42" || body.Error != tc.reason {
				t.Fatalf("body %q: %v", dr.GetBody(), err)
			}
			if d := resp.GetDynamicMetadata().GetFields()["decision"].GetStringValue(); d != "deny" {
				t.Fatalf("metadata decision = %q", d)
			}
			all := dr.GetBody() + mustJSON(h) + mustJSON(resp.GetDynamicMetadata().AsMap())
			for _, v := range tc.headers {
				if len(v) > 12 && strings.Contains(all, strings.TrimPrefix(v, "Bearer ")) {
					t.Fatal("the response echoes the credential")
				}
			}
		})
	}
}

func TestResponseMetadataOnDenyHasSubject(t *testing.T) {
	d := authz.Decision{Status: 403, ReasonCode: "no_rule_matched", Reason: "x\r\ny",
		Metadata: authz.Metadata{Subject: "bob", Provider: "corp", Kind: "jwt", Rule: "no-match", Decision: "deny"}}
	r := Response(&d)
	want, _ := structpb.NewStruct(map[string]any{"subject": "bob", "provider": "corp", "kind": "jwt", "rule": "no-match", "decision": "deny"})
	if mustJSON(r.GetDynamicMetadata().AsMap()) != mustJSON(want.AsMap()) {
		t.Fatalf("metadata = %v", r.GetDynamicMetadata())
	}
	if h := respHeaders(r)["x-gatehouse-reason"]; strings.ContainsAny(h, "\r\n") {
		t.Fatalf("header injection through the reason: %q", h)
	}
}
