package config

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"

	"google.golang.org/protobuf/types/known/structpb"
	"gopkg.in/yaml.v3"
)

// MaxFileSize bounds one config file.
const MaxFileSize = 4 << 20

// maxDepth bounds descriptor nesting (envoyproxy has no bound; Envoy sends
// at most a handful of entries).
const maxDepth = 64

// Parse reads one envoyproxy/ratelimit YAML file. Every problem is
// reported as "file:line: reason"; unknown keys are errors, as in
// envoyproxy/ratelimit.
func Parse(file string, data []byte) (*Domain, error) {
	if len(data) > MaxFileSize {
		return nil, ErrorList{{Source: file, Reason: fmt.Sprintf("file is %d bytes, over the %d byte limit", len(data), MaxFileSize)}}
	}
	var doc yaml.Node
	dec := yaml.NewDecoder(bytes.NewReader(data))
	if err := dec.Decode(&doc); err != nil {
		if errors.Is(err, io.EOF) {
			return nil, ErrorList{{Source: file, Reason: "config file cannot have empty domain"}}
		}
		return nil, ErrorList{{Source: file + yamlErrLine(err), Reason: "error loading config file: " + yamlErrReason(err)}}
	}
	var extra yaml.Node
	if err := dec.Decode(&extra); err == nil {
		return nil, ErrorList{{Source: at(file, &extra), Reason: "a config file holds one YAML document"}}
	}
	p := &parser{file: file}
	d := p.root(&doc)
	if len(p.errs) > 0 {
		return nil, p.errs
	}
	if err := Validate(d); err != nil {
		return nil, err
	}
	return d, nil
}

// yamlErrLine pulls ":N" out of yaml.v3's "yaml: line N: ..." messages.
func yamlErrLine(err error) string {
	s := err.Error()
	if rest, ok := strings.CutPrefix(s, "yaml: line "); ok {
		if n, _, ok := strings.Cut(rest, ":"); ok {
			if _, err := strconv.Atoi(n); err == nil {
				return ":" + n
			}
		}
	}
	return ""
}

func yamlErrReason(err error) string {
	s := strings.TrimPrefix(err.Error(), "yaml: ")
	if rest, ok := strings.CutPrefix(s, "line "); ok {
		if _, r, ok := strings.Cut(rest, ": "); ok {
			return r
		}
	}
	return s
}

func at(file string, n *yaml.Node) string {
	if n == nil || n.Line == 0 {
		return file
	}
	return file + ":" + strconv.Itoa(n.Line)
}

type parser struct {
	file string
	errs ErrorList
}

func (p *parser) fail(n *yaml.Node, format string, args ...any) {
	p.errs = append(p.errs, &Error{Source: at(p.file, n), Reason: fmt.Sprintf(format, args...)})
}

// fields iterates a mapping node, rejecting keys not in allowed.
func (p *parser) fields(n *yaml.Node, what string, allowed map[string]bool, f func(key string, k, v *yaml.Node)) {
	if n.Kind != yaml.MappingNode {
		p.fail(n, "config error, %s must be a map, not %s", what, kindName(n))
		return
	}
	seen := map[string]bool{}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		if k.Kind != yaml.ScalarNode || (k.Tag != "!!str" && k.Tag != "") {
			// envoyproxy/ratelimit's wording; yaml.v3 tags 0.25 or true
			// as a float or a bool, as yaml.v2 does.
			p.fail(k, "config error, key is not of type string: %s", k.Value)
			continue
		}
		if !allowed[k.Value] {
			p.fail(k, "config error, unknown key '%s' in %s", k.Value, what)
			continue
		}
		if seen[k.Value] {
			p.fail(k, "config error, key '%s' appears twice in %s", k.Value, what)
			continue
		}
		seen[k.Value] = true
		f(k.Value, k, v)
	}
}

func kindName(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "a map"
	case yaml.SequenceNode:
		return "a list"
	case yaml.ScalarNode:
		if n.Tag == "!!null" {
			return "empty"
		}
		return "a scalar"
	case yaml.AliasNode:
		return "an alias"
	}
	return "a document"
}

var (
	rootKeys       = map[string]bool{"domain": true, "descriptors": true}
	descriptorKeys = map[string]bool{"key": true, "value": true, "rate_limit": true, "descriptors": true,
		"shadow_mode": true, "quota_mode": true, "detailed_metric": true, "value_to_metric": true,
		"share_threshold": true, "metadata": true}
	policyKeys = map[string]bool{"unit": true, "requests_per_unit": true, "unlimited": true, "name": true,
		"replaces": true, "algorithm": true, "burst": true}
	replaceKeys = map[string]bool{"name": true}
)

