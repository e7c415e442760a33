package authzsidecar

import (
	"context"
	"strings"
	"testing"

	"google.golang.org/genproto/googleapis/rpc/code"
)

// FuzzCheck drives the whole Check path (CheckRequest → engine →
// CheckResponse) with arbitrary route ids, credentials, paths and
// principals. It must never panic or return a gRPC error; it answers OK
// only for a known route with valid credentials, otherwise 401/403 with a
// reason header free of line breaks.
func FuzzCheck(f *testing.F) {
	s := NewServer(newEngine(f, compileSpec(f, "petstore")))
	valid := token("petstore", nil)
	f.Add("petstore/read", "Bearer "+valid, "", "/pets/1?x=1", "")
	f.Add("petstore/read", "", "acme-key", "/pets", "")
	f.Add("petstore/read", "", "", "/pets", "spiffe://corp/ns/a/sa/b")
	f.Add("", "Bearer "+valid, "", "/", "")
	f.Add("petstore/read", "Bearer a.b.c", "", "/?api_key=x", "")
	f.Add("petstore/read", "bearer "+valid+"\r\nx: y", "x\x00", "/\xff", "spiffe://corp/ns/*/sa/*")
	f.Fuzz(func(t *testing.T, route, authorization, apiKey, path, principal string) {
		h := map[string]string{}
		if authorization != "" {
			h["authorization"] = authorization
		}
		if apiKey != "" {
			h["x-api-key"] = apiKey
		}
		req := checkRequest(route, h, principal)
		req.Attributes.Request.Http.Path = path
		resp, err := s.Check(context.Background(), req)
		if err != nil || resp == nil {
			t.Fatalf("Check: %v, %v", resp, err)
		}
		if resp.GetOkResponse() != nil {
			if resp.GetStatus().GetCode() != int32(code.Code_OK) || route != "petstore/read" {
				t.Fatalf("allowed route %q: %v", route, resp)
			}
			if resp.GetDynamicMetadata().GetFields()["subject"].GetStringValue() == "" {
				t.Fatalf("allowed without a subject: %v", resp)
			}
			return
		}
		dr := resp.GetDeniedResponse()
		if st := dr.GetStatus().GetCode(); st != 401 && st != 403 {
			t.Fatalf("deny status %d", st)
		}
		for _, hv := range dr.GetHeaders() {
			if strings.ContainsAny(hv.GetHeader().GetValue(), "\r\n\x00") {
				t.Fatalf("header %s carries a line break: %q", hv.GetHeader().GetKey(), hv.GetHeader().GetValue())
			}
		}
	})
}
