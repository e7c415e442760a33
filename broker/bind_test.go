package broker_test

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/gatehouse-edge/gatehouse/broker/api"
	"github.com/gatehouse-edge/gatehouse/internal/testenv"
)

func bindBody(labels map[string]string) map[string]any {
	params := map[string]any{"provider": "partners"}
	if labels != nil {
		params["labels"] = labels
	}
	return map[string]any{"service_id": api.ServiceID, "plan_id": api.PlanID, "parameters": params}
}

func keyOf(t *testing.T, r resp) string {
	t.Helper()
	creds, _ := r.Body["credentials"].(map[string]any)
	key, _ := creds["api_key"].(string)
	return key
}

func sum(key string) string {
	s := sha256.Sum256([]byte(key))
	return hex.EncodeToString(s[:])
}

// TestBindWithoutAcceptsIncomplete: a platform without asynchronous
// bindings gets 201 with the key, even when the key is not live yet; its
// hash is in the route store at once, binding last_operation tells when it
// is live, and no copy of the key stays in the store. On SQLite and on
// DynamoDB (dynalite) + SQS (goaws).
func TestBindWithoutAcceptsIncomplete(t *testing.T) {
	for _, be := range allBackends(t) {
		t.Run(be.name, func(t *testing.T) {
			st, q := be.open(t, 2*time.Second)
			p := newPipeline(t, pipelineOpts{store: st, queue: q, bindWait: 200 * time.Millisecond})
			ctx := context.Background()
			p.provision(t, "sy", edgeRoute("syncbind"))

			// Live within BindWait: 201 with the key, already published.
			r := p.do(t, "PUT", "/v2/service_instances/sy/service_bindings/k1", bindBody(nil))
			p.expect(t, r, 201, "bind without accepts_incomplete")
			key := keyOf(t, r)
			if !strings.HasPrefix(key, api.KeyPrefix) || r.str("operation") != "" {
				t.Fatalf("201 body: %s", r.Raw)
			}
			sp, _ := p.Store.GetSpec(ctx, "syncbind")
			if !strings.Contains(string(sp.JSON), sum(key)) {
				t.Fatalf("the key's hash is not in the route store: %s", sp.JSON)
			}

			// Not live within BindWait (control plane slow): still 201 with
			// the key; last_operation says in progress, then succeeded.
			p.CP.paused.Store(true)
			r = p.do(t, "PUT", "/v2/service_instances/sy/service_bindings/k2", bindBody(map[string]string{"plan": "gold"}))
			p.expect(t, r, 201, "slow bind without accepts_incomplete")
			key2 := keyOf(t, r)
			if !strings.HasPrefix(key2, api.KeyPrefix) {
				t.Fatalf("201 body without a key: %s", r.Raw)
			}
			b, err := p.Store.GetBinding(ctx, "sy", "k2")
			if err != nil || b.SHA256 != sum(key2) || len(b.SealedKey) != 0 {
				t.Fatalf("binding record after the 201: sha %s sealed %d bytes, err %v", b.SHA256, len(b.SealedKey), err)
			}
			lo := p.do(t, "GET", "/v2/service_instances/sy/service_bindings/k2/last_operation", nil)
			if lo.Code != 200 || lo.str("state") != "in progress" {
				t.Fatalf("binding last_operation while the control plane is paused: %d %s", lo.Code, lo.Raw)
			}
			p.CP.paused.Store(false)
			if last := p.waitOp(t, "/v2/service_instances/sy/service_bindings/k2", "", 20*time.Second); last.str("state") != "succeeded" {
				t.Fatalf("binding last_operation: %s", last.Raw)
			}
			sp, _ = p.Store.GetSpec(ctx, "syncbind")
			if !strings.Contains(string(sp.JSON), sum(key2)) || !strings.Contains(string(sp.JSON), `"plan":"gold"`) {
				t.Fatalf("the second key is not in the route store: %s", sp.JSON)
			}
			// A repeat of the identical PUT: 200, and the key is not shown again.
			r = p.do(t, "PUT", "/v2/service_instances/sy/service_bindings/k2", bindBody(map[string]string{"plan": "gold"}))
			p.expect(t, r, 200, "identical repeat")
			if keyOf(t, r) != "" {
				t.Fatalf("a repeat showed the key again: %s", r.Raw)
			}
		})
	}
}

