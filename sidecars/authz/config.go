package authzsidecar

import (
	"google.golang.org/protobuf/types/known/anypb"

	"github.com/gatehouse-edge/gatehouse/authz"
	"github.com/gatehouse-edge/gatehouse/contract"
	"github.com/gatehouse-edge/gatehouse/internal/specdir"
)

// LoadSpecDir loads, validates and compiles every spec in dir, through the
// same authz.Compile the control plane uses.
func LoadSpecDir(dir string) ([]*authz.SpecPolicy, error) {
	return specdir.LoadCompiled(dir, authz.Compile)
}

// PoliciesFromResources decodes the authz policies among TypedExtensionConfig
// resources: those named contract.AuthzPrefix+<spec>; other concerns'
// resources are skipped. Any undecodable authz resource fails the whole set
// (the caller NACKs and keeps its last good policies).
func PoliciesFromResources(resources []*anypb.Any) ([]*authz.SpecPolicy, error) {
	return contract.Collect(resources, contract.AuthzPrefix, contract.AuthzPolicyType, func(p *authz.SpecPolicy) string { return p.Spec })
}
