package config

import (
	"fmt"
	"strings"

	rlsconfv3 "github.com/envoyproxy/go-control-plane/ratelimit/config/ratelimit/v3"
)

// FromProto converts a RateLimitConfig received over xDS (the resource
// envoyproxy/ratelimit subscribes to) and validates it like a file.
func FromProto(source string, c *rlsconfv3.RateLimitConfig) (*Domain, error) {
	d := &Domain{Name: c.GetDomain(), Source: source}
	var errs ErrorList
	d.Descriptors = fromProtoLevel(&errs, source, c.GetDescriptors(), 1)
	if len(errs) > 0 {
		return nil, errs
	}
	if err := Validate(d); err != nil {
		return nil, err
	}
	return d, nil
}

func fromProtoLevel(errs *ErrorList, source string, in []*rlsconfv3.RateLimitDescriptor, depth int) []Descriptor {
	if len(in) == 0 {
		return nil
	}
	if depth > maxDepth {
		*errs = append(*errs, &Error{Source: source, Reason: fmt.Sprintf("descriptors nest deeper than %d levels", maxDepth)})
		return nil
	}
	out := make([]Descriptor, len(in))
	for i, pd := range in {
		src := fmt.Sprintf("%s descriptor %s", source, pd.GetKey())
		d := Descriptor{
			Key:            pd.GetKey(),
			Value:          pd.GetValue(),
			ShadowMode:     pd.GetShadowMode(),
			DetailedMetric: pd.GetDetailedMetric(),
			Source:         src,
		}
		if rl := pd.GetRateLimit(); rl != nil {
			pol := &Policy{RequestsPerUnit: rl.GetRequestsPerUnit(), Unlimited: rl.GetUnlimited(), Name: rl.GetName()}
			if rl.GetUnit() != rlsconfv3.RateLimitUnit_UNKNOWN {
				pol.Unit = strings.ToLower(rl.GetUnit().String())
				pol.Window, _ = UnitWindow(pol.Unit)
			}
			for _, r := range rl.GetReplaces() {
				pol.Replaces = append(pol.Replaces, r.GetName())
			}
			d.Policy = pol
		}
		d.Descriptors = fromProtoLevel(errs, source, pd.GetDescriptors(), depth+1)
		out[i] = d
	}
	return out
}

// protoUnits are the units the RateLimitConfig proto can carry.
var protoUnits = map[string]rlsconfv3.RateLimitUnit{
	"second": rlsconfv3.RateLimitUnit_SECOND,
	"minute": rlsconfv3.RateLimitUnit_MINUTE,
	"hour":   rlsconfv3.RateLimitUnit_HOUR,
	"day":    rlsconfv3.RateLimitUnit_DAY,
}

// ProtoUnit returns the RateLimitConfig unit for a policy window, and
// false when the proto cannot express it (e.g. 30s, or a week).
func ProtoUnit(p *Policy) (rlsconfv3.RateLimitUnit, bool) {
	u, ok := protoUnits[UnitFor(p.Window)]
	return u, ok
}
