package broker_test

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/gatehouse-edge/gatehouse/broker/api"
	"github.com/gatehouse-edge/gatehouse/broker/queue"
	"github.com/gatehouse-edge/gatehouse/broker/store"
	"github.com/gatehouse-edge/gatehouse/internal/testenv"
)

// TestOSBConformance drives the OSB v2.17 API over HTTP on 127.0.0.1 with
// a real worker and a control plane double, one subtest per rule of issue
// 7 point 2, on the embedded backends (SQLite store and queue) and on
// DynamoDB (dynalite) + SQS (goaws).
func TestOSBConformance(t *testing.T) {
	for _, be := range allBackends(t) {
		t.Run(be.name, func(t *testing.T) {
			st, q := be.open(t, 2*time.Second)
			osbConformance(t, st, q)
		})
	}
}

func osbConformance(t *testing.T, st store.Store, q queue.Queue) {
	var logs testenv.SyncBuffer
	p := newPipeline(t, pipelineOpts{logs: &logs, store: st, queue: q})
	ctx := context.Background()
	var issuedKeys []string
	defer func() {
		// Secrets never reach the logs: not the broker password, not a key.
		out := logs.String()
		if !strings.Contains(out, "provision accepted") {
			t.Error("the test captured no broker logs")
		}
		for _, secret := range append(issuedKeys, password) {
			if strings.Contains(out, secret) {
				t.Errorf("a secret (%.6s...) is in the logs", secret)
			}
		}
	}()

	t.Run("Catalog", func(t *testing.T) {
		r := p.do(t, "GET", "/v2/catalog", nil)
		p.expect(t, r, 200, "catalog")
		svcs, _ := r.Body["services"].([]any)
		if len(svcs) != 1 {
			t.Fatalf("services = %v", r.Body["services"])
		}
		svc := svcs[0].(map[string]any)
		if svc["name"] != "edge-route" || svc["id"] != api.ServiceID || svc["instances_retrievable"] != true || svc["bindings_retrievable"] != true || svc["bindable"] != true {
			t.Fatalf("service = %v", svc)
		}
		plan := svc["plans"].([]any)[0].(map[string]any)
		if plan["name"] != "standard" || plan["id"] != api.PlanID {
			t.Fatalf("plan = %v", plan)
		}
		schema := plan["schemas"].(map[string]any)["service_instance"].(map[string]any)["create"].(map[string]any)["parameters"].(map[string]any)
		if schema["$schema"] != "http://json-schema.org/draft-04/schema#" || schema["additionalProperties"] != false {
			t.Fatalf("create schema header = %v", schema)
		}
		props := schema["properties"].(map[string]any)
		specProps := props["spec"].(map[string]any)["properties"].(map[string]any)
		for _, k := range []string{"hosts", "upstreams", "identity", "routes", "nodeGroups"} {
			if _, ok := specProps[k]; !ok {
				t.Errorf("schema: spec.%s missing", k)
			}
		}
		if _, ok := plan["schemas"].(map[string]any)["service_instance"].(map[string]any)["update"]; !ok {
			t.Error("schema: no update parameters schema")
		}
	})

	t.Run("BasicAuth401", func(t *testing.T) {
		for _, auth := range []string{"-", "basic:osb:wrong", "basic:someone:" + password} {
			r := p.do(t, "GET", "/v2/catalog", nil, "Authorization", auth)
			p.expect(t, r, 401, "auth "+auth)
			if strings.Contains(r.Raw, password) {
				t.Fatal("the 401 body contains the password")
			}
		}
	})

	t.Run("APIVersion412", func(t *testing.T) {
		for _, v := range []string{"-", "2.12", "1.99", "3.0", "two"} {
			r := p.do(t, "GET", "/v2/catalog", nil, "X-Broker-API-Version", v)
			p.expect(t, r, 412, "version "+v)
			if r.str("description") == "" {
				t.Fatalf("412 without a description: %s", r.Raw)
			}
		}
		for _, v := range []string{"2.13", "2.14", "2.17"} {
			p.expect(t, p.do(t, "GET", "/v2/catalog", nil, "X-Broker-API-Version", v), 200, "version "+v)
		}
	})

	t.Run("RequestIdentityEchoed", func(t *testing.T) {
		for _, path := range []string{"/v2/catalog", "/v2/service_instances/nope"} {
			r := p.do(t, "GET", path, nil, "X-Broker-API-Request-Identity", "req-42")
			if got := r.Header.Get("X-Broker-API-Request-Identity"); got != "req-42" {
				t.Fatalf("%s: Request-Identity echoed as %q", path, got)
			}
		}
		r := p.do(t, "GET", "/v2/catalog", nil, "X-Broker-API-Request-Identity", "req-43", "X-Broker-API-Version", "-")
		if r.Code != 412 || r.Header.Get("X-Broker-API-Request-Identity") != "req-43" {
			t.Fatalf("error responses must echo Request-Identity too: %d %v", r.Code, r.Header)
		}
	})

	t.Run("AsyncRequired422", func(t *testing.T) {
		for _, c := range []struct{ method, path string }{
			{"PUT", "/v2/service_instances/a1"},
			{"PATCH", "/v2/service_instances/a1"},
			{"DELETE", "/v2/service_instances/a1?service_id=" + api.ServiceID + "&plan_id=" + api.PlanID},
			{"PUT", "/v2/service_instances/a1?accepts_incomplete=false"},
		} {
			r := p.do(t, c.method, c.path, provisionBody(edgeRoute("async")))
			p.expect(t, r, 422, c.method+" "+c.path)
			if r.str("error") != "AsyncRequired" {
				t.Fatalf("%s %s: error = %q, want AsyncRequired", c.method, c.path, r.str("error"))
			}
		}
		if _, err := p.Store.GetInstance(ctx, "a1"); !errors.Is(err, store.ErrNotFound) {
			t.Fatalf("a refused request stored an instance: %v", err)
		}
	})

	t.Run("InvalidSpec400AllErrorsNothingStored", func(t *testing.T) {
		bad := edgeRoute("Bad_Name")
		s := bad["spec"].(map[string]any)
		s["hosts"] = []string{}
		s["routes"].([]any)[0].(map[string]any)["upstream"] = "nope"
		s["unknownField"] = 1
		r := p.do(t, "PUT", "/v2/service_instances/bad?accepts_incomplete=true", provisionBody(bad))
		p.expect(t, r, 400, "invalid spec")
		desc := r.str("description")
		for _, want := range []string{"spec.unknownField", "unknown field"} {
			if !strings.Contains(desc, want) {
				t.Errorf("description lacks %q:\n%s", want, desc)
			}
		}
		// Structurally valid, semantically wrong: every problem listed.
		delete(s, "unknownField")
		r = p.do(t, "PUT", "/v2/service_instances/bad?accepts_incomplete=true", provisionBody(bad))
		p.expect(t, r, 400, "invalid spec")
		desc = r.str("description")
		for _, want := range []string{"metadata.name", "spec.hosts", "spec.routes[0].upstream"} {
			if !strings.Contains(desc, want) {
				t.Errorf("description lacks %q:\n%s", want, desc)
			}
		}
		if _, err := p.Store.GetInstance(ctx, "bad"); !errors.Is(err, store.ErrNotFound) {
			t.Fatalf("an invalid spec stored an instance: %v", err)
		}
		if _, specs, _ := p.Store.Snapshot(ctx); len(specs) != 0 {
			t.Fatalf("an invalid spec reached the route store: %v", specs)
		}
		// Missing parameters and unknown plan are 400s too.
		p.expect(t, p.do(t, "PUT", "/v2/service_instances/bad?accepts_incomplete=true", provisionBody(nil)), 400, "no parameters")
		b := provisionBody(edgeRoute("x"))
		b["plan_id"] = "other"
		p.expect(t, p.do(t, "PUT", "/v2/service_instances/bad?accepts_incomplete=true", b), 400, "unknown plan")
		p.expect(t, p.do(t, "PUT", "/v2/service_instances/bad?accepts_incomplete=true", "{not json"), 400, "malformed body")
	})

	identity := "cloudfoundry " + base64.StdEncoding.EncodeToString([]byte(`{"user_id":"alice"}`))

	t.Run("ProvisionAsyncLastOperationGet", func(t *testing.T) {
		p.CP.paused.Store(true)
		r := p.do(t, "PUT", "/v2/service_instances/pet?accepts_incomplete=true", provisionBody(edgeRoute("petstore")),
			"X-Broker-API-Originating-Identity", identity)
		p.expect(t, r, 202, "provision")
		op := r.str("operation")
		if op == "" {
			t.Fatalf("202 without an operation: %s", r.Raw)
		}
		lo := p.do(t, "GET", "/v2/service_instances/pet/last_operation?operation="+op+"&service_id="+api.ServiceID+"&plan_id="+api.PlanID, nil)
		p.expect(t, lo, 200, "last_operation")
		if lo.str("state") != "in progress" || lo.Header.Get("Retry-After") == "" {
			t.Fatalf("while the control plane is down: %s (Retry-After %q)", lo.Raw, lo.Header.Get("Retry-After"))
		}
		// Not retrievable until provisioned.
		p.expect(t, p.do(t, "GET", "/v2/service_instances/pet", nil), 404, "GET while provisioning")

		// Operation in progress: identical PUT is 202 with the same
		// operation; PATCH/DELETE/conflicting PUT are refused.
		same := p.do(t, "PUT", "/v2/service_instances/pet?accepts_incomplete=true", provisionBody(edgeRoute("petstore")))
		p.expect(t, same, 202, "identical PUT while in progress")
		if same.str("operation") != op {
			t.Fatalf("identical PUT while in progress returned operation %q, want %q", same.str("operation"), op)
		}
		upd := p.do(t, "PATCH", "/v2/service_instances/pet?accepts_incomplete=true", provisionBody(edgeRoute("petstore", "other.example.com")))
		p.expect(t, upd, 422, "PATCH while in progress")
		if upd.str("error") != "ConcurrencyError" {
			t.Fatalf("PATCH while in progress: %s", upd.Raw)
		}
		del := p.do(t, "DELETE", "/v2/service_instances/pet?accepts_incomplete=true&service_id="+api.ServiceID+"&plan_id="+api.PlanID, nil)
		p.expect(t, del, 422, "DELETE while in progress")
		if del.str("error") != "ConcurrencyError" {
			t.Fatalf("DELETE while in progress: %s", del.Raw)
		}

		bad := p.do(t, "PUT", "/v2/service_instances/pet9?accepts_incomplete=true", provisionBody(edgeRoute("pet9")),
			"X-Broker-API-Originating-Identity", "cloudfoundry not-base64!")
		p.expect(t, bad, 400, "malformed Originating-Identity")
		if bad.str("description") == "" || bad.str("error") == "" {
			t.Fatalf("error body without error/description: %s", bad.Raw)
		}
		in, err := p.Store.GetInstance(ctx, "pet")
		if err != nil || in.Op.OriginatingIdentity != identity {
			t.Fatalf("originating identity not recorded with the operation: %q, %v", in.Op.OriginatingIdentity, err)
		}

		p.CP.paused.Store(false)
		last := p.waitOp(t, "/v2/service_instances/pet", op, 20*time.Second)
		if _, has := last.Body["instance_usable"]; last.str("state") != "succeeded" || has {
			t.Fatalf("final last_operation = %s (OSB v2.17: no instance_usable for a provision)", last.Raw)
		}
		if last.Header.Get("Retry-After") != "" {
			t.Fatal("Retry-After on a finished operation")
		}
		g := p.do(t, "GET", "/v2/service_instances/pet", nil)
		p.expect(t, g, 200, "GET instance")
		params, _ := g.Body["parameters"].(map[string]any)
		if g.str("service_id") != api.ServiceID || params["metadata"].(map[string]any)["name"] != "petstore" {
			t.Fatalf("GET instance = %s", g.Raw)
		}
		sp, err := p.Store.GetSpec(ctx, "petstore")
		if err != nil || sp.InstanceID != "pet" || sp.Deleted {
			t.Fatalf("route store has %+v, %v", sp, err)
		}
		pub, err := p.Store.GetPublication(ctx, "petstore")
		if err != nil || pub.Revision != sp.Revision {
			t.Fatalf("publication %+v, spec revision %d", pub, sp.Revision)
		}
	})

	t.Run("IdenticalReprovision200Conflicting409", func(t *testing.T) {
		r := p.do(t, "PUT", "/v2/service_instances/pet?accepts_incomplete=true", provisionBody(edgeRoute("petstore")))
		p.expect(t, r, 200, "identical re-provision")
		r = p.do(t, "PUT", "/v2/service_instances/pet?accepts_incomplete=true", provisionBody(edgeRoute("petstore", "changed.example.com")))
		p.expect(t, r, 409, "conflicting re-provision")
		// Another instance may not take the same spec name.
		r = p.do(t, "PUT", "/v2/service_instances/pet2?accepts_incomplete=true", provisionBody(edgeRoute("petstore", "x.example.com")))
		p.expect(t, r, 409, "same metadata.name, other instance")
		// Nor a host another EdgeRoute owns (409 naming its instance).
		r = p.do(t, "PUT", "/v2/service_instances/pet3?accepts_incomplete=true", provisionBody(edgeRoute("catstore", "petstore.example.com")))
		p.expect(t, r, 409, "host owned by another EdgeRoute")
		if !strings.Contains(r.str("description"), `EdgeRoute "petstore" of service instance "pet"`) {
			t.Fatalf("host conflict description: %s", r.str("description"))
		}
	})

	t.Run("UpdateLastOperationFields", func(t *testing.T) {
		p.CP.paused.Store(true)
		r := p.do(t, "PATCH", "/v2/service_instances/pet?accepts_incomplete=true", map[string]any{"service_id": api.ServiceID,
			"parameters": edgeRoute("petstore", "petstore.example.com", "pets.example.org")})
		p.expect(t, r, 202, "update")
		g := p.do(t, "GET", "/v2/service_instances/pet", nil)
		p.expect(t, g, 422, "GET while updating")
		if g.str("error") != "ConcurrencyError" {
			t.Fatalf("GET while updating: %s", g.Raw)
		}
		bind := map[string]any{"service_id": api.ServiceID, "plan_id": api.PlanID, "parameters": map[string]any{"provider": "partners"}}
		p.expect(t, p.do(t, "PUT", "/v2/service_instances/pet/service_bindings/busy?accepts_incomplete=true", bind), 422, "bind while updating")
		p.CP.paused.Store(false)
		last := p.waitOp(t, "/v2/service_instances/pet", r.str("operation"), 20*time.Second)
		if last.str("state") != "succeeded" || last.Body["instance_usable"] != true || last.Body["update_repeatable"] != true {
			t.Fatalf("update last_operation = %s", last.Raw)
		}
		sp, _ := p.Store.GetSpec(ctx, "petstore")
		if !strings.Contains(string(sp.JSON), "pets.example.org") {
			t.Fatalf("route store after update: %s", sp.JSON)
		}
		r = p.do(t, "PATCH", "/v2/service_instances/pet?accepts_incomplete=true", map[string]any{"service_id": api.ServiceID,
			"parameters": edgeRoute("renamed")})
		p.expect(t, r, 400, "rename through update")
	})

	t.Run("ControlPlaneRejectionFailsWithItsError", func(t *testing.T) {
		p.CP.setReject(func(name string) error {
			if name == "rejected" {
				return errors.New(`compile: spec.routes[0]: cluster "api" has no healthy endpoints`)
			}
			return nil
		})
		defer p.CP.setReject(nil)
		r := p.do(t, "PUT", "/v2/service_instances/rej?accepts_incomplete=true", provisionBody(edgeRoute("rejected")))
		p.expect(t, r, 202, "provision")
		last := p.waitOp(t, "/v2/service_instances/rej", r.str("operation"), 20*time.Second)
		if last.str("state") != "failed" || !strings.Contains(last.str("description"), `cluster "api" has no healthy endpoints`) {
			t.Fatalf("last_operation = %s", last.Raw)
		}
		if _, has := last.Body["instance_usable"]; has {
			t.Fatalf("a failed provision's last_operation carries instance_usable (OSB v2.17 allows it only for update and deprovision): %s", last.Raw)
		}
		p.expect(t, p.do(t, "GET", "/v2/service_instances/rej", nil), 404, "GET a failed provision")
	})

	t.Run("BindingIssuesKeyOnceStoresOnlyHash", func(t *testing.T) {
		body := map[string]any{"service_id": api.ServiceID, "plan_id": api.PlanID,
			"parameters": map[string]any{"provider": "partners", "labels": map[string]string{"plan": "gold"}}}
		r := p.do(t, "PUT", "/v2/service_instances/pet/service_bindings/b1?accepts_incomplete=true", body)
		p.expect(t, r, 201, "bind")
		creds, _ := r.Body["credentials"].(map[string]any)
		key, _ := creds["api_key"].(string)
		issuedKeys = append(issuedKeys, key)
		if !strings.HasPrefix(key, api.KeyPrefix) || len(key) < 40 || creds["header"] != "x-api-key" {
			t.Fatalf("credentials = %v", creds)
		}
		hosts, _ := creds["hosts"].([]any)
		if len(hosts) != 2 || hosts[0] != "petstore.example.com" {
			t.Fatalf("credentials hosts = %v", creds["hosts"])
		}
		sum := sha256.Sum256([]byte(key))
		hash := hex.EncodeToString(sum[:])
		sp, _ := p.Store.GetSpec(ctx, "petstore")
		if !strings.Contains(string(sp.JSON), hash) || !strings.Contains(string(sp.JSON), `"id":"b1"`) {
			t.Fatalf("the key's hash is not in the stored spec: %s", sp.JSON)
		}
		b, _ := p.Store.GetBinding(ctx, "pet", "b1")
		in, _ := p.Store.GetInstance(ctx, "pet")
		for what, s := range map[string]string{"spec": string(sp.JSON), "binding": b.SHA256 + b.KeyID + b.Provider, "instance": string(in.Spec) + string(in.Op.Payload)} {
			if strings.Contains(s, key) || strings.Contains(s, strings.TrimPrefix(key, api.KeyPrefix)) {
				t.Fatalf("the key itself is stored in the %s", what)
			}
		}
		pub, _ := p.Store.GetPublication(ctx, "petstore")
		if pub.Revision < sp.Revision {
			t.Fatalf("bind answered 201 before the key's revision %d was published (%d)", sp.Revision, pub.Revision)
		}
		g := p.do(t, "GET", "/v2/service_instances/pet/service_bindings/b1", nil)
		p.expect(t, g, 200, "GET binding")
		if c := g.Body["credentials"].(map[string]any); c["api_key"] != nil || c["api_key_id"] != "b1" {
			t.Fatalf("GET binding must not return the key again: %s", g.Raw)
		}
		lo := p.do(t, "GET", "/v2/service_instances/pet/service_bindings/b1/last_operation", nil)
		if lo.Code != 200 || lo.str("state") != "succeeded" {
			t.Fatalf("binding last_operation = %d %s", lo.Code, lo.Raw)
		}
		p.expect(t, p.do(t, "PUT", "/v2/service_instances/pet/service_bindings/b1?accepts_incomplete=true", body), 200, "identical re-bind")
		other := map[string]any{"service_id": api.ServiceID, "plan_id": api.PlanID, "parameters": map[string]any{"provider": "partners"}}
		p.expect(t, p.do(t, "PUT", "/v2/service_instances/pet/service_bindings/b1?accepts_incomplete=true", other), 409, "conflicting re-bind")
		bad := map[string]any{"service_id": api.ServiceID, "plan_id": api.PlanID, "parameters": map[string]any{"provider": "nope"}}
		p.expect(t, p.do(t, "PUT", "/v2/service_instances/pet/service_bindings/b2?accepts_incomplete=true", bad), 400, "unknown provider")

		// Unbind revokes: the hash leaves the spec at a new revision.
		del := p.do(t, "DELETE", "/v2/service_instances/pet/service_bindings/b1?accepts_incomplete=true&service_id="+api.ServiceID+"&plan_id="+api.PlanID, nil)
		p.expect(t, del, 202, "unbind")
		last := p.waitOp(t, "/v2/service_instances/pet/service_bindings/b1", del.str("operation"), 20*time.Second)
		if last.Code != http.StatusGone {
			t.Fatalf("binding last_operation after unbind = %d %s, want 410", last.Code, last.Raw)
		}
		sp2, _ := p.Store.GetSpec(ctx, "petstore")
		if sp2.Revision <= sp.Revision || strings.Contains(string(sp2.JSON), hash) {
			t.Fatalf("after unbind: revision %d (was %d), spec %s", sp2.Revision, sp.Revision, sp2.JSON)
		}
		p.expect(t, p.do(t, "DELETE", "/v2/service_instances/pet/service_bindings/b1?accepts_incomplete=true&service_id="+api.ServiceID+"&plan_id="+api.PlanID, nil), 410, "unbind again")
		p.expect(t, p.do(t, "GET", "/v2/service_instances/pet/service_bindings/b1", nil), 404, "GET unbound binding")
	})

	t.Run("Deprovision202ThenGone410", func(t *testing.T) {
		q := "?accepts_incomplete=true&service_id=" + api.ServiceID + "&plan_id=" + api.PlanID
		p.expect(t, p.do(t, "DELETE", "/v2/service_instances/never"+q, nil), 410, "unknown instance")
		p.expect(t, p.do(t, "DELETE", "/v2/service_instances/pet?accepts_incomplete=true", nil), 400, "delete without service_id/plan_id")
		r := p.do(t, "DELETE", "/v2/service_instances/pet"+q, nil)
		p.expect(t, r, 202, "deprovision")
		last := p.waitOp(t, "/v2/service_instances/pet", r.str("operation"), 20*time.Second)
		if last.Code != http.StatusGone {
			t.Fatalf("last_operation after deprovision = %d %s", last.Code, last.Raw)
		}
		sp, err := p.Store.GetSpec(ctx, "petstore")
		if err != nil || !sp.Deleted {
			t.Fatalf("route store after deprovision: %+v, %v", sp, err)
		}
		pub, _ := p.Store.GetPublication(ctx, "petstore")
		if pub.Revision != sp.Revision {
			t.Fatalf("deprovision finished before the deletion (revision %d) was published (%d)", sp.Revision, pub.Revision)
		}
		p.expect(t, p.do(t, "DELETE", "/v2/service_instances/pet"+q, nil), 410, "deprovision again")
		p.expect(t, p.do(t, "GET", "/v2/service_instances/pet", nil), 404, "GET deleted")
		// The name is free again.
		p.provision(t, "pet-again", edgeRoute("petstore"))
	})
}
