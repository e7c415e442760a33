package compile

import (
	"encoding/json"
	"fmt"
	"sort"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
)

// Rendered is the JSON form of one node group's resources, for `gatehouse
// spec render`, /debug/config and golden files.
type Rendered struct {
	NodeGroup string                       `json:"node_group"`
	Version   string                       `json:"version"`
	Resources map[string][]json.RawMessage `json:"resources"` // type URL → resources
	Warnings  []string                     `json:"warnings,omitempty"`
}

// Render turns a node group's resources into stable, indented JSON (keys
// sorted, Anys expanded with their @type).
func Render(group, version string, res Resources, warnings []string) ([]byte, error) {
	out := Rendered{NodeGroup: group, Version: version, Resources: map[string][]json.RawMessage{}, Warnings: warnings}
	types := make([]string, 0, len(res))
	for t := range res {
		types = append(types, t)
	}
	sort.Strings(types)
	for _, t := range types {
		list := []json.RawMessage{}
		for _, r := range res[t] {
			raw, err := protojson.Marshal(redact(r.(proto.Message)))
			if err != nil {
				return nil, fmt.Errorf("rendering a %s: %w", t, err)
			}
			// protojson's spacing is deliberately unstable; normalize.
			var v any
			if err := json.Unmarshal(raw, &v); err != nil {
				return nil, err
			}
			norm, err := json.Marshal(v)
			if err != nil {
				return nil, err
			}
			list = append(list, norm)
		}
		out.Resources[t] = list
	}
	return json.MarshalIndent(out, "", "  ")
}

// Redacted replaces private key bytes in rendered output.
const Redacted = "[redacted]"

// redact returns m, or for an SDS secret a copy whose private key is
// replaced by Redacted: key bytes never reach logs, /debug/config or
// golden files.
func redact(m proto.Message) proto.Message {
	sec, ok := m.(*tlsv3.Secret)
	if !ok || sec.GetTlsCertificate().GetPrivateKey() == nil {
		return m
	}
	c := proto.Clone(sec).(*tlsv3.Secret)
	c.GetTlsCertificate().PrivateKey = &corev3.DataSource{Specifier: &corev3.DataSource_InlineString{InlineString: Redacted}}
	return c
}
