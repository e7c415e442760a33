package spec

import (
	"bytes"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"
)

// sameParse fails unless the two parses of one input agree on everything a
// caller can see: the documents (values, file, index, field lines — which
// also answer validation's presence checks) and the errors, and then on
// what validation says about the documents.
func sameParse(t *testing.T, label string, gotDocs []*Document, gotErr error, wantDocs []*Document, wantErr error) {
	t.Helper()
	if errString(gotErr) != errString(wantErr) {
		t.Fatalf("%s: errors differ:\n got: %v\nwant: %v", label, gotErr, wantErr)
	}
	if len(gotDocs) != len(wantDocs) {
		t.Fatalf("%s: %d documents, want %d", label, len(gotDocs), len(wantDocs))
	}
	for i := range gotDocs {
		g, w := gotDocs[i], wantDocs[i]
		if g.File != w.File || g.Index != w.Index {
			t.Fatalf("%s: document %d is %s#%d, want %s#%d", label, i, g.File, g.Index, w.File, w.Index)
		}
		if !reflect.DeepEqual(g.EdgeRoute, w.EdgeRoute) {
			t.Fatalf("%s: document %d differs:\n got: %#v\nwant: %#v", label, i, g.EdgeRoute, w.EdgeRoute)
		}
		if !reflect.DeepEqual(g.lines, w.lines) {
			t.Fatalf("%s: document %d field lines differ:\n got: %v\nwant: %v", label, i, g.lines, w.lines)
		}
	}
	if errString(Validate(gotDocs)) != errString(Validate(wantDocs)) {
		t.Fatalf("%s: validation differs:\n got: %v\nwant: %v", label, Validate(gotDocs), Validate(wantDocs))
	}
}

func errString(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}

// jsonVariants are JSON encodings of the YAML documents in data: the
// canonical form of each parsed document, the same indented (so lines
// differ), and the document converted as written (unknown fields, wrong
// types and all), compact and indented.
func jsonVariants(t *testing.T, data []byte) [][]byte {
	t.Helper()
	var out [][]byte
	docs, _ := parseYAML("x.yaml", data)
	for _, d := range docs {
		j, err := d.EdgeRoute.CanonicalJSON()
		if err != nil {
			t.Fatal(err)
		}
		var ind bytes.Buffer
		if err := json.Indent(&ind, j, "", "  "); err != nil {
			t.Fatal(err)
		}
		out = append(out, j, ind.Bytes(), bytes.ReplaceAll(ind.Bytes(), []byte("\n"), []byte("\r\n")))
	}
	dec := yaml.NewDecoder(bytes.NewReader(data))
	for {
		var v any
		if err := dec.Decode(&v); err != nil {
			break
		}
		j, err := json.Marshal(v)
		if err != nil {
			continue
		}
		ind, _ := json.MarshalIndent(v, "", "    ")
		out = append(out, j, ind)
	}
	return out
}

func fixtures(t testing.TB) []string {
	files, err := filepath.Glob("testdata/*/*")
	if err != nil || len(files) == 0 {
		t.Fatalf("no fixtures: %v", err)
	}
	return files
}

// TestJSONPathMatchesYAMLPath: for every fixture, and JSON forms of every
// fixture (valid and invalid), Parse (which takes the JSON fast path when
// it can) gives exactly what the YAML path gives for the same bytes.
func TestJSONPathMatchesYAMLPath(t *testing.T) {
	for _, file := range fixtures(t) {
		data, err := os.ReadFile(file)
		if err != nil {
			t.Fatal(err)
		}
		inputs := append([][]byte{data}, jsonVariants(t, data)...)
		for i, in := range inputs {
			got, gotErr := Parse(file, in)
			want, wantErr := parseYAML(file, in)
			sameParse(t, file+" variant "+string(rune('0'+i)), got, gotErr, want, wantErr)
		}
	}
}

// TestJSONFastPathTaken: canonical JSON, compact or indented, of every
// document the fixtures hold is decoded by the fast path (not left to
// YAML), so the broker store's specs never pay for yaml.v3.
func TestJSONFastPathTaken(t *testing.T) {
	n := 0
	for _, file := range fixtures(t) {
		data, err := os.ReadFile(file)
		if err != nil {
			t.Fatal(err)
		}
		docs, _ := parseYAML(file, data)
		for _, d := range docs {
			j, err := d.EdgeRoute.CanonicalJSON()
			if err != nil {
				t.Fatal(err)
			}
			ind, _ := json.MarshalIndent(json.RawMessage(j), "", "\t")
			ind = bytes.ReplaceAll(ind, []byte("\t"), []byte("  "))
			for _, in := range [][]byte{j, ind} {
				if _, ok := parseJSON(file, in); !ok {
					t.Errorf("%s: the fast path refused canonical JSON of %s:\n%s", file, d.Name(), in)
				}
				n++
			}
		}
	}
	if n == 0 {
		t.Fatal("no documents")
	}
}