// TestAsyncBindHandsTheKeyOverOnceFromGET: with accepts_incomplete=true a
// slow bind answers 202 without the key; the key waits sealed in the
// store (not in clear) and the first GET binding after "succeeded" gets
// it, the second does not. On SQLite and on DynamoDB + SQS.
func TestAsyncBindHandsTheKeyOverOnceFromGET(t *testing.T) {
	for _, be := range allBackends(t) {
		t.Run(be.name, func(t *testing.T) {
			st, q := be.open(t, 2*time.Second)
			var logs testenv.SyncBuffer
			p := newPipeline(t, pipelineOpts{store: st, queue: q, bindWait: 50 * time.Millisecond, logs: &logs})
			ctx := context.Background()
			p.provision(t, "as", edgeRoute("asyncbind"))
			p.CP.paused.Store(true)
			r := p.do(t, "PUT", "/v2/service_instances/as/service_bindings/k?accepts_incomplete=true", bindBody(nil))
			p.expect(t, r, 202, "slow async bind")
			if r.str("operation") == "" || r.Body["credentials"] != nil || strings.Contains(r.Raw, api.KeyPrefix) {
				t.Fatalf("202 body must carry the operation and no key: %s", r.Raw)
			}
			b, _ := p.Store.GetBinding(ctx, "as", "k")
			if len(b.SealedKey) == 0 || strings.Contains(string(b.SealedKey), api.KeyPrefix) || b.SealedUntil.Before(time.Now().Add(23*time.Hour)) {
				t.Fatalf("pending key: %d sealed bytes, until %s", len(b.SealedKey), b.SealedUntil)
			}
			p.expect(t, p.do(t, "GET", "/v2/service_instances/as/service_bindings/k", nil), 404, "GET binding while binding")
			p.CP.paused.Store(false)
			if last := p.waitOp(t, "/v2/service_instances/as/service_bindings/k", r.str("operation"), 20*time.Second); last.str("state") != "succeeded" {
				t.Fatalf("binding last_operation: %s", last.Raw)
			}
			g := p.do(t, "GET", "/v2/service_instances/as/service_bindings/k", nil)
			p.expect(t, g, 200, "first GET binding")
			key := keyOf(t, g)
			b, _ = p.Store.GetBinding(ctx, "as", "k")
			if !strings.HasPrefix(key, api.KeyPrefix) || sum(key) != b.SHA256 {
				t.Fatalf("first GET binding: %s (stored sha %s)", g.Raw, b.SHA256)
			}
			if len(b.SealedKey) != 0 || !b.SealedUntil.IsZero() {
				t.Fatalf("the sealed key was not wiped after the first fetch")
			}
			g = p.do(t, "GET", "/v2/service_instances/as/service_bindings/k", nil)
			p.expect(t, g, 200, "second GET binding")
			if keyOf(t, g) != "" {
				t.Fatalf("the second GET binding returned the key again: %s", g.Raw)
			}
			if out := logs.String(); !strings.Contains(out, "bind accepted") || strings.Contains(out, key) || strings.Contains(out, strings.TrimPrefix(key, api.KeyPrefix)) {
				t.Fatal("the key reached the logs (or no logs were captured)")
			}
		})
	}
}

// TestPendingKeyExpires: a key nobody fetched within the pending-key TTL
// is wiped unseen.
func TestPendingKeyExpires(t *testing.T) {
	p := newPipeline(t, pipelineOpts{bindWait: 20 * time.Millisecond, pendingTTL: time.Millisecond})
	p.provision(t, "ex", edgeRoute("expiry"))
	p.CP.paused.Store(true)
	r := p.do(t, "PUT", "/v2/service_instances/ex/service_bindings/k?accepts_incomplete=true", bindBody(nil))
	p.expect(t, r, 202, "slow async bind")
	p.CP.paused.Store(false)
	p.waitOp(t, "/v2/service_instances/ex/service_bindings/k", r.str("operation"), 20*time.Second)
	g := p.do(t, "GET", "/v2/service_instances/ex/service_bindings/k", nil)
	p.expect(t, g, 200, "GET binding")
	if keyOf(t, g) != "" {
		t.Fatalf("an expired pending key was handed over: %s", g.Raw)
	}
	if b, _ := p.Store.GetBinding(context.Background(), "ex", "k"); len(b.SealedKey) != 0 {
		t.Fatal("the expired key is still in the store")
	}
}

