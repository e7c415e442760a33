package authzsidecar

import (
	"bytes"
	"log/slog"
	"strings"
	"testing"

	"google.golang.org/protobuf/encoding/prototext"

	"github.com/gatehouse-edge/gatehouse/authz"
	"github.com/gatehouse-edge/gatehouse/contract"
)

// TestCheckRuleErrorQuotesNoRequestValue: over the real gRPC server, a
// rule whose `when` fails on request values (a key looked up from a
// header, the path, a claim) denies (fail closed), and neither the
// CheckResponse (status, denied body and headers, dynamic metadata) nor
// the engine's debug log carries the values, though cel-go's own error
// texts quote them ("no such key: <value>"). (The claim is one no rate
// limit reads: those a rate limit reads travel in the metadata by design.)
func TestCheckRuleErrorQuotesNoRequestValue(t *testing.T) {
	const (
		hdrSecret   = "HDR-s3cr3t-4f1c"
		claimSecret = "CLAIM-s3cr3t-c0de"
		pathSecret  = "PATH-s3cr3t-9e0d"
	)
	for _, when := range []string{
		`request.headers[request.headers["x-api-token"]] == "x"`,
		`identity.claims[request.headers["x-api-token"]] == "x"`,
		`request.headers[identity.claims.sid] == "x"`,
		`request.headers[request.path] == "x"`,
		`timestamp(identity.claims.sid) > timestamp("2020-01-01T00:00:00Z")`,
	} {
		var buf bytes.Buffer
		e, err := authz.NewEngine(authz.Options{Log: slog.New(slog.NewJSONHandler(&buf, &slog.HandlerOptions{Level: slog.LevelDebug}))})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(e.Close)
		p := compileSpec(t, "petstore")
		p.Routes[0].Rules = []authz.Rule{{Allow: false, When: when}, {Allow: true}}
		if err := e.Update([]*authz.SpecPolicy{p}); err != nil {
			t.Fatal(err)
		}
		c := startCheckServer(t, e)
		req := checkRequest("petstore/read", map[string]string{
			"authorization": "Bearer " + token("petstore", func(m map[string]any) { m["sid"] = claimSecret }),
			"x-api-token":   hdrSecret}, "")
		req.Attributes.Request.Http.Path = "/pets/" + pathSecret + "?x=1"
		req.Attributes.Request.Http.Headers[":path"] = req.Attributes.Request.Http.Path
		resp, err := c.Check(ctxT(t), req)
		if err != nil {
			t.Fatal(err)
		}
		if resp.GetDeniedResponse() == nil || resp.GetDeniedResponse().GetStatus().GetCode() != 403 ||
			!strings.Contains(respHeaders(resp)[contract.ReasonHeader], "rule_error") {
			t.Fatalf("%s: a deny rule that cannot be evaluated did not deny: %v", when, resp)
		}
		wire := prototext.Format(resp)
		for _, s := range []string{hdrSecret, claimSecret, pathSecret} {
			if strings.Contains(wire, s) {
				t.Errorf("%s: the CheckResponse carries %q:\n%s", when, s, wire)
			}
		}
		var ruleLog string
		for _, l := range strings.Split(buf.String(), "\n") {
			if strings.Contains(l, "authz rule error") {
				ruleLog += l
			}
		}
		if !strings.Contains(ruleLog, `"rule":"rules[0]"`) {
			t.Errorf("%s: no rule error logged:\n%s", when, buf.String())
		}
		for _, s := range []string{hdrSecret, claimSecret, pathSecret} {
			if strings.Contains(ruleLog, s) {
				t.Errorf("%s: the rule error log carries %q:\n%s", when, s, ruleLog)
			}
		}
	}
}
