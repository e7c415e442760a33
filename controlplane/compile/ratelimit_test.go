package compile

import (
	"strings"
	"testing"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	ratelimitv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/ratelimit/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"

	"github.com/gatehouse-edge/gatehouse/contract"
	"github.com/gatehouse-edge/gatehouse/controlplane/envoy"
	"github.com/gatehouse-edge/gatehouse/controlplane/source"
	"github.com/gatehouse-edge/gatehouse/ratelimit"
)

const strictSpec = `apiVersion: gatehouse/v1
kind: EdgeRoute
metadata: {name: shop, team: t}
spec:
  hosts: [shop.example.com]
  upstreams: [{name: api, endpoints: ["10.0.0.1:80"]}]
  routes:
    - name: login
      match: {path: /login}
      upstream: api
      rateLimits:
        - {name: per-net, by: [client.ip/64], limit: 5/minute, onFailure: deny}
        - {name: per-path, by: [request.path], limit: 50/minute}
`

// TestRateLimitFailureSettingsFlow: --ratelimit-failure-mode deny reaches
// Envoy's ratelimit filter (failure_mode_deny), a limit's onFailure
// reaches the ratelimit sidecar's rules, and client.ip/64 becomes Envoy's
// masked_remote_address action (/64 for IPv6) with the matching
// descriptor key in the sidecar's rules.
func TestRateLimitFailureSettingsFlow(t *testing.T) {
	for _, deny := range []bool{false, true} {
		c, err := New(Options{RateLimitFailureModeDeny: deny})
		if err != nil {
			t.Fatal(err)
		}
		res := c.Compile(source.Revision{ID: "r", Specs: []source.Spec{{Origin: "shop.yaml", Data: []byte(strictSpec)}}})
		for _, s := range res.Specs {
			if s.Err != nil {
				t.Fatalf("spec: %v", s.Err)
			}
		}
		r, _, err := res.Resources("us-east-1")
		if err != nil {
			t.Fatal(err)
		}
		var filter *ratelimitv3.RateLimit
		for _, x := range r["type.googleapis.com/envoy.config.listener.v3.Listener"] {
			l := x.(*listenerv3.Listener)
			hcm := &hcmv3.HttpConnectionManager{}
			if err := l.GetFilterChains()[0].GetFilters()[0].GetTypedConfig().UnmarshalTo(hcm); err != nil {
				t.Fatal(err)
			}
			for _, f := range hcm.GetHttpFilters() {
				if f.GetName() == envoy.RateLimitFilter {
					filter = &ratelimitv3.RateLimit{}
					if err := f.GetTypedConfig().UnmarshalTo(filter); err != nil {
						t.Fatal(err)
					}
				}
			}
		}
		if filter == nil || filter.GetFailureModeDeny() != deny {
			t.Fatalf("option deny=%v: ratelimit filter %v", deny, filter)
		}
		if !deny {
			continue
		}
		var rules *ratelimit.SpecRules
		for _, x := range r[contract.ExtensionConfigType] {
			tec := x.(*corev3.TypedExtensionConfig)
			if strings.HasPrefix(tec.GetName(), contract.RateLimitPrefix) {
				rules = &ratelimit.SpecRules{}
				if err := contract.Unwrap(tec, contract.RateLimitRulesType, rules); err != nil {
					t.Fatal(err)
				}
			}
		}
		if rules == nil || len(rules.Limits) != 2 {
			t.Fatalf("sidecar rules = %+v", rules)
		}
		if l := rules.Limits[0]; l.OnFailure != "deny" || l.Descriptor[2].Key != "masked_remote_address" {
			t.Errorf("per-net limit = %+v", l)
		}
		if l := rules.Limits[1]; l.OnFailure != "" {
			t.Errorf("per-path limit = %+v", l)
		}
		for _, x := range r["type.googleapis.com/envoy.config.route.v3.RouteConfiguration"] {
			rc := x.(*routev3.RouteConfiguration)
			for _, vh := range rc.GetVirtualHosts() {
				for _, rt := range vh.GetRoutes() {
					a := rt.GetRoute().GetRateLimits()[0].GetActions()[2].GetMaskedRemoteAddress()
					if a == nil || a.GetV6PrefixMaskLen().GetValue() != 64 || a.GetV4PrefixMaskLen().GetValue() != 32 {
						t.Errorf("client.ip/64 action = %v", rt.GetRoute().GetRateLimits()[0].GetActions()[2])
					}
				}
			}
		}
	}
}
