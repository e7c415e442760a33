package spec

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"sync"

	"gopkg.in/yaml.v3"
)

// MaxDocumentSize bounds the bytes read from one file or request body.
const MaxDocumentSize = 1 << 20

// MaxAliasExpansion bounds the YAML nodes one document may reach through
// aliases (*name): nested aliases expand exponentially (an "alias bomb"),
// and the document is refused before they are followed further.
const MaxAliasExpansion = 100_000

// Document is one EdgeRoute as loaded, with where it came from.
type Document struct {
	EdgeRoute EdgeRoute
	File      string
	Index     int // position of the document within its file, from 0
	lines     map[string]int
}

// Name is metadata.name.
func (d *Document) Name() string { return d.EdgeRoute.Metadata.Name }

// Line is the 1-based line of the field at path, or of the nearest parent
// field that has one; 0 when unknown.
func (d *Document) Line(path string) int {
	for p := path; p != ""; p = parentPath(p) {
		if l, ok := d.lines[p]; ok {
			return l
		}
	}
	return d.lines[""]
}

func parentPath(p string) string {
	i := strings.LastIndexAny(p, ".[")
	if i <= 0 {
		return ""
	}
	return p[:i]
}

// Parse reads every EdgeRoute document in data (YAML, multi-document YAML,
// or JSON). It checks structure (unknown fields, types) but not meaning;
// call Validate for that. All structural problems are returned together.
func Parse(file string, data []byte) ([]*Document, error) {
	if len(data) > MaxDocumentSize {
		return nil, ErrorList{{File: file, Reason: fmt.Sprintf("document is %d bytes, over the %d byte limit", len(data), MaxDocumentSize)}}
	}
	// A JSON object (the canonical form the broker store and the S3
	// source hold) takes the fast path when it can; everything else, and
	// every JSON document with a problem, is read as YAML.
	if d, ok := parseJSON(file, data); ok {
		return []*Document{d}, nil
	}
	return parseYAML(file, data)
}

// parseYAML is Parse through yaml.v3: any YAML, including JSON.
func parseYAML(file string, data []byte) ([]*Document, error) {
	dec := yaml.NewDecoder(bytes.NewReader(data))
	var docs []*Document
	var problems ErrorList
	for i := 0; ; i++ {
		var root yaml.Node
		err := dec.Decode(&root)
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			problems = append(problems, syntaxError(file, err))
			break
		}
		if len(root.Content) == 0 || (root.Content[0].Kind == yaml.ScalarNode && root.Content[0].Tag == "!!null") {
			continue // empty document, e.g. a trailing ---
		}
		d, errs := decodeDocument(file, len(docs), root.Content[0])
		problems = append(problems, errs...)
		if d != nil {
			docs = append(docs, d)
		}
	}
	if len(docs) == 0 && len(problems) == 0 {
		problems = append(problems, &Error{File: file, Reason: "no EdgeRoute document found"})
	}
	return docs, problems.err()
}

var yamlLine = regexp.MustCompile(`^(?:yaml: )?line (\d+): (.*)$`)

func syntaxError(file string, err error) *Error {
	msg := err.Error()
	if m := yamlLine.FindStringSubmatch(msg); m != nil {
		n, _ := strconv.Atoi(m[1])
		return &Error{File: file, Line: n, Reason: "syntax error: " + m[2]}
	}
	return &Error{File: file, Reason: "syntax error: " + strings.TrimPrefix(msg, "yaml: ")}
}

func decodeDocument(file string, index int, n *yaml.Node) (*Document, ErrorList) {
	d := &Document{File: file, Index: index, lines: make(map[string]int, 128)}
	d.lines[""] = n.Line
	w := walker{doc: d}
	w.walk(n, reflect.TypeOf(EdgeRoute{}), "", false)
	if n.Kind != yaml.MappingNode {
		return nil, w.errs
	}
	if w.aliased > MaxAliasExpansion {
		for _, e := range w.errs {
			e.Spec = d.Name()
		}
		return nil, w.errs
	}
	if err := n.Decode(&d.EdgeRoute); err != nil {
		var te *yaml.TypeError
		if !errors.As(err, &te) {
			w.errs = append(w.errs, &Error{File: file, Line: n.Line, Reason: err.Error()})
		} else {
			for _, msg := range te.Errors {
				w.errs = append(w.errs, d.typeError(msg))
			}
		}
	}
	for _, e := range w.errs {
		e.Spec = d.Name()
	}
	sortErrors(w.errs)
	return d, w.errs
}

