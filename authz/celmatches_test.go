package authz

import (
	"bytes"
	"context"
	"log/slog"
	"strings"
	"testing"

	"github.com/gatehouse-edge/gatehouse/authn/authntest"
)

// TestCELDynamicPatternFailsClosed: a matches pattern built from request
// data cannot be checked when the spec is validated; the engine compiles
// it per request. A request whose header makes the pattern invalid (a
// syntax error, a repeat over Go's bound, nesting past Go's depth, a
// pattern Go compiles but over the RE2 size bound validation holds path
// regexes and literal patterns to, the header missing) gets no access from an allow rule (the rule does not
// match; with no other rule that is a 403), and a deny rule fails closed
// (403 rule_error, never falling through to a later allow). The same
// rules with a valid header decide by the pattern, so the test sees the
// rule run. Nothing panics (a panic fails the test).
func TestCELDynamicPatternFailsClosed(t *testing.T) {
	// Both overloads of matches.
	for _, dyn := range []string{`request.path.matches(request.headers["x-re"])`, `matches(request.path, request.headers["x-re"])`} {
		decideDynamic(t, dyn)
	}
}

func decideDynamic(t *testing.T, dyn string) {
	p := compile(t, string(authntest.JWKS(key())))
	decide := func(rules []Rule, re *string) Decision {
		t.Helper()
		q := *p
		q.Routes = append([]RoutePolicy(nil), p.Routes...)
		q.Routes[1].Rules = rules
		e, _ := newEngine(t, Options{}, &q)
		h := bearer(token(nil))
		if re != nil {
			h["x-re"] = *re
		}
		return e.Decide(context.Background(), Request{RouteID: "petstore/open", Method: "GET", Path: "/any/pets", Headers: h})
	}
	str := func(s string) *string { return &s }
	bad := map[string]*string{
		"syntax":  str("("),
		"range":   str("[z-a]"),
		"repeat":  str("a{1001}"),
		"size":    str(strings.Repeat("a{1000}", 20)),   // Go compiles it; over the RE2 bound of path regexes
		"nested":  str("(?:a{1000}){1000}"),             // Go refuses nested repeats over 1000
		"huge":    str(strings.Repeat("a{1000}", 1000)), // 7 KB, a program of a million instructions
		"bound":   str("^/any/[a-f0-9]{64}$"),           // a path regex validation refuses
		"nesting": str(strings.Repeat("(", 2000) + strings.Repeat(")", 2000)),
		"missing": nil,
	}
	for name, re := range bad {
		// An allow rule that cannot be evaluated grants nothing.
		if d := decide([]Rule{{Allow: true, When: dyn}}, re); d.Allow || d.Status != 403 || d.ReasonCode != ReasonNoRuleMatched {
			t.Errorf("%s: %s: allow rule with a bad pattern: %+v", dyn, name, d)
		}
		// ... nor does its negation.
		if d := decide([]Rule{{Allow: true, When: "!" + dyn}}, re); d.Allow || d.Status != 403 || d.ReasonCode != ReasonNoRuleMatched {
			t.Errorf("%s: %s: allow rule ! with a bad pattern: %+v", dyn, name, d)
		}
		// A deny rule that cannot be evaluated denies; the allow after
		// it is not reached.
		for _, when := range []string{dyn, "!" + dyn} {
			d := decide([]Rule{{Allow: false, When: when}, {Allow: true}}, re)
			if d.Allow || d.Status != 403 || d.ReasonCode != ReasonRuleError || d.Metadata.Rule != "rules[0]" {
				t.Errorf("%s: deny rule %s with a bad pattern: %+v", name, when, d)
			}
		}
	}
	// Valid patterns: the rules decide by them.
	if d := decide([]Rule{{Allow: true, When: dyn}}, str("^/any/")); !d.Allow || d.Metadata.Rule != "rules[0]" {
		t.Errorf("%s: allow rule, matching pattern: %+v", dyn, d)
	}
	if d := decide([]Rule{{Allow: true, When: dyn}}, str("^/other/")); d.Allow || d.ReasonCode != ReasonNoRuleMatched {
		t.Errorf("%s: allow rule, pattern not matching: %+v", dyn, d)
	}
	if d := decide([]Rule{{Allow: false, When: dyn}, {Allow: true}}, str("^/other/")); !d.Allow || d.Metadata.Rule != "rules[1]" {
		t.Errorf("%s: deny rule, pattern not matching: %+v", dyn, d)
	}
	if d := decide([]Rule{{Allow: false, When: dyn}, {Allow: true}}, str("^/any/")); d.Allow || d.ReasonCode != ReasonRuleDenied {
		t.Errorf("%s: deny rule, matching pattern: %+v", dyn, d)
	}
}

