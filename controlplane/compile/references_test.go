package compile

import (
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/gatehouse-edge/gatehouse/authz"
	"github.com/gatehouse-edge/gatehouse/ratelimit"
	"github.com/gatehouse-edge/gatehouse/spec"
)

// TestReferenceChecksCatchDisagreement: the per-spec referential checks
// hold for a compiled spec and fire, each with its reason, when the Envoy
// side and a sidecar's side of that spec disagree.
func TestReferenceChecksCatchDisagreement(t *testing.T) {
	res := newCompiler(t).Compile(readRevision(t, filepath.Join("testdata", "golden", "petstore.yaml")))
	if len(res.Published()) != 1 {
		t.Fatalf("petstore did not compile: %+v", res.Specs)
	}
	good := res.Published()[0]
	if err := checkSpecReferences(good, nil); err != nil {
		t.Fatalf("compiled spec fails its own checks: %v", err)
	}
	// A route Envoy sends to ext_authz (not public) and one rate limit.
	var checked authz.RoutePolicy
	for _, rp := range good.policy.Routes {
		if rp.Mode != spec.ModePublic {
			checked = rp
			break
		}
	}
	if checked.ID == "" || len(good.rules.Limits) == 0 {
		t.Fatal("petstore has no authenticated route or no rate limit")
	}
	tamper := func(f func(s *Spec)) *Spec {
		s := *good
		pol := *good.policy
		pol.Routes = slices.Clone(good.policy.Routes)
		s.policy = &pol
		rules := *good.rules
		rules.Limits = slices.Clone(good.rules.Limits)
		s.rules = &rules
		s.clas = slices.Clone(good.clas)
		f(&s)
		return &s
	}
	for _, tc := range []struct {
		name string
		s    *Spec
		want string
	}{
		{name: "authz policy lacks a checked route", s: tamper(func(s *Spec) {
			s.policy.Routes = slices.DeleteFunc(s.policy.Routes, func(rp authz.RoutePolicy) bool { return rp.ID == checked.ID })
		}), want: "the authz policy has no entry for it"},
		{name: "sidecar lacks a limit Envoy asks about", s: tamper(func(s *Spec) {
			s.rules.Limits = s.rules.Limits[1:]
		}), want: "has no rate-limit rule for the sidecar"},
		{name: "sidecar has a limit Envoy never asks about", s: tamper(func(s *Spec) {
			s.rules.Limits = append(s.rules.Limits, ratelimit.SpecLimit{Route: "petstore/nope", Name: "x"})
		}), want: "has no Envoy rate_limits entry"},
		{name: "EDS cluster without endpoints", s: tamper(func(s *Spec) { s.clas = nil }), want: "is EDS but has no endpoints"},
	} {
		err := checkSpecReferences(tc.s, nil)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: error %v, want one containing %q", tc.name, err, tc.want)
		}
	}
}
