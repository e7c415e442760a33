package accesslog

import (
	"os"
	"path/filepath"
	"testing"
	"time"
)

func testRecs(n int, tag string) []Record {
	out := make([]Record, n)
	for i := range out {
		out[i] = Record{Time: time.UnixMilli(int64(1767225600000 + i)).UTC(), RequestID: tag + "-" + string(rune('a'+i%26)), Route: "s/r", Status: 200}
	}
	return out
}

func TestSpoolRecoversFromTornTailAndRotates(t *testing.T) {
	dir := t.TempDir()
	sp, err := openSpool(dir, 1<<30, 4096)
	if err != nil {
		t.Fatal(err)
	}
	var buf []byte
	for i := 0; i < 20; i++ {
		if _, buf, err = sp.append(buf, testRecs(20, "b")); err != nil {
			t.Fatal(err)
		}
	}
	segs, _ := filepath.Glob(filepath.Join(dir, "*.seg"))
	if len(segs) < 2 {
		t.Fatalf("no rotation: %d segments", len(segs))
	}
	sp.close()
	// A crash in the middle of a write leaves half a frame at the end.
	last := segs[len(segs)-1]
	f, err := os.OpenFile(last, os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		t.Fatal(err)
	}
	f.Write([]byte{200, 0, 0, 0, 1, 2, 3})
	f.Close()
	sp, err = openSpool(dir, 1<<30, 4096)
	if err != nil {
		t.Fatal(err)
	}
	if sp.nextSeq() != 21 {
		t.Fatalf("next seq %d after recovery, want 21", sp.nextSeq())
	}
	var seen []uint64
	if err := sp.read(5, 100, func(seq uint64, recs []Record) error {
		if len(recs) != 20 {
			t.Fatalf("frame %d has %d records", seq, len(recs))
		}
		seen = append(seen, seq)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if len(seen) != 16 || seen[0] != 5 || seen[15] != 20 {
		t.Fatalf("read frames %v", seen)
	}
	seq, _, err := sp.append(nil, testRecs(1, "c"))
	if err != nil || seq != 21 {
		t.Fatalf("append after recovery: %d %v", seq, err)
	}
	before := sp.size()
	if err := sp.release(21); err != nil {
		t.Fatal(err)
	}
	if sp.size() >= before {
		t.Fatalf("release kept %d bytes (was %d)", sp.size(), before)
	}
	segs, _ = filepath.Glob(filepath.Join(dir, "*.seg"))
	if len(segs) != 1 {
		t.Fatalf("%d segments after release, want 1", len(segs))
	}
	sp.close()
	if _, err := openSpool(dir, 10, 4096); err != nil {
		t.Fatal(err)
	}
	full, _ := openSpool(t.TempDir(), 100, 4096)
	if _, _, err := full.append(nil, testRecs(50, "x")); err != errSpoolFull {
		t.Fatalf("over the disk bound: %v", err)
	}
}

func FuzzDecodeBatch(f *testing.F) {
	f.Add(encodeBatch(nil, 7, testRecs(3, "f")))
	f.Add([]byte{1, 0})
	f.Fuzz(func(t *testing.T, b []byte) {
		seq, recs, err := decodeBatch(b)
		if err != nil {
			return
		}
		again := encodeBatch(nil, seq, recs)
		seq2, recs2, err := decodeBatch(again)
		if err != nil || seq2 != seq || len(recs2) != len(recs) {
			t.Fatalf("re-encoded batch does not decode the same")
		}
	})
}