// typeError turns a yaml.v3 "line N: cannot unmarshal ..." message into an
// Error with the path of the field on that line.
func (d *Document) typeError(msg string) *Error {
	e := &Error{File: d.File, Reason: msg}
	if m := yamlLine.FindStringSubmatch(msg); m != nil {
		e.Line, _ = strconv.Atoi(m[1])
		e.Reason = m[2]
		best := ""
		for p, l := range d.lines {
			if l == e.Line && len(p) > len(best) {
				best = p
			}
		}
		e.Path = best
	}
	e.Reason = strings.ReplaceAll(e.Reason, "!!str", "string")
	return e
}

// walker records the line of every field and reports unknown fields and
// wrong node kinds, following the yaml tags of the Go types.
type walker struct {
	doc     *Document
	errs    ErrorList
	aliased int // nodes reached through an alias
}

var unmarshalerType = reflect.TypeOf((*yaml.Unmarshaler)(nil)).Elem()

func (w *walker) fail(n *yaml.Node, path, reason string) {
	w.errs = append(w.errs, &Error{File: w.doc.File, Line: n.Line, Path: path, Reason: reason})
}

func (w *walker) walk(n *yaml.Node, t reflect.Type, path string, viaAlias bool) {
	line := n.Line
	if n.Kind == yaml.AliasNode {
		n, viaAlias = n.Alias, true
	}
	if viaAlias {
		if w.aliased++; w.aliased > MaxAliasExpansion {
			if w.aliased == MaxAliasExpansion+1 {
				w.fail(n, path, fmt.Sprintf("YAML aliases expand to more than %d nodes; write the document out (an alias bomb is refused)", MaxAliasExpansion))
			}
			return
		}
	}
	if path != "" {
		w.doc.lines[path] = line
	}
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if reflect.PointerTo(t).Implements(unmarshalerType) {
		return
	}
	switch t.Kind() {
	case reflect.Struct:
		if n.Kind != yaml.MappingNode {
			w.fail(n, path, "must be an object")
			return
		}
		for i := 0; i+1 < len(n.Content); i += 2 {
			k, v := n.Content[i], n.Content[i+1]
			child := join(path, k.Value)
			f, ok := fieldByTag(t, k.Value)
			if !ok {
				w.fail(k, child, fmt.Sprintf("unknown field %q%s", k.Value, suggest(t, k.Value)))
				continue
			}
			w.walk(v, f.Type, child, viaAlias)
		}
	case reflect.Slice:
		if n.Kind != yaml.SequenceNode {
			if !(n.Kind == yaml.ScalarNode && n.Tag == "!!null") {
				w.fail(n, path, "must be a list")
			}
			return
		}
		for i, item := range n.Content {
			w.walk(item, t.Elem(), path+"["+strconv.Itoa(i)+"]", viaAlias)
		}
	case reflect.Map:
		if n.Kind != yaml.MappingNode {
			if !(n.Kind == yaml.ScalarNode && n.Tag == "!!null") {
				w.fail(n, path, "must be a map")
			}
			return
		}
		for i := 0; i+1 < len(n.Content); i += 2 {
			k, v := n.Content[i], n.Content[i+1]
			child := join(path, k.Value)
			w.doc.lines[child] = k.Line
			if t.Elem().Kind() != reflect.String {
				w.walk(v, t.Elem(), child, viaAlias)
				continue
			}
			if v.Kind != yaml.ScalarNode {
				w.fail(v, child, "must be a string")
			}
		}
	default:
		if n.Kind != yaml.ScalarNode {
			w.fail(n, path, "must be a single value, not a list or object")
		}
	}
}

func join(path, key string) string {
	if path == "" {
		return key
	}
	return path + "." + key
}

// joinIndex is the path of item i of the list at path.
func joinIndex(path string, i int) string { return path + "[" + strconv.Itoa(i) + "]" }

func yamlName(f reflect.StructField) string {
	name, _, _ := strings.Cut(f.Tag.Get("yaml"), ",")
	return name
}

func fieldByTag(t reflect.Type, name string) (reflect.StructField, bool) {
	f, ok := fieldsByTag(t)[name]
	return f, ok
}

