package compile

import (
	"encoding/json"
	"fmt"
	"sort"

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
			raw, err := protojson.Marshal(r.(proto.Message))
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