func (p *parser) root(doc *yaml.Node) *Domain {
	n := doc
	if n.Kind == yaml.DocumentNode && len(n.Content) == 1 {
		n = n.Content[0]
	}
	d := &Domain{Source: at(p.file, n)}
	p.fields(n, "the top level", rootKeys, func(key string, _, v *yaml.Node) {
		switch key {
		case "domain":
			d.Name = p.str(v, "domain")
		case "descriptors":
			d.Descriptors = p.descriptors(v, 1)
		}
	})
	return d
}

func (p *parser) str(n *yaml.Node, what string) string {
	if n.Kind != yaml.ScalarNode {
		p.fail(n, "config error, %s must be a string, not %s", what, kindName(n))
		return ""
	}
	if n.Tag == "!!null" {
		return ""
	}
	return n.Value
}

func (p *parser) boolean(n *yaml.Node, what string) bool {
	var b bool
	if n.Kind != yaml.ScalarNode || n.Decode(&b) != nil {
		p.fail(n, "config error, %s must be true or false, not %q", what, n.Value)
	}
	return b
}

func (p *parser) uint32(n *yaml.Node, what string) uint32 {
	if n.Kind != yaml.ScalarNode {
		p.fail(n, "config error, %s must be a whole number, not %s", what, kindName(n))
		return 0
	}
	v, err := strconv.ParseUint(n.Value, 10, 64)
	if err != nil || v > math.MaxUint32 {
		p.fail(n, "config error, %s must be a whole number from 0 to %d, not %q", what, uint32(math.MaxUint32), n.Value)
		return 0
	}
	return uint32(v)
}

func (p *parser) descriptors(n *yaml.Node, depth int) []Descriptor {
	if n.Kind == yaml.ScalarNode && n.Tag == "!!null" {
		return nil
	}
	if n.Kind != yaml.SequenceNode {
		p.fail(n, "config error, descriptors must be a list, not %s", kindName(n))
		return nil
	}
	if depth > maxDepth {
		p.fail(n, "config error, descriptors nest deeper than %d levels", maxDepth)
		return nil
	}
	out := make([]Descriptor, 0, len(n.Content))
	for _, item := range n.Content {
		d := Descriptor{Source: at(p.file, item)}
		if item.Kind != yaml.MappingNode {
			// envoyproxy/ratelimit's wording for a list item that is
			// not a map.
			p.fail(item, "config error, yaml file contains list of type other than map: %s", itemText(item))
			continue
		}
		p.fields(item, "a descriptor", descriptorKeys, func(key string, _, v *yaml.Node) {
			switch key {
			case "key":
				d.Key = p.str(v, "key")
			case "value":
				d.Value = p.str(v, "value")
			case "rate_limit":
				d.Policy = p.policy(v)
			case "descriptors":
				d.Descriptors = p.descriptors(v, depth+1)
			case "shadow_mode":
				d.ShadowMode = p.boolean(v, key)
			case "quota_mode":
				d.QuotaMode = p.boolean(v, key)
			case "detailed_metric":
				d.DetailedMetric = p.boolean(v, key)
			case "value_to_metric":
				d.ValueToMetric = p.boolean(v, key)
			case "share_threshold":
				d.ShareThreshold = p.boolean(v, key)
			case "metadata":
				// Arbitrary data returned in dynamic metadata when the
				// service has RESPONSE_DYNAMIC_METADATA on.
				d.Metadata = p.metadata(v)
			}
		})
		out = append(out, d)
	}
	return out
}

// itemText is how a non-map list item is named in an error: its scalar
// value, or its kind.
func itemText(n *yaml.Node) string {
	if n.Kind == yaml.ScalarNode {
		return n.Value
	}
	return kindName(n)
}

// metadata decodes a descriptor's metadata map; it must convert to a
// protobuf Struct (what Envoy receives).
func (p *parser) metadata(n *yaml.Node) map[string]any {
	if n.Kind == yaml.ScalarNode && n.Tag == "!!null" {
		return nil
	}
	var m map[string]any
	if n.Kind == yaml.MappingNode {
		plainMetadata(n)
	}
	if n.Kind != yaml.MappingNode || n.Decode(&m) != nil {
		p.fail(n, "error parsing metadata: metadata must be a map with string keys, not %s", kindName(n))
		return nil
	}
	if _, err := structpb.NewStruct(m); err != nil {
		p.fail(n, "error parsing metadata: %v", err)
		return nil
	}
	return m
}

// plainMetadata makes metadata decode as envoyproxy/ratelimit reads it
// (yaml.v2 into interface values): timestamps stay text, and map keys
// of any scalar type become strings.
func plainMetadata(n *yaml.Node) {
	for i, c := range n.Content {
		if c.Kind == yaml.ScalarNode && (c.Tag == "!!timestamp" || n.Kind == yaml.MappingNode && i%2 == 0) {
			c.Tag = "!!str"
		}
		plainMetadata(c)
	}
}