// structFields caches, per struct type, its fields by yaml name (type
// information only: the same for every caller).
var structFields sync.Map // reflect.Type → map[string]reflect.StructField

func fieldsByTag(t reflect.Type) map[string]reflect.StructField {
	if m, ok := structFields.Load(t); ok {
		return m.(map[string]reflect.StructField)
	}
	m := make(map[string]reflect.StructField, t.NumField())
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		if n := yamlName(f); n != "" {
			if _, dup := m[n]; !dup {
				m[n] = f
			}
		}
	}
	structFields.Store(t, m)
	return m
}

// suggest names a known field that differs from name only in case, which
// is the usual typo (jwksURI, pathprefix).
func suggest(t reflect.Type, name string) string {
	var known []string
	for i := 0; i < t.NumField(); i++ {
		n := yamlName(t.Field(i))
		if strings.EqualFold(n, name) {
			return fmt.Sprintf(" (did you mean %q?)", n)
		}
		known = append(known, n)
	}
	return fmt.Sprintf(" (known fields: %s)", strings.Join(known, ", "))
}

func sortErrors(l ErrorList) {
	sort.SliceStable(l, func(i, j int) bool {
		if l[i].File != l[j].File {
			return l[i].File < l[j].File
		}
		return l[i].Line < l[j].Line
	})
}

// ReadFiles parses every file named; a directory contributes its *.yaml,
// *.yml and *.json files (not recursively), in name order. It does not
// validate meaning.
func ReadFiles(paths ...string) ([]*Document, error) {
	files, problems := expand(paths)
	var docs []*Document
	for _, f := range files {
		data, err := readFile(f)
		if err != nil {
			problems = append(problems, &Error{File: f, Reason: err.Error()})
			continue
		}
		ds, err := Parse(f, data)
		docs = append(docs, ds...)
		var l ErrorList
		if errors.As(err, &l) {
			problems = append(problems, l...)
		}
	}
	return docs, problems.err()
}

func readFile(name string) ([]byte, error) {
	f, err := os.Open(name)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return io.ReadAll(io.LimitReader(f, MaxDocumentSize+1))
}

func expand(paths []string) ([]string, ErrorList) {
	var files []string
	var problems ErrorList
	for _, p := range paths {
		st, err := os.Stat(p)
		if err != nil {
			problems = append(problems, &Error{File: p, Reason: "cannot read: " + errors.Unwrap(err).Error()})
			continue
		}
		if !st.IsDir() {
			files = append(files, p)
			continue
		}
		entries, err := os.ReadDir(p)
		if err != nil {
			problems = append(problems, &Error{File: p, Reason: err.Error()})
			continue
		}
		n := len(files)
		for _, e := range entries {
			if e.IsDir() || !IsSpecFile(e.Name()) {
				continue
			}
			files = append(files, filepath.Join(p, e.Name()))
		}
		if len(files) == n {
			problems = append(problems, &Error{File: p, Reason: "directory holds no .yaml, .yml or .json files"})
		}
	}
	return files, problems
}

// IsSpecFile reports whether a directory entry named name is a spec file:
// .yaml, .yml or .json (any case), and not a dot-file (editors' swap
// files, Kubernetes' ..data links). It is the one rule for every reader
// of a spec directory.
func IsSpecFile(name string) bool {
	if strings.HasPrefix(name, ".") {
		return false
	}
	switch strings.ToLower(filepath.Ext(name)) {
	case ".yaml", ".yml", ".json":
		return true
	}
	return false
}

// Load reads and validates the named files and directories: every
// structural and semantic problem of every file is returned together, and
// host and name conflicts are checked across all documents.
func Load(paths ...string) ([]*Document, error) { return Policy{}.Load(paths...) }

// Load is the package's Load under policy p.
func (p Policy) Load(paths ...string) ([]*Document, error) {
	docs, err := ReadFiles(paths...)
	var problems ErrorList
	errors.As(err, &problems)
	if verr := p.Validate(docs); verr != nil {
		var l ErrorList
		errors.As(verr, &l)
		problems = append(problems, l...)
	}
	return docs, problems.err()
}

// CanonicalJSON is the canonical JSON form of a spec: defaults are not
// filled in, maps are sorted, durations are Go duration strings. Parsing
// it gives back an equal EdgeRoute.
func (r *EdgeRoute) CanonicalJSON() ([]byte, error) {
	return json.Marshal(r)
}
