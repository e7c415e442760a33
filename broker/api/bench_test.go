package api_test

import (
	"fmt"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/gatehouse-edge/gatehouse/broker/api"
)

// BenchmarkProvisionAPI is the API's share of a provision: decode, parse
// and validate the EdgeRoute, host check, name claim, store write with the
// outbox flag, enqueue, clear the flag (SQLite store and queue).
func BenchmarkProvisionAPI(b *testing.B) {
	b.ReportAllocs()
	a := newAPI(b)
	var n atomic.Int64
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			i := n.Add(1)
			body := `{"service_id":"` + api.ServiceID + `","plan_id":"` + api.PlanID + `","organization_guid":"o","space_guid":"s","parameters":` +
				strings.NewReplacer(`"fz"`, fmt.Sprintf(`"b%d"`, i), "fz.example.com", fmt.Sprintf("b%d.example.com", i)).Replace(validSpec) + `}`
			w := serve(a, "PUT", fmt.Sprintf("/v2/service_instances/i%d?accepts_incomplete=true", i), []byte(body))
			if w.Code != 202 {
				b.Fatalf("%d %s", w.Code, w.Body)
			}
		}
	})
}

// BenchmarkLastOperation is one last_operation poll.
func BenchmarkLastOperation(b *testing.B) {
	b.ReportAllocs()
	a := newAPI(b)
	body := `{"service_id":"` + api.ServiceID + `","plan_id":"` + api.PlanID + `","organization_guid":"o","space_guid":"s","parameters":` + validSpec + `}`
	if w := serve(a, "PUT", "/v2/service_instances/x?accepts_incomplete=true", []byte(body)); w.Code != 202 {
		b.Fatal(w.Code)
	}
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if w := serve(a, "GET", "/v2/service_instances/x/last_operation", nil); w.Code != 200 {
				b.Fatalf("%d %s", w.Code, w.Body)
			}
		}
	})
}
