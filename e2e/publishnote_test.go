package e2e

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/gatehouse-edge/gatehouse/broker/osbclient"
)

// TestLastOperationNamesUnconnectedGroup: through the OSB API of a dev
// suite (real broker, SQLite store, control plane, the front door as the
// dev group's node), an update that makes a spec also serve node group
// edge-b, which no node has connected to, succeeds at once (nothing there
// can serve it) and its last_operation says so: "published; no node of
// group edge-b connected".
func TestLastOperationNamesUnconnectedGroup(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	cfg, out := devConfig(t)
	ep, _ := runDevAsync(t, ctx, cfg, out)
	osb := &osbclient.Client{BaseURL: ep.Broker, Username: ep.BrokerUser, Password: ep.BrokerPassword}
	inst, err := osb.Instance(ctx, "status-page")
	if err != nil {
		t.Fatal(err)
	}
	var params map[string]any
	if err := json.Unmarshal(inst.Parameters, &params); err != nil {
		t.Fatal(err)
	}
	sp, _ := params["spec"].(map[string]any)
	if sp == nil {
		t.Fatalf("status-page parameters without spec: %s", inst.Parameters)
	}
	sp["nodeGroups"] = []string{ep.NodeGroup, "edge-b"}
	changed, err := json.Marshal(params)
	if err != nil {
		t.Fatal(err)
	}
	upd, err := osb.Update(ctx, "status-page", changed)
	if err != nil {
		t.Fatalf("update: %v", err)
	}
	final := waitOp(t, ctx, func(ctx context.Context) (*osbclient.Response, error) {
		return osb.LastOperation(ctx, "status-page", upd.Operation)
	})
	if final.State != "succeeded" || !strings.Contains(final.Description, "published; no node of group edge-b connected") {
		t.Fatalf("update ended %s: %q, want succeeded with %q", final.State, final.Description, "published; no node of group edge-b connected")
	}
	if strings.Contains(final.Description, "group "+ep.NodeGroup) {
		t.Errorf("description %q names the dev group, whose node is connected", final.Description)
	}
}