// TestExpiredPendingKeysAreSweptUnseen: the broker wipes a pending key
// that nobody fetched within its TTL, without any request touching it. On
// SQLite and on DynamoDB + SQS.
func TestExpiredPendingKeysAreSweptUnseen(t *testing.T) {
	for _, be := range allBackends(t) {
		t.Run(be.name, func(t *testing.T) {
			st, q := be.open(t, 2*time.Second)
			p := newPipeline(t, pipelineOpts{store: st, queue: q, bindWait: 20 * time.Millisecond, pendingTTL: 300 * time.Millisecond, keySweep: 20 * time.Millisecond})
			ctx := context.Background()
			p.provision(t, "sw", edgeRoute("sweep"))
			p.CP.paused.Store(true)
			r := p.do(t, "PUT", "/v2/service_instances/sw/service_bindings/k?accepts_incomplete=true", bindBody(nil))
			p.expect(t, r, 202, "slow async bind")
			if b, _ := p.Store.GetBinding(ctx, "sw", "k"); len(b.SealedKey) == 0 {
				t.Fatal("no pending key after the 202")
			}
			p.CP.paused.Store(false)
			deadline := time.Now().Add(10 * time.Second)
			for {
				b, err := p.Store.GetBinding(ctx, "sw", "k")
				if err == nil && len(b.SealedKey) == 0 {
					break
				}
				if time.Now().After(deadline) {
					t.Fatal("the expired pending key is still in the store")
				}
				time.Sleep(20 * time.Millisecond)
			}
		})
	}
}

// TestUnbindWipesAPendingKey: unbinding (or deprovisioning) before the
// platform fetched the key removes it.
func TestUnbindWipesAPendingKey(t *testing.T) {
	p := newPipeline(t, pipelineOpts{bindWait: 20 * time.Millisecond})
	p.provision(t, "uw", edgeRoute("unbindwipe"))
	p.CP.paused.Store(true)
	r := p.do(t, "PUT", "/v2/service_instances/uw/service_bindings/k?accepts_incomplete=true", bindBody(nil))
	p.expect(t, r, 202, "slow async bind")
	p.CP.paused.Store(false)
	p.waitOp(t, "/v2/service_instances/uw/service_bindings/k", r.str("operation"), 20*time.Second)
	del := p.do(t, "DELETE", "/v2/service_instances/uw/service_bindings/k?accepts_incomplete=true&service_id="+api.ServiceID+"&plan_id="+api.PlanID, nil)
	p.expect(t, del, 202, "unbind")
	if b, _ := p.Store.GetBinding(context.Background(), "uw", "k"); len(b.SealedKey) != 0 {
		t.Fatal("unbind left the pending key in the store")
	}
	// The unbind runs to its end first: a deprovision while a binding's
	// operation is in progress is refused (422), as OSB wants.
	p.waitOp(t, "/v2/service_instances/uw/service_bindings/k", del.str("operation"), 20*time.Second)
	// Deprovisioning the instance wipes its bindings' pending keys too.
	p.CP.paused.Store(true)
	r = p.do(t, "PUT", "/v2/service_instances/uw/service_bindings/k2?accepts_incomplete=true", bindBody(nil))
	p.expect(t, r, 202, "slow async bind")
	p.CP.paused.Store(false)
	p.waitOp(t, "/v2/service_instances/uw/service_bindings/k2", r.str("operation"), 20*time.Second)
	r = p.do(t, "DELETE", "/v2/service_instances/uw?accepts_incomplete=true&service_id="+api.ServiceID+"&plan_id="+api.PlanID, nil)
	p.expect(t, r, 202, "deprovision")
	p.waitOp(t, "/v2/service_instances/uw", r.str("operation"), 20*time.Second)
	if b, _ := p.Store.GetBinding(context.Background(), "uw", "k2"); !b.Deleted || len(b.SealedKey) != 0 {
		t.Fatalf("after deprovision: deleted %v, %d sealed bytes", b.Deleted, len(b.SealedKey))
	}
}

// TestBindLabelsAreCheckedAgainstTheSpec (review M7): labels are
// authorization claims, so a binding may only pick those the spec's
// bindLabels allow, within size and charset limits.
func TestBindLabelsAreCheckedAgainstTheSpec(t *testing.T) {
	p := newPipeline(t, pipelineOpts{})
	ctx := context.Background()
	p.provision(t, "lb", edgeRoute("labels"))
	many := map[string]string{}
	for i := range 17 {
		many[fmt.Sprintf("k%d", i)] = "v"
	}
	for name, labels := range map[string]map[string]string{
		"value not allowed": {"plan": "platinum"},
		"key not allowed":   {"role": "admin"},
		"10 KB value":       {"plan": strings.Repeat("g", 10<<10)},
		"bad charset":       {"plan": "gold\r\nx-injected: 1"},
		"too many":          many,
	} {
		for _, q := range []string{"", "?accepts_incomplete=true"} {
			r := p.do(t, "PUT", "/v2/service_instances/lb/service_bindings/bad"+q, bindBody(labels))
			p.expect(t, r, 400, name)
			if r.str("error") != "InvalidParameters" || !strings.Contains(r.str("description"), "parameters.labels") || len(r.Raw) > 4<<10 {
				t.Fatalf("%s: %s", name, r.Raw)
			}
		}
	}
	if _, err := p.Store.GetBinding(ctx, "lb", "bad"); err == nil {
		t.Fatal("a refused bind left a binding record")
	}
	// A spec without bindLabels allows no labels at all.
	noLabels := edgeRoute("nolabels")
	noLabels["spec"].(map[string]any)["identity"] = map[string]any{"apiKeys": []any{map[string]any{"name": "partners", "header": "x-api-key"}}}
	p.provision(t, "nl", noLabels)
	r := p.do(t, "PUT", "/v2/service_instances/nl/service_bindings/k", bindBody(map[string]string{"plan": "gold"}))
	p.expect(t, r, 400, "labels without bindLabels")
	if !strings.Contains(r.str("description"), "allows no binding labels") {
		t.Fatal(r.Raw)
	}
	p.expect(t, p.do(t, "PUT", "/v2/service_instances/nl/service_bindings/k", bindBody(nil)), 201, "no labels without bindLabels")
	// Allowed labels reach the key in the route store.
	r = p.do(t, "PUT", "/v2/service_instances/lb/service_bindings/good", bindBody(map[string]string{"plan": "silver"}))
	p.expect(t, r, 201, "allowed labels")
	sp, _ := p.Store.GetSpec(ctx, "labels")
	if !strings.Contains(string(sp.JSON), `"id":"good"`) || !strings.Contains(string(sp.JSON), `"labels":{"plan":"silver"}`) {
		t.Fatalf("route store: %s", sp.JSON)
	}
}

