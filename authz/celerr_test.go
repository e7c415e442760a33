package authz

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"testing"
	"time"

	"cel.dev/cel-go/common/types"

	"github.com/gatehouse-edge/gatehouse/authn/authntest"
)

// TestCELEvalErrorsQuoteNoRequestValue: rules whose `when` converts or
// looks up request values (a header, the path, a claim; the query is not
// a CEL variable, so it can only reach a log through the request's own
// log value) fail on a request carrying a distinctive secret in each.
// cel-go's error texts quote such values ("no such key: <key>"); the
// debug log, the Decision (Reason, Body, Metadata) say what failed
// (class, rule, route, position) but never the secret. Fail-closed is
// unchanged: the allow rule does not match, the deny rule denies.
func TestCELEvalErrorsQuoteNoRequestValue(t *testing.T) {
	const (
		hdrSecret    = "HDR-s3cr3t-4f1c"
		cookieSecret = "COOKIE-s3cr3t-77aa"
		pathSecret   = "PATH-s3cr3t-9e0d"
		claimSecret  = "CLAIM-s3cr3t-c0de"
		querySecret  = "QUERY-s3cr3t-51b2"
	)
	secrets := []string{hdrSecret, cookieSecret, pathSecret, claimSecret, querySecret}
	// Path carries a query here, as a caller other than the sidecar
	// (which splits it) might pass it.
	cases := []struct{ when, want string }{
		{`request.headers[request.headers["x-secret"]] == "x"`, "no such key"},
		{`identity.claims[request.headers["cookie"]] == "x"`, "no such key"},
		{`request.headers[request.path] == "x"`, "no such key"},
		{`request.headers[identity.claims.tenant] == "x"`, "no such key"},
		{`identity.claims[identity.claims.tenant].size() > 0`, "no such key"},
		{`int(request.headers["x-secret"]) > 0`, "no such overload"},
		{`uint(request.headers["cookie"]) > 0u`, "no such overload"},
		{`double(request.path) > 0.0`, "type conversion error"},
		{`bool(request.headers["x-secret"])`, "no such overload"},
		{`duration(request.headers["x-secret"]) > duration("1s")`, "no such overload"},
		{`timestamp(identity.claims.tenant) > timestamp("2020-01-01T00:00:00Z")`, "timestamp"},
		{`int(identity.claims.tenant) > 0`, "type conversion error"},
		{`[1][size(request.headers["x-secret"])] == 1`, "index out of bounds"},
		{`request.path.matches(request.headers["cookie"])`, "the pattern from the request is refused"},
	}
	for _, c := range cases {
		for _, allow := range []bool{true, false} {
			var buf bytes.Buffer
			log := slog.New(slog.NewJSONHandler(&buf, &slog.HandlerOptions{Level: slog.LevelDebug}))
			p := compile(t, string(authntest.JWKS(key())))
			if allow {
				p.Routes[1].Rules = []Rule{{Allow: true, When: c.when}}
			} else {
				p.Routes[1].Rules = []Rule{{Allow: false, When: c.when}, {Allow: true}}
			}
			e, _ := newEngine(t, Options{Log: log}, p)
			h := bearer(token(func(m map[string]any) { m["tenant"] = claimSecret }))
			h["x-secret"] = hdrSecret
			h["cookie"] = "sid=" + cookieSecret + "("
			req := Request{RouteID: "petstore/open", Method: "GET", Path: "/any/" + pathSecret + "?token=" + querySecret,
				Query: "api_key=" + querySecret, Headers: h, RequestID: "rid-1"}
			d := e.Decide(context.Background(), req)
			name := fmt.Sprintf("allow=%v %s", allow, c.when)
			switch {
			case allow && (d.Allow || d.Status != 403 || d.ReasonCode != ReasonNoRuleMatched):
				t.Errorf("%s: an allow rule that cannot be evaluated matched: %+v", name, d)
			case !allow && (d.Allow || d.Status != 403 || d.ReasonCode != ReasonRuleError || d.Metadata.Rule != "rules[0]"):
				t.Errorf("%s: a deny rule that cannot be evaluated did not deny: %+v", name, d)
			}
			out := buf.String()
			// The log is useful: the route, the rule and the class.
			if !strings.Contains(out, `"route":"petstore/open"`) || !strings.Contains(out, `"rule":"rules[0]"`) || !strings.Contains(out, c.want) {
				t.Errorf("%s: the log lacks the route, the rule or %q:\n%s", name, c.want, out)
			}
			// The decision log prints the path (not the query) by design;
			// nothing else may carry any of the request's values.
			var ruleLog string
			for _, l := range strings.Split(out, "\n") {
				if strings.Contains(l, "authz rule error") {
					ruleLog += l
				}
			}
			if ruleLog == "" {
				t.Errorf("%s: no rule error logged:\n%s", name, out)
			}
			for _, s := range secrets {
				where := map[string]string{"rule error log": ruleLog, "decision": fmt.Sprintf("%#v", d)}
				if s != pathSecret {
					where["log"] = out
				}
				for w, text := range where {
					if strings.Contains(text, s) {
						t.Errorf("%s: secret %q in the %s:\n%s", name, s, w, text)
					}
				}
			}
		}
	}
}

