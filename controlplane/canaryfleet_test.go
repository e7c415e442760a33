package controlplane_test

import (
	"testing"
	"time"

	"github.com/gatehouse-edge/gatehouse/controlplane"
)

// TestCanaryNACKBelowMinIsNoFleetNACK: a canary node's NACK that does
// not yet reach --canary-min-nacks is not handled as a fleet node's NACK
// either: the rollout keeps soaking, no spec is pruned or reported
// failed, and the candidate stays what the canary is served. (Canary
// NACKs roll back once enough distinct authenticated canary nodes agree;
// only NACKs from outside the canary group prune specs.)
func TestCanaryNACKBelowMinIsNoFleetNACK(t *testing.T) {
	h := startTLSControlPlane(t, controlplane.Config{CanaryGroup: "canary", Soak: time.Hour},
		map[string]string{
			"a.yaml": specYAML("a", "a.example.com", "10.0.0.1:80"),
			"b.yaml": specYAML("b", "b.example.com", "10.0.0.2:80"),
		})
	c1 := dialTLS(t, h.addr, h.pki.NodeTLS(t, "canary-node", "canary"), "canary-1", "canary")
	c1.send(cdsType, nil, "", "", "")
	v1 := c1.recv(cdsType)
	c1.send(cdsType, nil, v1.GetVersionInfo(), v1.GetNonce(), "")

	// c arrives: a candidate for the canary, which one canary node rejects.
	h.write("c.yaml", specYAML("c", "c.example.com", "10.0.0.3:80"))
	r := c1.recv(cdsType)
	st := h.waitRollout(controlplane.PhaseSoaking)
	candidate := st.Rollout.Candidate
	c1.send(cdsType, nil, v1.GetVersionInfo(), r.GetNonce(), "cluster c/api: rejected by canary-1")

	deadline := time.Now().Add(time.Second)
	for time.Now().Before(deadline) {
		st := h.cp.State()
		if st.Rollout.Phase != controlplane.PhaseSoaking || st.Rollout.Candidate != candidate {
			t.Fatalf("one canary NACK (below canary-min-nacks) changed the rollout: %+v", st.Rollout)
		}
		for _, s := range st.Specs {
			if s.Error != "" {
				t.Fatalf("one canary NACK pruned spec %s: %s", s.Name, s.Error)
			}
		}
		if v := h.cp.Publisher().State().Served["canary"]; v != candidate {
			t.Fatalf("canary served %s after one NACK, want the candidate %s", v, candidate)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