// TestUnbindWithoutAcceptsIncomplete: a platform without asynchronous
// bindings revokes with a plain DELETE: 200 once the key's hash has left
// the route store; while the control plane is slow, 422 ConcurrencyError
// and a repeated DELETE waits again.
func TestUnbindWithoutAcceptsIncomplete(t *testing.T) {
	p := newPipeline(t, pipelineOpts{bindWait: 300 * time.Millisecond})
	ctx := context.Background()
	p.provision(t, "su", edgeRoute("syncunbind"))
	q := "?service_id=" + api.ServiceID + "&plan_id=" + api.PlanID
	for _, bid := range []string{"k1", "k2"} {
		p.expect(t, p.do(t, "PUT", "/v2/service_instances/su/service_bindings/"+bid, bindBody(nil)), 201, "bind "+bid)
	}
	b1, _ := p.Store.GetBinding(ctx, "su", "k1")
	r := p.do(t, "DELETE", "/v2/service_instances/su/service_bindings/k1"+q, nil)
	p.expect(t, r, 200, "unbind without accepts_incomplete")
	if sp, _ := p.Store.GetSpec(ctx, "syncunbind"); strings.Contains(string(sp.JSON), b1.SHA256) {
		t.Fatalf("200 before the key left the route store: %s", sp.JSON)
	}
	p.expect(t, p.do(t, "DELETE", "/v2/service_instances/su/service_bindings/k1"+q, nil), 410, "unbind again")

	p.CP.paused.Store(true)
	r = p.do(t, "DELETE", "/v2/service_instances/su/service_bindings/k2"+q, nil)
	p.expect(t, r, 422, "slow unbind without accepts_incomplete")
	if r.str("error") != "ConcurrencyError" {
		t.Fatal(r.Raw)
	}
	p.CP.paused.Store(false)
	p.expect(t, p.do(t, "DELETE", "/v2/service_instances/su/service_bindings/k2"+q, nil), 200, "repeated unbind")
}

// TestBindWithoutParameters: a platform that sends no bind parameters
// gets a key for the spec's only apiKeys provider; with several providers
// it is told which to choose.
func TestBindWithoutParameters(t *testing.T) {
	p := newPipeline(t, pipelineOpts{})
	p.provision(t, "np", edgeRoute("noparams"))
	body := map[string]any{"service_id": api.ServiceID, "plan_id": api.PlanID}
	r := p.do(t, "PUT", "/v2/service_instances/np/service_bindings/k", body)
	p.expect(t, r, 201, "bind without parameters")
	if creds, _ := r.Body["credentials"].(map[string]any); creds["provider"] != "partners" || !strings.HasPrefix(keyOf(t, r), api.KeyPrefix) {
		t.Fatalf("201 body: %s", r.Raw)
	}
	two := edgeRoute("twoproviders")
	two["spec"].(map[string]any)["identity"] = map[string]any{"apiKeys": []any{
		map[string]any{"name": "partners", "header": "x-api-key"}, map[string]any{"name": "internal", "header": "x-internal-key"}}}
	p.provision(t, "tp", two)
	r = p.do(t, "PUT", "/v2/service_instances/tp/service_bindings/k", body)
	p.expect(t, r, 400, "bind without parameters, two providers")
	if !strings.Contains(r.str("description"), "internal, partners") {
		t.Fatal(r.Raw)
	}
}
