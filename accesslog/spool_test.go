package accesslog

import (
	"encoding/binary"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
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
	again, err := openSpool(dir, 10, 4096)
	if err != nil {
		t.Fatal(err)
	}
	again.close() // its preparer writes no more files into dir
	full, _ := openSpool(t.TempDir(), 100, 4096)
	defer full.close()
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

// testWait waits up to 20s for cond.
func testWait(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("no %s after 20s", what)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// waitFree waits until the spool's preparer has n free segments ready.
func waitFree(t *testing.T, sp *spool, n int) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		sp.mu.Lock()
		got, err := len(sp.free), sp.prepErr
		sp.mu.Unlock()
		if err != nil {
			t.Fatalf("preparer: %v", err)
		}
		if got >= n {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d free segments after 20s, want %d", got, n)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

func readAll(t *testing.T, sp *spool, from uint64) []uint64 {
	t.Helper()
	var seqs []uint64
	if err := sp.read(from, 1<<62, func(seq uint64, recs []Record) error {
		if len(recs) == 0 || recs[0].RequestID == "" {
			t.Fatalf("frame %d decoded empty", seq)
		}
		seqs = append(seqs, seq)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	return seqs
}

func seqRange(from, to uint64) []uint64 {
	var out []uint64
	for s := from; s <= to; s++ {
		out = append(out, s)
	}
	return out
}

// TestSpoolWritesRecycledSegmentsInPlace: a new spool's segments grow;
// once stored they are recycled (padded with zeros to the segment size
// when shorter) and frames go into them in place: the file never grows
// (fdatasync needs no metadata).
func TestSpoolWritesRecycledSegmentsInPlace(t *testing.T) {
	const segBytes = 64 << 10
	// Without fresh prepared segments: the new spool's segments grow
	// until stored ones come back.
	sp, err := openSpoolPrepared(t.TempDir(), 1<<30, segBytes, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer sp.close()
	var buf []byte
	var seq uint64
	// Three growing segments, all but the newest stored.
	for {
		if seq, buf, err = sp.append(buf, testRecs(40, "g")); err != nil {
			t.Fatal(err)
		}
		sp.mu.Lock()
		n, grows := len(sp.segs), sp.segs[len(sp.segs)-1].filled < segBytes
		sp.mu.Unlock()
		if !grows {
			t.Fatalf("segment %d of a new spool does not grow", n)
		}
		if n == 3 {
			break
		}
	}
	if err := sp.release(seq); err != nil {
		t.Fatal(err)
	}
	waitFree(t, sp, 1)
	sp.mu.Lock()
	fs := sp.free[0]
	sp.mu.Unlock()
	if st, err := os.Stat(fs.path); err != nil || st.Size() != segBytes || !fs.recycled {
		t.Fatalf("free segment %+v: %v %v, want a recycled one padded to %d bytes", fs, st, err, segBytes)
	}
	// Fill the growing segment: the next frame goes to the recycled one.
	var cur segment
	for i := 0; ; i++ {
		if seq, buf, err = sp.append(buf, testRecs(40, "p")); err != nil {
			t.Fatal(err)
		}
		sp.mu.Lock()
		cur = sp.segs[len(sp.segs)-1]
		sp.mu.Unlock()
		if cur.first == seq {
			break
		}
		if i > 100 {
			t.Fatal("no rotation")
		}
	}
	if cur.path != strings.TrimSuffix(fs.path, ".free")+".seg" || cur.salt != fs.salt {
		t.Fatalf("frame %d went to %s, not to the recycled %s", seq, cur.path, fs.path)
	}
	for i := 0; i < 5; i++ {
		if _, buf, err = sp.append(buf, testRecs(40, "p")); err != nil {
			t.Fatal(err)
		}
		st, err := os.Stat(cur.path)
		if err != nil {
			t.Fatal(err)
		}
		if st.Size() != segBytes {
			t.Fatalf("active recycled segment is %d bytes, want %d: it grew", st.Size(), segBytes)
		}
	}
}

// zeroSegment writes a free segment as a recycled one looks after its
// first use: header, then zeros to segBytes.
func zeroSegment(t *testing.T, sp *spool, no uint64, segBytes int64) freeSeg {
	t.Helper()
	fs := freeSeg{path: filepath.Join(sp.dir, fmt.Sprintf("w%020d.free", no)), salt: 42 + no, size: segBytes}
	b := make([]byte, segBytes)
	copy(b, segHeaderBytes(fs.salt))
	if err := os.WriteFile(fs.path, b, 0o600); err != nil {
		t.Fatal(err)
	}
	return fs
}

// TestSpoolTornFrameThenZerosOrGarbage: a kill -9 in the middle of a
// write leaves part of a frame in a preallocated segment, followed by the
// zero tail or by anything else (the segment's previous life); or the
// valid frames are followed directly by a well-formed frame with the next
// seq that does not belong to this segment's life (its CRC under another
// salt, or without one, as an attacker could put inside a record); the
// spool recovers exactly the valid frames,
// continues in a new segment, and still reads the same after a second
// restart (the torn segment is no longer the newest).
func TestSpoolTornFrameThenZerosOrGarbage(t *testing.T) {
	for _, tail := range []string{"zeros", "garbage", "frame of another salt", "unsalted frame", "later frame after a torn one"} {
		t.Run(tail, func(t *testing.T) {
			const segBytes = 64 << 10
			dir := t.TempDir()
			// No fresh segments from the preparer: the test puts its own.
			sp, err := openSpoolPrepared(dir, 1<<30, segBytes, 0)
			if err != nil {
				t.Fatal(err)
			}
			// A segment of the segment size, as in steady state.
			fs := zeroSegment(t, sp, 1, segBytes)
			sp.mu.Lock()
			sp.fileNo, sp.free = 1, []freeSeg{fs}
			sp.mu.Unlock()
			var buf []byte
			for i := 0; i < 5; i++ {
				if _, buf, err = sp.append(buf, testRecs(8, "t")); err != nil {
					t.Fatal(err)
				}
			}
			sp.mu.Lock()
			seg := sp.segs[0]
			sp.mu.Unlock()
			if seg.path != strings.TrimSuffix(fs.path, ".free")+".seg" || seg.last != 5 {
				t.Fatalf("frames went to %+v, not the prepared segment", seg)
			}
			sp.close()
			end := seg.hdr + seg.size
			// The torn frame: a header for 900 bytes and 100 of them.
			torn := make([]byte, 8+100)
			binary.LittleEndian.PutUint32(torn, 900)
			binary.LittleEndian.PutUint32(torn[4:], 0xdeadbeef)
			for i := range torn[8:] {
				torn[8+i] = byte(i)
			}
			after := make([]byte, 4096)
			switch tail {
			case "garbage":
				for i := range after {
					after[i] = byte(i*7 + 3)
				}
			case "later frame after a torn one":
				// Power lost while two flushes were in flight: the later
				// one's frame reached the disk, the earlier one's did not
				// (whole); neither was reported durable.
				payload := encodeBatch(nil, 7, testRecs(3, "later"))
				after = binary.LittleEndian.AppendUint32(nil, uint32(len(payload)))
				after = binary.LittleEndian.AppendUint32(after, frameCRC(seg.salt, true, payload))
				after = append(after, payload...)
			case "frame of another salt", "unsalted frame":
				payload := encodeBatch(nil, 6, testRecs(3, "evil"))
				after = binary.LittleEndian.AppendUint32(nil, uint32(len(payload)))
				after = binary.LittleEndian.AppendUint32(after, frameCRC(seg.salt+1, tail == "frame of another salt", payload))
				after = append(after, payload...)
			}
			f, err := os.OpenFile(seg.path, os.O_WRONLY, 0)
			if err != nil {
				t.Fatal(err)
			}
			at := end
			if tail == "zeros" || tail == "garbage" || tail == "later frame after a torn one" {
				if _, err := f.WriteAt(torn, end); err != nil {
					t.Fatal(err)
				}
				// The rest of the torn frame's 900 bytes never came;
				// what follows is the tail under test.
				at = end + 8 + 900
			}
			// A forged frame follows the valid ones directly.
			if _, err := f.WriteAt(after, at); err != nil {
				t.Fatal(err)
			}
			f.Close()
			for restart := 1; restart <= 2; restart++ {
				sp, err = openSpool(dir, 1<<30, segBytes)
				if err != nil {
					t.Fatal(err)
				}
				want := uint64(5 + restart)
				if sp.nextSeq() != want {
					t.Fatalf("restart %d: next seq %d, want %d", restart, sp.nextSeq(), want)
				}
				if got := readAll(t, sp, 1); !slices.Equal(got, seqRange(1, want-1)) {
					t.Fatalf("restart %d: read frames %v, want 1 to %d", restart, got, want-1)
				}
				// Writing goes on in a new segment.
				seq, _, err := sp.append(nil, testRecs(2, "n"))
				if err != nil || seq != want {
					t.Fatalf("restart %d: append: %d %v", restart, seq, err)
				}
				sp.close()
			}
			if st, err := os.Stat(seg.path); err != nil || st.Size() != segBytes {
				t.Fatalf("the torn segment was truncated or removed: %v %v", st, err)
			}
		})
	}
}

// TestSpoolRecyclesSegmentsAcrossRestarts: stored segments become free
// segments (a new salt, so their old frames are never read again) and are
// taken again, also after a restart; a kill in the middle of a recycled
// segment replays exactly the frames not yet stored, once, in order.
func TestSpoolRecyclesSegmentsAcrossRestarts(t *testing.T) {
	const segBytes = 32 << 10
	dir := t.TempDir()
	sp, err := openSpool(dir, 1<<30, segBytes)
	if err != nil {
		t.Fatal(err)
	}
	var buf []byte
	var seq uint64
	// Fill a few preallocated segments, releasing as a store would.
	for sp.nextSeq() < 120 {
		if seq, buf, err = sp.append(buf, testRecs(60, "a")); err != nil {
			t.Fatal(err)
		}
		if seq%10 == 0 {
			if err := sp.release(seq - 5); err != nil {
				t.Fatal(err)
			}
		}
	}
	// Everything but the newest frame is stored.
	if err := sp.release(seq); err != nil {
		t.Fatal(err)
	}
	// Wait for a segment recycled from stored frames among the free ones.
	var rec freeSeg
	testWait(t, "recycled free segment", func() bool {
		sp.mu.Lock()
		defer sp.mu.Unlock()
		for _, fs := range sp.free {
			if fs.recycled {
				rec = fs
				return true
			}
		}
		return false
	})
	sp.mu.Lock()
	segs := len(sp.segs)
	sp.mu.Unlock()
	if segs > 3 {
		t.Fatalf("%d segments in use after releasing all but the last few frames", segs)
	}
	// Its old frames are still in it, behind the new header.
	old, err := os.ReadFile(rec.path)
	if err != nil {
		t.Fatal(err)
	}
	if len(old) != segBytes || !slices.ContainsFunc(old[segBytes/2:], func(c byte) bool { return c != 0 }) {
		t.Fatalf("free segment %s (%d bytes) holds no old frames: not recycled", rec.path, len(old))
	}
	names := func() []string {
		m, _ := filepath.Glob(filepath.Join(dir, "w*"))
		for i := range m {
			m[i] = strings.TrimSuffix(strings.TrimSuffix(filepath.Base(m[i]), ".seg"), ".free")
		}
		slices.Sort(m)
		return m
	}
	before := names()
	sp.close()

	// Restart: the free segments are found and taken again; once the
	// recycled one is active and filled up to its middle, the process
	// dies.
	sp, err = openSpool(dir, 1<<30, segBytes)
	if err != nil {
		t.Fatal(err)
	}
	released := seq // the last release above
	want := strings.TrimSuffix(rec.path, ".free") + ".seg"
	var cur segment
	for i := 0; ; i++ {
		if _, buf, err = sp.append(buf, testRecs(60, "b")); err != nil {
			t.Fatal(err)
		}
		sp.mu.Lock()
		cur = sp.segs[len(sp.segs)-1]
		sp.mu.Unlock()
		if cur.path == want && cur.size > 3*frameHeader {
			break
		}
		if i > 100 {
			t.Fatalf("the recycled segment %s was never taken after the restart", want)
		}
	}
	if !cur.recycled || cur.hdr+cur.size > segBytes/2 {
		t.Fatalf("recycled segment %+v, want it filled up to its middle", cur)
	}
	last := sp.nextSeq() - 1
	sp.close() // a kill: nothing more is written
	got := names()
	for _, n := range before {
		if !slices.Contains(got, n) {
			t.Fatalf("segment files %v after the restart, want the files %v kept and reused", got, before)
		}
	}

	sp, err = openSpool(dir, 1<<30, segBytes)
	if err != nil {
		t.Fatal(err)
	}
	defer sp.close()
	if sp.nextSeq() != last+1 {
		t.Fatalf("next seq %d after the kill, want %d", sp.nextSeq(), last+1)
	}
	if got := readAll(t, sp, released); !slices.Equal(got, seqRange(released, last)) {
		t.Fatalf("replay after the kill read %v, want %d to %d once each", got, released, last)
	}
}

// TestSpoolMissingFramesStopTheStart: frames lost between two segments
// (a segment deleted or corrupt in the middle) are reported at start,
// unless they are stored already.
func TestSpoolMissingFramesStopTheStart(t *testing.T) {
	dir := t.TempDir()
	sp, err := openSpool(dir, 1<<30, 4096)
	if err != nil {
		t.Fatal(err)
	}
	var buf []byte
	for i := 0; i < 30; i++ {
		if _, buf, err = sp.append(buf, testRecs(20, "m")); err != nil {
			t.Fatal(err)
		}
	}
	sp.mu.Lock()
	mid := sp.segs[1]
	sp.mu.Unlock()
	sp.close()
	if err := os.Remove(mid.path); err != nil {
		t.Fatal(err)
	}
	sp, err = openSpool(dir, 1<<30, 4096)
	if err != nil {
		t.Fatal(err)
	}
	defer sp.close()
	err = sp.missing(1)
	if err == nil || !strings.Contains(err.Error(), fmt.Sprintf("frames %d to %d are missing", mid.first, mid.last)) {
		t.Fatalf("missing segment reported as %v", err)
	}
	if err := sp.missing(mid.last + 1); err != nil {
		t.Fatalf("frames already stored reported missing: %v", err)
	}
}

// TestSpoolRotatesWhileAnFsyncRuns: sync fsyncs outside the spool's lock,
// so frames are written, and the segment rotated, while it runs; the
// segment it is fsyncing is closed only after it returns (not under it),
// and every frame reads back after a restart.
func TestSpoolRotatesWhileAnFsyncRuns(t *testing.T) {
	dir := t.TempDir()
	const segBytes = 16 << 10
	sp, err := openSpool(dir, 1<<30, segBytes)
	if err != nil {
		t.Fatal(err)
	}
	entered, release := make(chan struct{}), make(chan struct{})
	var calls atomic.Int32
	sp.fsync = func(f *os.File) error {
		if calls.Add(1) == 1 {
			close(entered)
			<-release
		}
		return fdatasync(f)
	}
	var buf []byte
	if _, buf, err = sp.write(buf, testRecs(20, "a")); err != nil {
		t.Fatal(err)
	}
	synced := make(chan error, 1)
	go func() { _, err := sp.sync(); synced <- err }()
	<-entered
	// Frames go on while the fsync runs, into a new segment and beyond.
	wrote := make(chan error, 1)
	go func() {
		var err error
		for i := 0; i < 60 && err == nil; i++ {
			_, buf, err = sp.write(buf, testRecs(20, "b"))
		}
		wrote <- err
	}()
	select {
	case err := <-wrote:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(10 * time.Second):
		close(release)
		t.Fatal("frames were not written while an fsync ran")
	}
	sp.mu.Lock()
	nsegs, nretired := len(sp.segs), len(sp.retired)
	sp.mu.Unlock()
	if nsegs < 3 || nretired < 2 {
		t.Fatalf("%d segments, %d waiting to be closed: no rotation during the fsync", nsegs, nretired)
	}
	close(release)
	if err := <-synced; err != nil {
		t.Fatalf("the fsync of a segment rotated meanwhile: %v", err)
	}
	sp.mu.Lock()
	nretired = len(sp.retired)
	sp.mu.Unlock()
	if nretired != 0 {
		t.Fatalf("%d rotated segments still open after the fsync", nretired)
	}
	if _, err := sp.sync(); err != nil {
		t.Fatal(err)
	}
	if err := sp.close(); err != nil {
		t.Fatal(err)
	}
	sp, err = openSpool(dir, 1<<30, segBytes)
	if err != nil {
		t.Fatal(err)
	}
	defer sp.close()
	if got := readAll(t, sp, 1); !slices.Equal(got, seqRange(1, 61)) {
		t.Fatalf("after a restart read frames %v, want 1 to 61", got)
	}
}