// TestJSONFastPathRefuses: inputs the YAML path reads differently or
// reports on are left to it; Parse then gives the YAML path's answer.
func TestJSONFastPathRefuses(t *testing.T) {
	for _, in := range []string{
		`{"apiVersion": "gatehouse/v1", "APIVersion": "x"}`,                     // a case-folded field name (encoding/json would take it)
		`{"kind": "EdgeRoute", "kind": "EdgeRoute"}`,                            // duplicate key
		`{"metadata": {"labels": {"a": "1", "a": "2"}}}`,                        // duplicate map key
		`{"metadata": {"name": 5}}`,                                             // a number for a string: YAML takes it as "5"
		`{"metadata": null}`,                                                    // null object: YAML reports it
		`{"spec": {"routes": [{"timeout": 0}]}}`,                                // YAML reads 0 as the duration "0"
		`{"spec": {"routes": [{"rateLimits": [{"burst": 1e2}]}]}}`,              // YAML reads 1e2 as 100
		`{"spec": {"routes": [{"rateLimits": [{"burst": -0}]}]}}`,               // and -0 as 0
		`{"spec": {"identity": {"jwt": [{"jwks": {"keys": []}}]}}}`,             // inline object: YAML re-encodes it
		`{"metadata": {"team": "caf` + "\xc3\xa9" + `"}}`,                       // raw non-ASCII
		`{"metadata": {"team": "\ud83d\ude00"}}`,                                // escaped surrogates: yaml.v3 rejects them
		"\t{\"kind\": \"EdgeRoute\"}",                                           // a leading tab: YAML rejects it
		`{"kind": "Edge\/Route"}`,                                               // yaml.v3 knows no \/ escape
		"{\"kind\"\n: \"EdgeRoute\"}",                                           // colon on a later line
		`{"kind": "EdgeRoute"} {"kind": "EdgeRoute"}`,                           // two values
		`{"kind": "EdgeRoute",}`,                                                // not JSON
		`{"spec": {"hosts": "a.example.com"}}`,                                  // a string for a list
		`{"metadata": {"labels": {"tier": ["gold"]}}}`,                          // a list for a map value
		`{"spec": {"upstreams": [{"connectTimeout": "soon"}]}}`,                 // a bad duration
		`{"spec": {"routes": [{"match": {"headers": [{"present": "true"}]}}]}}`, // a string for a bool
	} {
		if _, ok := parseJSON("x.json", []byte(in)); ok {
			t.Errorf("fast path took %s", in)
		}
		got, gotErr := Parse("x.json", []byte(in))
		want, wantErr := parseYAML("x.json", []byte(in))
		sameParse(t, in, got, gotErr, want, wantErr)
	}
}

// TestJSONFastPathEdges: values the fast path takes and must read as
// YAML does.
func TestJSONFastPathEdges(t *testing.T) {
	for _, in := range []string{
		`{}`,
		"\n\n  {\"kind\": \"EdgeRoute\",\n \"metadata\": {\"name\": \"a\",\r\n\"labels\": {}}}\n\n",
		"{\"kind\": \"Edge/Route\\n\\t\\\"\\\\\\b\\f\\r\\u00e9\\u0041\"}",
		`{"spec": {"hosts": [], "upstreams": null, "routes": [{"name": "r", "rateLimits": [{"burst": 0, "by": null, "shadow": false}, {"burst": 4294967295}], "accessLog": {"sampleRate": 1}}, {"accessLog": {"sampleRate": -0}}, {"accessLog": {"sampleRate": 0.25e1}}]}}`,
		`{"spec": {"routes": [{"match": {"headers": [{"present": false}]}, "auth": {"rules": [{"allow": true, "claims": {}}]}}]}}`,
		`{"spec": {"identity": {"jwt": [{"jwks": "{\"keys\":[]}", "clockSkew": "1m30s"}], "apiKeys": [], "mtls": [{"principals": []}]}, "tls": {"certificate": "c"}}}`,
	} {
		if _, ok := parseJSON("x.json", []byte(in)); !ok {
			t.Errorf("fast path refused %s", in)
		}
		got, gotErr := Parse("x.json", []byte(in))
		want, wantErr := parseYAML("x.json", []byte(in))
		sameParse(t, in, got, gotErr, want, wantErr)
	}
}

// FuzzJSONMatchesYAML: whenever the fast path takes an input, the YAML
// path reads the same bytes to the same document without a problem.
func FuzzJSONMatchesYAML(f *testing.F) {
	for _, file := range fixtures(f) {
		data, err := os.ReadFile(file)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(data)
		docs, _ := parseYAML(file, data)
		for _, d := range docs {
			j, _ := d.EdgeRoute.CanonicalJSON()
			f.Add(j)
			var ind bytes.Buffer
			_ = json.Indent(&ind, j, "", " ")
			f.Add(ind.Bytes())
		}
	}
	f.Add([]byte(`{"spec": {"routes": [{"rateLimits": [{"burst": 7}], "accessLog": {"sampleRate": 5e-1}}]}}`))
	f.Add([]byte("{\"metadata\": {\"team\": \"a\\u0000\\u007f\\u0085\\ufeff\"}}"))
	f.Fuzz(func(t *testing.T, data []byte) {
		d, ok := parseJSON("fuzz.json", data)
		if !ok {
			// Parse is then parseYAML; nothing to compare.
			return
		}
		want, wantErr := parseYAML("fuzz.json", data)
		if wantErr != nil {
			var l ErrorList
			if !errors.As(wantErr, &l) {
				t.Fatalf("YAML path error is not an ErrorList: %v", wantErr)
			}
		}
		sameParse(t, strings.ToValidUTF8(string(data), "?"), []*Document{d}, nil, want, wantErr)
	})
}
