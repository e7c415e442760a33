package accesslog

import (
	"strings"
	"testing"
	"time"
)

func TestParseKeyRing(t *testing.T) {
	const secret = "0123456789abcdef0123456789abcdef-secret"
	k, err := ParseKeyRing([]byte("# ring\n\nold " + secret + "\n  new " + secret + "-2  \n"))
	if err != nil || k.Active() != "new" || !k.Has("old") || k.Has("other") {
		t.Fatalf("ring: %+v %v", k, err)
	}
	for in, want := range map[string]string{
		"":                                "no keys",
		"k1\n":                            "line 1: want",
		"# c\nk1 short\n":                 "line 2: key \"k1\": the secret is shorter than 32 bytes",
		"bad/id " + secret:                "key id \"bad/id\"",
		"k1 " + secret + "\nk1 " + secret: "line 2: key id \"k1\" appears twice",
	} {
		_, err := ParseKeyRing([]byte(in))
		if err == nil || !strings.Contains(err.Error(), want) || strings.Contains(err.Error(), "0123456789abcdef") || strings.Contains(err.Error(), "short\"") {
			t.Errorf("ParseKeyRing(%q) = %v, want an error with %q and no secret", in, err, want)
		}
	}
	var nilRing *KeyRing
	if nilRing.Active() != "" || nilRing.Has("k1") {
		t.Fatal("nil ring")
	}
}

// TestBatchHashKeyed: the keyed hash depends on the key, the key id and
// PruneTo; the unkeyed one with PruneTo 0 is the original ChainHash.
func TestBatchHashKeyed(t *testing.T) {
	k, err := ParseKeyRing([]byte("a 0123456789abcdef0123456789abcdef-a\nb 0123456789abcdef0123456789abcdef-b\n"))
	if err != nil {
		t.Fatal(err)
	}
	recs := []Record{{Time: time.UnixMilli(1).UTC(), RequestID: "r1"}}
	h := BatchHeader{Seq: 1}
	plain, _ := BatchHash(nil, &h, recs)
	if old, _ := ChainHash("", 1, recs); plain != old {
		t.Fatal("unkeyed BatchHash differs from ChainHash")
	}
	h.KeyID = "a"
	ha, _ := BatchHash(k, &h, recs)
	h.KeyID = "b"
	hb, _ := BatchHash(k, &h, recs)
	h.PruneTo = 1
	hp, _ := BatchHash(k, &h, recs)
	if ha == plain || ha == hb || hb == hp {
		t.Fatal("keyed hashes collide")
	}
	h.KeyID = "c"
	if _, err := BatchHash(k, &h, recs); err == nil {
		t.Fatal("unknown key id hashed")
	}
	if _, err := BatchHash(nil, &h, recs); err == nil {
		t.Fatal("keyed batch hashed without a ring")
	}
}
