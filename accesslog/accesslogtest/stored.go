package accesslogtest

import (
	"context"
	"testing"

	"github.com/gatehouse-edge/gatehouse/accesslog"
)

// StoredOnce checks that s holds exactly n entries, each request id once,
// and that their hash chain verifies; it returns the stored request ids.
func StoredOnce(t testing.TB, s accesslog.Store, n int) map[string]bool {
	t.Helper()
	got, err := s.Query(context.Background(), accesslog.Filter{Limit: 2*n + 10})
	if err != nil {
		t.Fatal(err)
	}
	ids := make(map[string]bool, len(got))
	for _, g := range got {
		ids[g.RequestID] = true
	}
	if len(got) != n || len(ids) != n {
		t.Fatalf("%d rows, %d distinct request ids, want %d once each", len(got), len(ids), n)
	}
	res, err := accesslog.Verify(context.Background(), s, accesslog.VerifyOptions{})
	if err != nil || !res.OK || res.Records != int64(n) {
		t.Fatalf("verify: %+v %v", res, err)
	}
	return ids
}
