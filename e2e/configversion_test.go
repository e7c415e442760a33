package e2e

import (
	"context"
	"encoding/json"
	"net/http"
	"net/url"
	"testing"
	"time"
)

// TestAccessLogCarriesConfigVersion: requests through the dev front door
// (an Envoy of the dev group: ext_authz with the route table's
// gatehouse.revision, the ALS entry with the ext_authz metadata and the
// custom tag config_version from the route's metadata) land in the access
// log with the config version the control plane serves the group, public
// routes included: the outcome signal the rollout gate compares.
func TestAccessLogCarriesConfigVersion(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	cfg, out := devConfig(t)
	ep, _ := runDevAsync(t, ctx, cfg, out)
	for _, c := range bannerCurls(t, out.String()) {
		for i := 0; i < c.repeat; i++ {
			c.run(t, ctx)
		}
	}
	var served string
	waitUntil(t, 20*time.Second, "the dev group's served version", func() bool {
		req, _ := http.NewRequestWithContext(ctx, "GET", ep.ControlPlaneAdmin+"/debug/specs", nil)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return false
		}
		defer resp.Body.Close()
		var st struct {
			Publishing struct {
				Served map[string]string `json:"served"`
			} `json:"publishing"`
		}
		if json.NewDecoder(resp.Body).Decode(&st) != nil {
			return false
		}
		served = st.Publishing.Served[ep.NodeGroup]
		return served != ""
	})
	s := &suite{t: t, ep: ep}
	waitUntil(t, 20*time.Second, "the front door's requests in the access log, each with the served config version", func() bool {
		recs := s.queryLogs(ctx, url.Values{"since": {"1h"}, "limit": {"100"}})
		stamped := 0
		for _, r := range recs {
			if r.Route == "" {
				continue // no route matched: no route metadata, no version
			}
			// With ext_authz from its metadata, on public routes from the
			// route's revision metadata (the ALS custom tag).
			if r.ConfigVersion != served {
				t.Fatalf("record %s (route %s, status %d) has config_version %q, the group is served %q", r.RequestID, r.Route, r.Status, r.ConfigVersion, served)
			}
			stamped++
		}
		return stamped >= 5
	})
}