// TestUpdateRefusesBadLiteralPattern: a policy whose `when` has a literal
// matches pattern that validation refuses (one a control plane without
// that check could have shipped) is refused by the engine with the rule's
// field and the reason, and the last good policy keeps serving.
func TestUpdateRefusesBadLiteralPattern(t *testing.T) {
	good := compile(t, string(authntest.JWKS(key())))
	e, _ := newEngine(t, Options{}, good)
	for when, why := range map[string]string{
		`request.path.matches("(")`:                  "error parsing regexp: missing closing )",
		`matches(request.path, "^/x/[a-f0-9]{64}$")`: "too complex for Envoy",
	} {
		bad := *good
		bad.Routes = append([]RoutePolicy(nil), good.Routes...)
		bad.Routes[0].Rules = []Rule{{Allow: true, When: when}}
		err := e.Update([]*SpecPolicy{&bad})
		if err == nil || !strings.Contains(err.Error(), "petstore/read") || !strings.Contains(err.Error(), "rules[0].when") || !strings.Contains(err.Error(), why) {
			t.Errorf("%s: update error = %v, want the route, rules[0].when and %q", when, err, why)
		}
		if d := e.Decide(context.Background(), Request{RouteID: "petstore/read", Headers: bearer(token(nil))}); !d.Allow {
			t.Fatalf("%s: last good policy not kept: %+v", when, d)
		}
	}
}

// TestCELDynamicPatternErrorNotLogged: a pattern made of a header that
// carries a secret (here the cookie) and does not pass is a rule error
// whose debug log says why without quoting any of the header (Go's parse
// error ends with the offending part of the pattern).
func TestCELDynamicPatternErrorNotLogged(t *testing.T) {
	var buf bytes.Buffer
	log := slog.New(slog.NewJSONHandler(&buf, &slog.HandlerOptions{Level: slog.LevelDebug}))
	p := compile(t, string(authntest.JWKS(key())))
	p.Routes[1].Rules = []Rule{{Allow: false, When: `request.path.matches(request.headers["cookie"])`}, {Allow: true}}
	e, _ := newEngine(t, Options{Log: log}, p)
	const secret = "s3cr3t-session"
	for _, v := range []string{"sid=" + secret + "(", "sid=" + secret + "[z-a]", "sid=" + secret + "\\p{Nope}", "sid=" + secret + strings.Repeat("a{1000}", 20)} {
		buf.Reset()
		h := bearer(token(nil))
		h["cookie"] = v
		d := e.Decide(context.Background(), Request{RouteID: "petstore/open", Path: "/any", Headers: h})
		if d.Allow || d.ReasonCode != ReasonRuleError {
			t.Fatalf("%q: %+v", v, d)
		}
		out := buf.String()
		if !strings.Contains(out, "the pattern from the request is refused") {
			t.Fatalf("%q: the log does not say why: %s", v, out)
		}
		if strings.Contains(out, secret) {
			t.Fatalf("%q: the log quotes the header:\n%s", v, out)
		}
	}
}

// TestJoinedPatternCompiledOnce: a matches pattern joined from literals
// ("^/any" + "/pets$") decides as the one literal would and, like it, is
// compiled when the rule is loaded (spec.CompileWhen folds it), not on
// every request: a decision allocates no more than with the literal
// written out (compiling the pattern per request costs dozens of
// allocations).
func TestJoinedPatternCompiledOnce(t *testing.T) {
	p := compile(t, string(authntest.JWKS(key())))
	engine := func(when string) *Engine {
		q := *p
		q.Routes = append([]RoutePolicy(nil), p.Routes...)
		q.Routes[1].Rules = []Rule{{Allow: true, When: when}}
		e, _ := newEngine(t, Options{}, &q)
		return e
	}
	joined, literal := engine(`request.path.matches("^/any" + ("/pe" + "ts$"))`), engine(`request.path.matches("^/any/pets$")`)
	h := bearer(token(nil))
	for _, c := range []struct {
		path  string
		allow bool
	}{{"/any/pets", true}, {"/any/pets/1", false}, {"/other", false}} {
		for name, e := range map[string]*Engine{"joined": joined, "literal": literal} {
			if d := e.Decide(context.Background(), Request{RouteID: "petstore/open", Method: "GET", Path: c.path, Headers: h}); d.Allow != c.allow {
				t.Errorf("%s pattern, %s: allow %v, want %v (%+v)", name, c.path, d.Allow, c.allow, d)
			}
		}
	}
	allocs := func(e *Engine) float64 {
		return testing.AllocsPerRun(200, func() {
			e.Decide(context.Background(), Request{RouteID: "petstore/open", Method: "GET", Path: "/any/pets", Headers: h})
		})
	}
	j, l := allocs(joined), allocs(literal)
	t.Logf("allocations per decision: joined pattern %.1f, literal %.1f", j, l)
	if j > l+10 {
		t.Errorf("a decision with the joined pattern allocates %.1f, with the literal %.1f: the pattern is compiled per request", j, l)
	}
}
