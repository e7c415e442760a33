package specio_test

import (
	"strings"
	"testing"

	"github.com/gatehouse-edge/gatehouse/broker/specio"
	"github.com/gatehouse-edge/gatehouse/broker/store"
)

const base = `{"apiVersion":"gatehouse/v1","kind":"EdgeRoute","metadata":{"name":"pets","team":"t"},
"spec":{"hosts":["pets.example.com"],"upstreams":[{"name":"api","endpoints":["10.0.0.1:80"]}],
"identity":{"apiKeys":[{"name":"partners","header":"x-api-key","keys":[{"id":"declared","sha256":"` + declared + `"}]}]},
"routes":[{"name":"r","match":{"pathPrefix":"/"},"upstream":"api"}]}}`

const declared = "1111111111111111111111111111111111111111111111111111111111111111"

func hash(c byte) string { return strings.Repeat(string(c), 64) }

func bound(id string, c byte, kind store.OpKind, state store.OpState) store.Binding {
	return store.Binding{ID: id, KeyID: id, Provider: "partners", SHA256: hash(c), Labels: map[string]string{"plan": "gold"},
		Op: store.Operation{Kind: kind, State: state}}
}

func TestMergeAddsActiveKeysOnly(t *testing.T) {
	out, err := (specio.Reader{}).Merge("pets", []byte(base), []store.Binding{
		bound("b2", 'b', store.OpBind, store.StateSucceeded),
		bound("b1", 'a', store.OpBind, store.StateInProgress),
		bound("gone", 'c', store.OpUnbind, store.StateInProgress),
		bound("failed", 'd', store.OpBind, store.StateFailed),
	})
	if err != nil {
		t.Fatal(err)
	}
	s := string(out)
	for _, want := range []string{`"id":"declared"`, `"id":"b1","sha256":"` + hash('a'), `"id":"b2","sha256":"` + hash('b'), `"plan":"gold"`} {
		if !strings.Contains(s, want) {
			t.Errorf("merged spec lacks %s:\n%s", want, s)
		}
	}
	for _, not := range []string{hash('c'), hash('d')} {
		if strings.Contains(s, not) {
			t.Errorf("merged spec has an inactive key %s", not)
		}
	}
	if strings.Index(s, `"id":"b1"`) > strings.Index(s, `"id":"b2"`) {
		t.Error("binding keys are not in a stable (id) order")
	}
}

func TestMergeRejectsClashes(t *testing.T) {
	clash := bound("declared", 'e', store.OpBind, store.StateSucceeded)
	if _, err := (specio.Reader{}).Merge("pets", []byte(base), []store.Binding{clash}); err == nil || !strings.Contains(err.Error(), `duplicate key id "declared"`) {
		t.Fatalf("a binding key id equal to a declared one: err = %v", err)
	}
	other := bound("x", 'e', store.OpBind, store.StateSucceeded)
	other.Provider = "nope"
	if _, err := (specio.Reader{}).Merge("pets", []byte(base), []store.Binding{other}); err == nil || !strings.Contains(err.Error(), `no apiKeys provider "nope"`) {
		t.Fatalf("a binding for an unknown provider: err = %v", err)
	}
}

func TestParseReportsEveryProblem(t *testing.T) {
	_, err := (specio.Reader{}).Parse("parameters", []byte(`{"apiVersion":"gatehouse/v1","kind":"EdgeRoute","metadata":{"name":"X"},"spec":{"hosts":[],"upstreams":[],"routes":[]}}`))
	l := specio.Problems(err)
	if len(l) < 2 {
		t.Fatalf("problems = %v", err)
	}
	paths := map[string]bool{}
	for _, e := range l {
		paths[e.Path] = true
	}
	for _, p := range []string{"metadata.name", "spec.hosts"} {
		if !paths[p] {
			t.Errorf("no problem at %s: %v", p, err)
		}
	}
}

func TestHashDistinguishesBoundaries(t *testing.T) {
	if specio.Hash([]byte("ab"), []byte("c")) == specio.Hash([]byte("a"), []byte("bc")) {
		t.Fatal("Hash is ambiguous across part boundaries")
	}
}
