package controlplane_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/gatehouse-edge/gatehouse/accesslog"
	"github.com/gatehouse-edge/gatehouse/controlplane"
	"github.com/gatehouse-edge/gatehouse/controlplane/outcome"
)

// TestOutcomeReportsBoundToCertificateGroup: over mutual TLS an accesslog
// sidecar with a certificate of node group us-east-1 cannot report counts
// for the canary group (PermissionDenied, nothing counted): a neighbour
// cannot fake a breach or a clean soak for another group. Its own group's
// counts are taken.
func TestOutcomeReportsBoundToCertificateGroup(t *testing.T) {
	h := startTLSControlPlane(t, controlplane.Config{CanaryGroup: "canary", Soak: time.Hour, Gate: controlplane.Gate{MinRequests: 10}},
		map[string]string{"a.yaml": specYAML("a", "a.example.com", "10.0.0.1:80")})
	h.waitServed("", func(string) bool { return true })
	v1 := goodVersion(h.harness, "us-east-1")
	h.write("a.yaml", strings.Replace(specYAML("a", "a.example.com", "10.0.0.1:80"), `endpoints: ["10.0.0.1:80"]}]`, `endpoints: ["10.0.0.1:80"], connectTimeout: 9s}]`, 1))
	v2 := h.waitRollout(controlplane.PhaseSoaking).Rollout.Candidate

	conn := dialXDSTLS(t, h.addr, h.pki.NodeTLS(t, "accesslog-fleet-1", "us-east-1"))
	defer conn.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	err := outcome.Send(ctx, conn, outcome.Report{NodeID: "accesslog-fleet-1", Counts: []accesslog.Outcome{oc("canary", v2, "a/api", 40, 40, 40, 0, 0)}})
	if status.Code(err) != codes.PermissionDenied || !strings.Contains(err.Error(), `node group "us-east-1" of the client certificate`) {
		t.Fatalf("cross-group report: %v, want PermissionDenied naming the certificate's group", err)
	}
	if err := outcome.Send(ctx, conn, outcome.Report{NodeID: "accesslog-fleet-1", Counts: []accesslog.Outcome{oc("us-east-1", v1, "a/api", 40, 0, 0, 0, 0)}}); err != nil {
		t.Fatalf("own-group report: %v", err)
	}
	time.Sleep(200 * time.Millisecond) // the loop would have rolled back by now
	if st := h.cp.State(); st.Rollout.Phase != controlplane.PhaseSoaking {
		t.Fatalf("rollout = %+v, want still soaking", st.Rollout)
	}
}