// TestCELEvalErrorPosition: a labelled error says where in the `when`
// it arose (the spec's text, not the request's).
func TestCELEvalErrorPosition(t *testing.T) {
	var buf bytes.Buffer
	log := slog.New(slog.NewJSONHandler(&buf, &slog.HandlerOptions{Level: slog.LevelDebug}))
	p := compile(t, string(authntest.JWKS(key())))
	p.Routes[1].Rules = []Rule{{Allow: false, When: `request.method == "GET" &&` + "\n" + `  request.headers["x-missing"] == "x"`}, {Allow: true}}
	e, _ := newEngine(t, Options{Log: log}, p)
	if d := e.Decide(context.Background(), Request{RouteID: "petstore/open", Method: "GET", Path: "/any", Headers: bearer(token(nil))}); d.ReasonCode != ReasonRuleError {
		t.Fatalf("%+v", d)
	}
	if out := buf.String(); !strings.Contains(out, "no such key (") || !strings.Contains(out, "(at rules[0].when:2:18)") {
		t.Fatalf("no position in the log:\n%s", out)
	}
}

// TestEvalErrorText: the one place that turns an evaluation error into
// text keeps texts made of names and fixed words, and drops whatever
// follows a class that may quote a value.
func TestEvalErrorText(t *testing.T) {
	const v = "s3cr3t"
	_, numErr := strconv.ParseInt(v, 10, 64)
	_, durErr := time.ParseDuration(v)
	_, tsErr := time.Parse(time.RFC3339, v)
	for _, c := range []struct {
		err  error
		want string
	}{
		{types.NewErr("no such key: %s", v).(*types.Err), "no such key (the rest"},
		{types.NewErr("no such attribute(s): %s", v).(*types.Err), "no such attribute (the rest"},
		{types.NewErr("no such overload: int(string)").(*types.Err), "no such overload: int(string)"},
		{types.NewErr("no such overload: %s", v+"'(").(*types.Err), "no such overload (the rest"},
		{types.NewErr("type conversion error from 'string' to 'int'").(*types.Err), "type conversion error from 'string' to 'int'"},
		{types.NewErr("type conversion error from '%s' to 'int'", v+" x").(*types.Err), "type conversion error (the rest"},
		{types.NewErr("index out of bounds: %d", 7).(*types.Err), "index out of bounds (the rest"},
		{types.NewErr("invalid RFC 3339 timestamp %q", v).(*types.Err), "invalid RFC 3339 timestamp (the rest"},
		{types.NewErr("division by zero").(*types.Err), "division by zero"},
		{types.WrapErr(numErr).(*types.Err), "strconv.ParseInt: invalid syntax"},
		{types.WrapErr(durErr).(*types.Err), "evaluation error ("},
		{types.WrapErr(tsErr).(*types.Err), "evaluation error ("},
		{errors.New(v), "evaluation error ("},
		{newValueFreeErr("matches: refused").(*types.Err), "matches: refused"},
	} {
		got := evalErrorText(c.err)
		if !strings.HasPrefix(got, c.want) || strings.Contains(got, v) {
			t.Errorf("%v: got %q, want %q… without %q", c.err, got, c.want, v)
		}
	}
}
