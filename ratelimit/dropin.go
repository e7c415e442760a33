package ratelimit

import (
	"strconv"

	ratelimitv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/common/ratelimit/v3"
	rlsv3 "github.com/envoyproxy/go-control-plane/envoy/service/ratelimit/v3"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/structpb"
)

// This file holds what envoyproxy/ratelimit users see besides the
// decision: request-dependent stat names and dynamic metadata.

// MetricName is the stat name envoyproxy/ratelimit counts a matched
// descriptor under when its limit has detailed_metric, or a level on its
// way has value_to_metric: the domain and every entry with the request's
// value ("domain.key7_<value>"); a share_threshold entry keeps the
// wildcard ("domain.files_files/*"). For other limits it is the rule
// (l.Rule). Values longer than MaxKeyValueBytes appear as their hash, as
// in counter keys.
func (l *Limit) MetricName(domain string, d *ratelimitv3.RateLimitDescriptor, shared []string) string {
	if l.path == nil {
		return l.Rule
	}
	return string(l.appendMetricName(nil, domain, d, shared))
}

func (l *Limit) appendMetricName(b []byte, domain string, d *ratelimitv3.RateLimitDescriptor, shared []string) []byte {
	b = append(b, domain...)
	entries := d.GetEntries()
	if l.detailed {
		for i, e := range entries {
			b = append(b, '.')
			b = append(b, e.GetKey()...)
			switch {
			case shared != nil && shared[i] != "":
				b = append(b, '_')
				b = append(b, shared[i]...)
			case shared != nil && e.GetValue() == "":
			default:
				// Without share_threshold, every entry is key_value,
				// also when the value is empty.
				b = append(b, '_')
				b = AppendKeyValue(b, e.GetValue())
			}
		}
		return b
	}
	// value_to_metric on some level: the configured path, with the
	// request's value on the levels that ask for it.
	for i, e := range entries {
		b = append(b, '.')
		b = append(b, e.GetKey()...)
		if i >= len(l.path) {
			continue
		}
		lv := l.path[i]
		switch {
		case shared != nil && shared[i] != "":
			b = append(b, '_')
			b = append(b, shared[i]...)
		case lv.wildcard && lv.valueToMetric, lv.value == "" && lv.valueToMetric && e.GetValue() != "":
			b = append(b, '_')
			b = AppendKeyValue(b, e.GetValue())
		case lv.value != "":
			b = append(b, '_')
			b = append(b, lv.value...)
		}
	}
	return b
}

// detailedStats are the stats of a request-dependent metric name; past
// MaxDetailedSeries names, the rule's (and the overflow is counted).
func (s *Service) detailedStats(domain string, d *ratelimitv3.RateLimitDescriptor, shared []string, l *Limit) *ruleStats {
	var buf [128]byte
	key := l.appendMetricName(append(append(buf[:0], domain...), 0), domain, d, shared)
	if v, ok := s.detailed.Load(string(key)); ok {
		return v.(*ruleStats)
	}
	if s.detailedN.Add(1) > int64(s.opts.MaxDetailedSeries) {
		s.detailedN.Add(-1)
		s.metrics.detailedOverflow.Inc()
		return l.stats
	}
	name := string(key[len(domain)+1:])
	v, loaded := s.detailed.LoadOrStore(string(key), s.metrics.rule(domain, name))
	if loaded {
		s.detailedN.Add(-1)
	}
	return v.(*ruleStats)
}

// dynamicMetadata is envoyproxy/ratelimit's RESPONSE_DYNAMIC_METADATA
// answer: domain; descriptors (entries as "key=value", the override limit
// and the descriptor's hits addend when sent); the request's hitsAddend
// when not 0; and metadata, the config metadata of the limits that were
// not over (merged: maps merge, the first value of a key wins).
func dynamicMetadata(req *rlsv3.RateLimitRequest, limits []*Limit, statuses []*rlsv3.RateLimitResponse_DescriptorStatus) *structpb.Struct {
	fields := map[string]*structpb.Value{"domain": structpb.NewStringValue(req.GetDomain())}
	ds := make([]*structpb.Value, 0, len(req.GetDescriptors()))
	for _, d := range req.GetDescriptors() {
		entries := make([]*structpb.Value, len(d.GetEntries()))
		for i, e := range d.GetEntries() {
			entries[i] = structpb.NewStringValue(e.GetKey() + "=" + e.GetValue())
		}
		f := map[string]*structpb.Value{"entries": structpb.NewListValue(&structpb.ListValue{Values: entries})}
		if o := d.GetLimit(); o != nil {
			f["limit"] = structpb.NewStringValue("requests_per_unit:" + strconv.FormatUint(uint64(o.GetRequestsPerUnit()), 10) +
				" unit:" + rlsv3.RateLimitResponse_RateLimit_Unit(o.GetUnit()).String())
		}
		if h := d.GetHitsAddend(); h != nil {
			f["hitsAddend"] = structpb.NewNumberValue(float64(h.GetValue()))
		}
		ds = append(ds, structpb.NewStructValue(&structpb.Struct{Fields: f}))
	}
	fields["descriptors"] = structpb.NewListValue(&structpb.ListValue{Values: ds})
	if h := req.GetHitsAddend(); h != 0 {
		fields["hitsAddend"] = structpb.NewNumberValue(float64(h))
	}
	var md *structpb.Struct
	for i, l := range limits {
		if l == nil || l.Unlimited || l.Metadata == nil || statuses[i].GetCode() == rlsv3.RateLimitResponse_OVER_LIMIT {
			continue
		}
		if md == nil {
			md = &structpb.Struct{Fields: map[string]*structpb.Value{}}
		}
		mergeStruct(md, l.Metadata)
	}
	if md != nil && len(md.Fields) > 0 {
		fields["metadata"] = structpb.NewStructValue(md)
	}
	return &structpb.Struct{Fields: fields}
}

// mergeStruct adds src's fields to dst: a struct merges into a struct,
// otherwise the value already in dst stays. src (shared config) is never
// modified; what dst takes from it is copied.
func mergeStruct(dst, src *structpb.Struct) {
	for k, v := range src.GetFields() {
		cur, ok := dst.Fields[k]
		if !ok {
			dst.Fields[k] = proto.Clone(v).(*structpb.Value)
			continue
		}
		if cs, vs := cur.GetStructValue(), v.GetStructValue(); cs != nil && vs != nil {
			mergeStruct(cs, vs)
		}
	}
}
