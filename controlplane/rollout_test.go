package controlplane_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/gatehouse-edge/gatehouse/controlplane"
)

func (h *harness) waitRollout(phase string) controlplane.State {
	h.t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for time.Now().Before(deadline) {
		if st := h.cp.State(); st.Rollout.Phase == phase {
			return st
		}
		time.Sleep(10 * time.Millisecond)
	}
	h.t.Fatalf("rollout never reached %s: %+v", phase, h.cp.State().Rollout)
	return controlplane.State{}
}

// TestCanaryNACKRollsBack: a new version goes to the canary group only;
// the canary rejects it; the canary is put back on the last good version,
// the fleet never sees the rejected one, and the next revision starts a
// new rollout.
func TestCanaryNACKRollsBack(t *testing.T) {
	h := startControlPlane(t, controlplane.Config{CanaryGroup: "canary", Soak: time.Hour, CanaryMinNACKs: 1},
		map[string]string{"a.yaml": specYAML("a", "a.example.com", "10.0.0.1:80")})
	canary := dialADS(t, h.addr, "canary-1", "canary")
	fleet := dialADS(t, h.addr, "fleet-1", "us-east-1")
	for _, c := range []*adsClient{canary, fleet} {
		c.send(cdsType, nil, "", "", "")
	}
	cv1, fv1 := canary.recv(cdsType), fleet.recv(cdsType)
	if cv1.GetVersionInfo() != fv1.GetVersionInfo() {
		t.Fatalf("first version differs: canary %s, fleet %s", cv1.GetVersionInfo(), fv1.GetVersionInfo())
	}
	v1 := cv1.GetVersionInfo()
	r1 := h.cp.Publisher().State().Served["us-east-1"] // the revision
	canary.send(cdsType, nil, v1, cv1.GetNonce(), "")
	fleet.send(cdsType, nil, v1, fv1.GetNonce(), "")

	// v2 goes to the canary only.
	h.write("a.yaml", strings.Replace(specYAML("a", "a.example.com", "10.0.0.1:80"), `endpoints: ["10.0.0.1:80"]}]`, `endpoints: ["10.0.0.1:80"], connectTimeout: 9s}]`, 1))
	cv2 := canary.recv(cdsType)
	v2 := cv2.GetVersionInfo()
	if v2 == v1 {
		t.Fatal("canary got the old version")
	}
	st := h.waitRollout(controlplane.PhaseSoaking)
	r2 := st.Rollout.Candidate
	if r2 == r1 || h.cp.Publisher().State().Served["canary"] != r2 || st.Rollout.CanaryGroup != "canary" {
		t.Fatalf("rollout = %+v", st.Rollout)
	}

	// The canary rejects it: rollback.
	canary.send(cdsType, nil, v1, cv2.GetNonce(), "cluster a/api: connect_timeout rejected")
	st = h.waitRollout(controlplane.PhaseRolledBack)
	if !strings.Contains(st.Rollout.Reason, "canary-1") || !strings.Contains(st.Rollout.Reason, "connect_timeout rejected") {
		t.Errorf("rollback reason = %q", st.Rollout.Reason)
	}
	if served := h.cp.Publisher().State().Served; served["canary"] != r1 || served["us-east-1"] != r1 {
		t.Errorf("served after rollback = %v, want everyone on %s", served, r1)
	}
	if n := fleet.count(500 * time.Millisecond); n != 0 {
		t.Fatalf("the fleet received %d responses during a failed rollout", n)
	}
	// The canary is never re-sent the rejected version; it may be sent the
	// last good one again (it is being rolled back to it).
	timeout := time.After(500 * time.Millisecond)
drain:
	for {
		select {
		case r := <-canary.resps:
			if r.GetVersionInfo() != v1 {
				t.Fatalf("canary got version %s after its NACK, want nothing or %s", r.GetVersionInfo(), v1)
			}
			canary.send(cdsType, nil, v1, r.GetNonce(), "")
		case <-timeout:
			break drain
		}
	}

	// The next revision starts a new rollout at the canary.
	h.write("a.yaml", specYAML("a", "a.example.com", "10.0.0.3:80"))
	h.waitRollout(controlplane.PhaseSoaking)
	if served := h.cp.Publisher().State().Served; served["us-east-1"] != r1 || served["canary"] == r1 || served["canary"] == r2 {
		t.Errorf("served during the second rollout = %v", served)
	}
}

// TestCanarySoakPromotes: with no NACK during the soak, the fleet follows.
func TestCanarySoakPromotes(t *testing.T) {
	h := startControlPlane(t, controlplane.Config{CanaryGroup: "canary", Soak: 300 * time.Millisecond},
		map[string]string{"a.yaml": specYAML("a", "a.example.com", "10.0.0.1:80")})
	fleet := dialADS(t, h.addr, "fleet-1", "us-east-1")
	fleet.send(cdsType, nil, "", "", "")
	f1 := fleet.recv(cdsType)
	fleet.send(cdsType, nil, f1.GetVersionInfo(), f1.GetNonce(), "")

	h.write("a.yaml", strings.Replace(specYAML("a", "a.example.com", "10.0.0.1:80"), `endpoints: ["10.0.0.1:80"]}]`, `endpoints: ["10.0.0.1:80"], connectTimeout: 9s}]`, 1))
	f2 := fleet.recv(cdsType) // after the soak
	if f2.GetVersionInfo() == f1.GetVersionInfo() {
		t.Fatal("fleet got the same version")
	}
	h.waitRollout(controlplane.PhaseIdle)
	if v := typeVersions(t, h.cp, "us-east-1")[cdsType]; v != f2.GetVersionInfo() {
		t.Errorf("served CDS version %s, fleet got %s", v, f2.GetVersionInfo())
	}
	fleet.send(cdsType, nil, f2.GetVersionInfo(), f2.GetNonce(), "")
	served := h.cp.Publisher().State().Served["us-east-1"]
	runningRevision(t, h.cp, "fleet-1", func(r string) bool { return r == served })
}

// TestBadSpecPrunedAndEmptyNeverPublished: a broken spec is left out with
// its error while the others ship; removing every spec does not replace
// the served config with an empty one.
func TestBadSpecPrunedAndEmptyNeverPublished(t *testing.T) {
	h := startControlPlane(t, controlplane.Config{}, map[string]string{
		"a.yaml": specYAML("a", "a.example.com", "10.0.0.1:80"),
		"b.yaml": strings.Replace(specYAML("b", "b.example.com", "10.0.0.2:80"), "limit: 10/second", "limit: 0/second", 1),
	})
	v := h.waitServed("", func(string) bool { return true })
	st := h.cp.State()
	var bErr string
	for _, s := range st.Specs {
		if s.Name == "b" {
			bErr = s.Error
		}
		if s.Name == "a" && !s.Published {
			t.Errorf("a not published: %+v", s)
		}
	}
	if !strings.Contains(bErr, "spec.routes[0].rateLimits[0].limit") {
		t.Errorf("b's error = %q, want the field path of the bad limit", bErr)
	}
	for _, f := range []string{"a.yaml", "b.yaml"} {
		if err := os.Remove(filepath.Join(h.dir, f)); err != nil {
			t.Fatal(err)
		}
	}
	deadline := time.Now().Add(15 * time.Second)
	for h.cp.State().Refused == "" {
		if time.Now().After(deadline) {
			t.Fatalf("empty revision was not refused: %+v", h.cp.State())
		}
		time.Sleep(10 * time.Millisecond)
	}
	if got := h.cp.Publisher().State().GoodVersion; got != v {
		t.Errorf("good version %s after an empty revision, want %s kept", got, v)
	}
}
