package broker_test

import (
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/gatehouse-edge/gatehouse/broker/api"
)

// TestDeprovisionWithoutDeletionReport: a control plane that never reports
// deletions. Strict mode (negative UnconfirmedDeleteAfter) keeps the
// operation in progress; the default finishes it after the wait, saying
// the deletion was not confirmed.
func TestDeprovisionWithoutDeletionReport(t *testing.T) {
	q := "?accepts_incomplete=true&service_id=" + api.ServiceID + "&plan_id=" + api.PlanID
	t.Run("strict", func(t *testing.T) {
		p := newPipeline(t, pipelineOpts{publishWait: 100 * time.Millisecond, unconfirmed: -1, maxAttempts: 100})
		p.CP.ignoreDeletes.Store(true)
		p.provision(t, "s1", edgeRoute("strict"))
		r := p.do(t, "DELETE", "/v2/service_instances/s1"+q, nil)
		p.expect(t, r, 202, "deprovision")
		time.Sleep(time.Second)
		lo := p.do(t, "GET", "/v2/service_instances/s1/last_operation", nil)
		if lo.Code != 200 || lo.str("state") != "in progress" {
			t.Fatalf("strict deprovision without a report: %d %s", lo.Code, lo.Raw)
		}
		p.CP.ignoreDeletes.Store(false) // the control plane catches up (it re-reads the feed from the start)
		p.CP.resync.Store(true)
		if last := p.waitOp(t, "/v2/service_instances/s1", r.str("operation"), 20*time.Second); last.Code != http.StatusGone {
			t.Fatalf("after the report: %d %s", last.Code, last.Raw)
		}
	})
	t.Run("default", func(t *testing.T) {
		p := newPipeline(t, pipelineOpts{publishWait: 100 * time.Millisecond, unconfirmed: 300 * time.Millisecond})
		p.CP.ignoreDeletes.Store(true)
		p.provision(t, "s2", edgeRoute("lenient"))
		r := p.do(t, "DELETE", "/v2/service_instances/s2"+q, nil)
		p.expect(t, r, 202, "deprovision")
		// last_operation turns 410 once done; the history keeps the text.
		if last := p.waitOp(t, "/v2/service_instances/s2", r.str("operation"), 20*time.Second); last.Code != http.StatusGone {
			t.Fatalf("deprovision: %d %s", last.Code, last.Raw)
		}
		in, err := p.Store.GetInstance(t.Context(), "s2")
		if err != nil || !in.Deleted || !strings.Contains(in.Op.Description, "not confirmed by the control plane") {
			t.Fatalf("instance after an unconfirmed deletion: %+v, %v", in.Op, err)
		}
	})
}

// TestOverdueOperationFails: with no worker at all the message is never
// handled; past the deadline the sweeper fails the operation, which frees
// the instance (and its name) for another try.
func TestOverdueOperationFails(t *testing.T) {
	p := newPipeline(t, pipelineOpts{noWorker: true, deadline: 300 * time.Millisecond})
	r := p.do(t, "PUT", "/v2/service_instances/od?accepts_incomplete=true", provisionBody(edgeRoute("overdue")))
	p.expect(t, r, 202, "provision")
	last := p.waitOp(t, "/v2/service_instances/od", r.str("operation"), 20*time.Second)
	if last.str("state") != "failed" || !strings.Contains(last.str("description"), "no worker finished this provision within 300ms") {
		t.Fatalf("last_operation = %s", last.Raw)
	}
	// The name is free and the instance can be provisioned again.
	p.expect(t, p.do(t, "PUT", "/v2/service_instances/od?accepts_incomplete=true", provisionBody(edgeRoute("overdue"))), 202, "provision again")
}

// TestUpdateKeepsBindingKeys: keys issued by bindings survive an update
// of the spec (they are merged into every revision the worker writes).
func TestUpdateKeepsBindingKeys(t *testing.T) {
	p := newPipeline(t, pipelineOpts{})
	p.provision(t, "u1", edgeRoute("keeper"))
	body := map[string]any{"service_id": api.ServiceID, "plan_id": api.PlanID, "parameters": map[string]any{"provider": "partners"}}
	r := p.do(t, "PUT", "/v2/service_instances/u1/service_bindings/k1?accepts_incomplete=true", body)
	p.expect(t, r, 201, "bind")
	b, _ := p.Store.GetBinding(t.Context(), "u1", "k1")
	r = p.do(t, "PATCH", "/v2/service_instances/u1?accepts_incomplete=true", map[string]any{"service_id": api.ServiceID,
		"parameters": edgeRoute("keeper", "keeper.example.com", "keeper2.example.com")})
	p.expect(t, r, 202, "update")
	if last := p.waitOp(t, "/v2/service_instances/u1", r.str("operation"), 20*time.Second); last.str("state") != "succeeded" {
		t.Fatal(last.Raw)
	}
	sp, _ := p.Store.GetSpec(t.Context(), "keeper")
	if !strings.Contains(string(sp.JSON), "keeper2.example.com") || !strings.Contains(string(sp.JSON), b.SHA256) {
		t.Fatalf("after the update the spec lost the binding key or the change: %s", sp.JSON)
	}
}