func (p *parser) policy(n *yaml.Node) *Policy {
	pol := &Policy{}
	var unitNode *yaml.Node
	p.fields(n, "rate_limit", policyKeys, func(key string, _, v *yaml.Node) {
		switch key {
		case "unit":
			unitNode = v
			pol.Unit = strings.ToLower(p.str(v, "unit"))
		case "requests_per_unit":
			pol.RequestsPerUnit = p.uint32(v, key)
		case "unlimited":
			pol.Unlimited = p.boolean(v, key)
		case "name":
			pol.Name = p.str(v, key)
		case "replaces":
			if v.Kind != yaml.SequenceNode {
				p.fail(v, "config error, replaces must be a list of {name: ...}, not %s", kindName(v))
				return
			}
			for _, r := range v.Content {
				name := ""
				p.fields(r, "a replaces entry", replaceKeys, func(_ string, _, rv *yaml.Node) { name = p.str(rv, "name") })
				pol.Replaces = append(pol.Replaces, name)
			}
		case "algorithm":
			pol.Algorithm = p.str(v, key)
		case "burst":
			pol.Burst = p.uint32(v, key)
		}
	})
	if pol.Unit != "" {
		if w, ok := UnitWindow(pol.Unit); ok {
			pol.Window = w
		} else if w, err := time.ParseDuration(pol.Unit); err == nil && w >= time.Second {
			// Gatehouse extension: unit: 30s.
			pol.Window, pol.Unit = w, ""
		} else {
			p.fail(unitNode, "invalid rate limit unit '%s': want second, minute, hour, day, week, month, year (or a Gatehouse duration such as 30s)", pol.Unit)
			pol.Window = -1 // reported here; keep Validate quiet
		}
	}
	if pol.Window < 0 {
		pol.Window = time.Second
	}
	return pol
}

// LoadOptions change how a set of files is combined.
type LoadOptions struct {
	// MergeDomains (envoyproxy's MERGE_DOMAIN_CONFIG) lets several files
	// declare the same domain: their top-level descriptors are combined,
	// in file-name order, and a composite key declared twice is an error.
	// Off, a domain may appear in one file only.
	MergeDomains bool
}

// LoadDir reads every *.yaml and *.yml file directly in dir (sorted by
// name), as envoyproxy/ratelimit reads its runtime config directory. Each
// domain may appear in one file only. All problems of all files are
// returned together.
func LoadDir(dir string) ([]*Domain, error) { return LoadDirWith(dir, LoadOptions{}) }

// LoadDirWith is LoadDir with options.
func LoadDirWith(dir string, o LoadOptions) ([]*Domain, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("ratelimit config directory %s: %w", dir, err)
	}
	var files []string
	for _, e := range entries {
		name := e.Name()
		if e.IsDir() || strings.HasPrefix(name, ".") {
			continue
		}
		if ext := filepath.Ext(name); ext == ".yaml" || ext == ".yml" {
			files = append(files, filepath.Join(dir, name))
		}
	}
	sort.Strings(files)
	return LoadFilesWith(o, files...)
}

// LoadFilesWith parses the named files and combines them as o says.
func LoadFilesWith(o LoadOptions, files ...string) ([]*Domain, error) {
	var errs ErrorList
	var out []*Domain
	owner := map[string]string{}
	byName := map[string]*Domain{}
	for _, f := range files {
		data, err := readFile(f)
		if err != nil {
			errs = append(errs, &Error{Source: f, Reason: err.Error()})
			continue
		}
		d, err := Parse(f, data)
		if err != nil {
			var l ErrorList
			if errors.As(err, &l) {
				errs = append(errs, l...)
			} else {
				errs = append(errs, &Error{Source: f, Reason: err.Error()})
			}
			continue
		}
		if prev, dup := owner[d.Name]; dup {
			if !o.MergeDomains {
				errs = append(errs, &Error{Source: d.Source, Reason: fmt.Sprintf("duplicate domain '%s' in config file (already declared at %s)", d.Name, prev)})
				continue
			}
			into := byName[d.Name]
			merged := &Domain{Name: into.Name, Source: into.Source,
				Descriptors: append(append([]Descriptor(nil), into.Descriptors...), d.Descriptors...)}
			if err := Validate(merged); err != nil {
				var l ErrorList
				if errors.As(err, &l) {
					errs = append(errs, l...)
				} else {
					errs = append(errs, &Error{Source: d.Source, Reason: err.Error()})
				}
				continue
			}
			*into = *merged
			continue
		}
		owner[d.Name] = d.Source
		byName[d.Name] = d
		out = append(out, d)
	}
	return out, errs.err()
}

func readFile(name string) ([]byte, error) {
	f, err := os.Open(name)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, MaxFileSize+1))
	if err != nil {
		return nil, err
	}
	return data, nil
}
