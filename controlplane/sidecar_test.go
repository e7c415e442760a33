package controlplane_test

import (
	"context"
	"sort"
	"strings"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	rlsconfv3 "github.com/envoyproxy/go-control-plane/ratelimit/config/ratelimit/v3"
	"google.golang.org/protobuf/types/known/anypb"

	"github.com/gatehouse-edge/gatehouse/accesslog"
	"github.com/gatehouse-edge/gatehouse/authz"
	"github.com/gatehouse-edge/gatehouse/contract"
	"github.com/gatehouse-edge/gatehouse/controlplane"
	"github.com/gatehouse-edge/gatehouse/internal/xdsclient"
	"github.com/gatehouse-edge/gatehouse/ratelimit"
)

// TestSidecarsReceiveTheirResources: the sidecars' own ADS client, as a
// node of the group, gets every spec's authz policy, rate-limit rules and
// access-log settings (decodable with the sidecars' types) and the
// RateLimitConfig of domain gatehouse.
func TestSidecarsReceiveTheirResources(t *testing.T) {
	h := startControlPlane(t, controlplane.Config{}, examples(t))
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()

	exts := make(chan []*anypb.Any, 1)
	go xdsclient.Run(ctx, xdsclient.Config{Server: h.addr, NodeID: "authz-1", NodeCluster: "us-east-1", TypeURL: contract.ExtensionConfigType},
		func(_ string, res []*anypb.Any) error {
			select {
			case exts <- res:
			default:
			}
			return nil
		})
	var got []*anypb.Any
	select {
	case got = <-exts:
	case <-time.After(15 * time.Second):
		t.Fatal("no extension configs")
	}
	byName := map[string]*corev3.TypedExtensionConfig{}
	var names []string
	for _, a := range got {
		tec := &corev3.TypedExtensionConfig{}
		if err := a.UnmarshalTo(tec); err != nil {
			t.Fatal(err)
		}
		byName[tec.GetName()] = tec
		names = append(names, tec.GetName())
	}
	sort.Strings(names)
	want := "gatehouse.accesslog/petstore,gatehouse.accesslog/status-page,gatehouse.authz/petstore,gatehouse.authz/status-page,gatehouse.ratelimit/petstore,gatehouse.ratelimit/status-page"
	if strings.Join(names, ",") != want {
		t.Fatalf("extension configs = %v", names)
	}
	var pol authz.SpecPolicy
	if err := contract.Unwrap(byName["gatehouse.authz/petstore"], contract.AuthzPolicyType, &pol); err != nil {
		t.Fatal(err)
	}
	if len(pol.Routes) != 3 || pol.Routes[0].ID != "petstore/list-pets" || pol.Routes[2].Mode != "public" {
		t.Errorf("petstore policy routes = %+v", pol.Routes)
	}
	var rules ratelimit.SpecRules
	if err := contract.Unwrap(byName["gatehouse.ratelimit/petstore"], contract.RateLimitRulesType, &rules); err != nil {
		t.Fatal(err)
	}
	if len(rules.Limits) != 3 {
		t.Errorf("petstore limits = %+v", rules.Limits)
	}
	var logs accesslog.SpecSettings
	if err := contract.Unwrap(byName["gatehouse.accesslog/petstore"], contract.AccessLogSettingType, &logs); err != nil {
		t.Fatal(err)
	}
	if _, ok := logs.Routes["petstore/list-pets"]; !ok {
		t.Errorf("access-log settings = %+v", logs)
	}

	rlcs := make(chan []*anypb.Any, 1)
	go xdsclient.Run(ctx, xdsclient.Config{Server: h.addr, NodeID: "ratelimit-1", NodeCluster: "us-east-1", TypeURL: contract.RateLimitConfigType},
		func(_ string, res []*anypb.Any) error {
			select {
			case rlcs <- res:
			default:
			}
			return nil
		})
	select {
	case res := <-rlcs:
		rlc := &rlsconfv3.RateLimitConfig{}
		if len(res) != 1 || res[0].UnmarshalTo(rlc) != nil || rlc.GetDomain() != contract.RateLimitDomain || len(rlc.GetDescriptors()) == 0 {
			t.Fatalf("RateLimitConfig = %v", res)
		}
		if d := rlc.GetDescriptors()[0]; d.GetKey() != "route" {
			t.Errorf("first descriptor key = %q, want route", d.GetKey())
		}
	case <-time.After(15 * time.Second):
		t.Fatal("no RateLimitConfig")
	}
}
