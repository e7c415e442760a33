package e2e

import (
	"context"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/gatehouse-edge/gatehouse/broker"
	"github.com/gatehouse-edge/gatehouse/broker/osbclient"
	"github.com/gatehouse-edge/gatehouse/broker/store/sqlitestore"
)

// TestDevReportsPublicationsOnce: gatehouse dev's control plane reports
// to the broker's store through the replica-safe reporter, as the split
// deployment does: a rebuild for another spec does not write the
// publication of a spec already reported published again (the raw store
// rewrote every publication on every rebuild).
func TestDevReportsPublicationsOnce(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cfg, out := devConfig(t)
	ep, _ := runDev(t, ctx, cfg, out)
	db, err := sqlitestore.OpenReaders(filepath.Join(cfg.DataDir, broker.EmbeddedStoreFile), 1)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	reported := func() (rev, at int64) {
		t.Helper()
		var msg string
		if err := db.QueryRowContext(ctx, `SELECT rev, error, reported_at FROM publications WHERE name = 'petstore'`).Scan(&rev, &msg, &at); err != nil {
			t.Fatalf("petstore's publication: %v", err)
		}
		if msg != "" {
			t.Fatalf("petstore reported failed: %s", msg)
		}
		return rev, at
	}
	waitUntil(t, 30*time.Second, "petstore reported published", func() bool {
		var n int
		return db.QueryRowContext(ctx, `SELECT count(*) FROM publications WHERE name = 'petstore' AND error = ''`).Scan(&n) == nil && n == 1
	})
	rev, at := reported()

	osb := &osbclient.Client{BaseURL: ep.Broker, Username: ep.BrokerUser, Password: ep.BrokerPassword}
	echo := strings.TrimPrefix(ep.Echo, "http://")
	for i, name := range []string{"rebuild-a", "rebuild-b"} {
		spec := []byte(`{"apiVersion":"gatehouse/v1","kind":"EdgeRoute","metadata":{"name":"` + name + `","team":"t"},
"spec":{"hosts":["` + name + `.example.com"],"upstreams":[{"name":"api","endpoints":["` + echo + `"]}],
"routes":[{"name":"r","match":{"pathPrefix":"/"},"upstream":"api"}]}}`)
		r, err := osb.Provision(ctx, name, spec)
		if err != nil {
			t.Fatalf("provision %d: %v", i, err)
		}
		final, err := osbclient.Wait(ctx, time.Minute, func(ctx context.Context) (*osbclient.Response, error) {
			return osb.LastOperation(ctx, name, r.Operation)
		}, nil)
		if err != nil || final.State != "succeeded" {
			t.Fatalf("provision %s: %v %+v", name, err, final)
		}
	}
	if rev2, at2 := reported(); rev2 != rev || at2 != at {
		t.Fatalf("petstore's publication rewritten by rebuilds for other specs: revision %d at %d, then revision %d at %d", rev, at, rev2, at2)
	}
}
