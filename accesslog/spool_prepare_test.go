package accesslog

import (
	"bytes"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"
)

// spoolFiles lists the segment files in dir by base name.
func spoolFiles(t *testing.T, dir string) []string {
	t.Helper()
	m, err := filepath.Glob(filepath.Join(dir, "w*"))
	if err != nil {
		t.Fatal(err)
	}
	for i := range m {
		m[i] = filepath.Base(m[i])
	}
	slices.Sort(m)
	return m
}

// checkFresh checks that fs is a fresh prepared segment: the segment
// size, a valid header, zeros behind it.
func checkFresh(t *testing.T, fs freeSeg, segBytes int64) {
	t.Helper()
	b, err := os.ReadFile(fs.path)
	if err != nil {
		t.Fatal(err)
	}
	if int64(len(b)) != segBytes || fs.recycled || fs.size != segBytes {
		t.Fatalf("prepared segment %+v is %d bytes, want a fresh one of %d", fs, len(b), segBytes)
	}
	if !bytes.Equal(b[:segHeader], segHeaderBytes(fs.salt)) || bytes.ContainsFunc(b[segHeader:], func(r rune) bool { return r != 0 }) {
		t.Fatalf("prepared segment %s: not a header and zeros", fs.path)
	}
}

// TestSpoolPreparesFreshSegmentsAhead: a new spool, whose stored segments
// never come back here (nothing is released), gets prepared segments from
// its preparer, so that once one is ready every flush goes into a file
// that does not grow (sync reports no growth), also across rotations;
// the files stay within the documented footprint.
func TestSpoolPreparesFreshSegmentsAhead(t *testing.T) {
	const segBytes = 64 << 10
	dir := t.TempDir()
	sp, err := openSpool(dir, 1<<30, segBytes)
	if err != nil {
		t.Fatal(err)
	}
	defer sp.close()
	// Ready at open, before any frame: the first segment does not grow
	// either.
	waitFree(t, sp, preparedSegments)
	sp.mu.Lock()
	free := slices.Clone(sp.free)
	sp.mu.Unlock()
	for _, fs := range free {
		checkFresh(t, fs, segBytes)
	}
	var buf []byte
	rotations := 0
	for i := 0; rotations < 6; i++ {
		// The preparer keeps ahead of the flushes (here it is given the
		// time; under load it has a segment's worth of flushes).
		waitFree(t, sp, 1)
		var seq uint64
		if seq, buf, err = sp.write(buf, testRecs(40, "p")); err != nil {
			t.Fatal(err)
		}
		grew, err := sp.sync()
		if err != nil {
			t.Fatal(err)
		}
		sp.mu.Lock()
		cur := sp.segs[len(sp.segs)-1]
		sp.mu.Unlock()
		if grew {
			t.Fatalf("flush %d (frame %d in %s) grew its segment although a prepared one was ready", i, seq, cur.path)
		}
		if cur.first == seq {
			rotations++
		}
		if st, err := os.Stat(cur.path); err != nil || st.Size() != segBytes {
			t.Fatalf("active segment %s: %v %v, want %d bytes", cur.path, st, err, segBytes)
		}
		if i > 1000 {
			t.Fatal("no rotations")
		}
	}
	// Footprint: the frames' bound plus the active segment and the free
	// ones at most.
	var disk int64
	for _, n := range spoolFiles(t, dir) {
		st, err := os.Stat(filepath.Join(dir, n))
		if err != nil {
			t.Fatal(err)
		}
		disk += st.Size()
	}
	if max := sp.size() + (1+spareSegments)*segBytes; disk > max {
		t.Fatalf("%d bytes of files for %d bytes of frames, want at most %d", disk, sp.size(), max)
	}
}

// TestSpoolFreshSegmentsWithinTheBound: the preparer writes no fresh
// segment that would take the spool's files beyond the frames' bound
// plus the active and the free segments.
func TestSpoolFreshSegmentsWithinTheBound(t *testing.T) {
	const segBytes = 16 << 10
	dir := t.TempDir()
	// Room for the frames of two segments: with many small live segments
	// the preparer stops short.
	sp, err := openSpoolPrepared(dir, 2*segBytes, segBytes, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer sp.close()
	sp.mu.Lock()
	// Live segments that fill the bound and more (as after a burst of
	// rotations away from growing ones).
	for i := 0; i < 6; i++ {
		sp.segs = append(sp.segs, segment{first: uint64(i + 1), last: uint64(i + 1), hdr: segHeader, size: segBytes - segHeader, filled: segBytes})
	}
	sp.prepared = preparedSegments
	need := sp.needFresh()
	sp.segs = sp.segs[:2]
	room := sp.needFresh()
	sp.mu.Unlock()
	if need {
		t.Fatal("a fresh segment prepared with six full live segments in a spool bounded to two")
	}
	if !room {
		t.Fatal("no fresh segment with two live segments in a spool bounded to two")
	}
}

// TestSpoolPreparedSegmentsReplayAsNothing: prepared segments left by a
// kill -9 (unused, or cut short while they were written) replay as
// nothing, never as frames; the restarted spool numbers on after the
// last frame, finds the unused prepared files and writes into them (no
// new file), in place.
func TestSpoolPreparedSegmentsReplayAsNothing(t *testing.T) {
	const segBytes = 64 << 10
	dir := t.TempDir()
	sp, err := openSpool(dir, 1<<30, segBytes)
	if err != nil {
		t.Fatal(err)
	}
	waitFree(t, sp, preparedSegments)
	var buf []byte
	var last uint64
	for i := 0; i < 5; i++ {
		if last, buf, err = sp.append(buf, testRecs(30, "k")); err != nil {
			t.Fatal(err)
		}
	}
	waitFree(t, sp, preparedSegments)
	sp.mu.Lock()
	var prepared []string
	for _, fs := range sp.free {
		prepared = append(prepared, filepath.Base(fs.path))
	}
	sp.mu.Unlock()
	sp.close() // a kill: the files stay as they are
	// A preparation cut short by the kill: a header and some zeros.
	cut := filepath.Join(dir, "w00000000000000000099.free")
	half := make([]byte, segBytes/2)
	copy(half, segHeaderBytes(7))
	if err := os.WriteFile(cut, half, 0o600); err != nil {
		t.Fatal(err)
	}
	before := spoolFiles(t, dir)

	sp, err = openSpool(dir, 1<<30, segBytes)
	if err != nil {
		t.Fatal(err)
	}
	defer sp.close()
	if sp.nextSeq() != last+1 {
		t.Fatalf("next seq %d after the restart, want %d", sp.nextSeq(), last+1)
	}
	if got := readAll(t, sp, 1); !slices.Equal(got, seqRange(1, last)) {
		t.Fatalf("replay read %v, want 1 to %d: a prepared segment was taken for frames", got, last)
	}
	sp.mu.Lock()
	nsegs := len(sp.segs)
	sp.mu.Unlock()
	if nsegs != 1 {
		t.Fatalf("%d segments with frames after the restart, want 1", nsegs)
	}
	waitFree(t, sp, preparedSegments)
	if err := sp.missing(1); err != nil {
		t.Fatal(err)
	}
	// The next frames go into a prepared file found at start, in place.
	seq, _, err := sp.append(nil, testRecs(30, "r"))
	if err != nil {
		t.Fatal(err)
	}
	sp.mu.Lock()
	cur := sp.segs[len(sp.segs)-1]
	sp.mu.Unlock()
	name := strings.TrimSuffix(filepath.Base(cur.path), ".seg") + ".free"
	if cur.first != seq || !(slices.Contains(prepared, name) || filepath.Base(cut) == name) {
		t.Fatalf("frame %d went to %s, not to a prepared file found at start (%v)", seq, cur.path, prepared)
	}
	if st, err := os.Stat(cur.path); err != nil || st.Size() != segBytes {
		t.Fatalf("active segment %s: %v %v, want %d bytes, written in place", cur.path, st, err, segBytes)
	}
	after := spoolFiles(t, dir)
	for _, n := range after {
		base := strings.TrimSuffix(strings.TrimSuffix(n, ".seg"), ".free")
		if !slices.ContainsFunc(before, func(b string) bool { return strings.HasPrefix(b, base+".") }) {
			t.Fatalf("new file %s after the restart (before %v): the prepared files were not reused", n, before)
		}
	}
	sp.close()
	// And once more: the frame written into the reused file replays,
	// nothing else.
	sp, err = openSpool(dir, 1<<30, segBytes)
	if err != nil {
		t.Fatal(err)
	}
	defer sp.close()
	if got := readAll(t, sp, 1); !slices.Equal(got, seqRange(1, seq)) {
		t.Fatalf("second replay read %v, want 1 to %d", got, seq)
	}
}

// TestSpoolDiskFullWhilePreparing: a fresh segment that cannot be written
// (ENOSPC) is removed, the error is reported once for the ingester's
// warning, and flushes go on into growing segments with no frame lost;
// once the pause is over and the disk has room, prepared segments come
// back.
func TestSpoolDiskFullWhilePreparing(t *testing.T) {
	const segBytes = 64 << 10
	dir := t.TempDir()
	sp, err := openSpoolPrepared(dir, 1<<30, segBytes, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer sp.close()
	full := func(f *os.File, b []byte, off int64) (int, error) {
		if off+int64(len(b)) > segBytes/4 {
			return 0, &os.PathError{Op: "write", Path: f.Name(), Err: syscall.ENOSPC}
		}
		return f.WriteAt(b, off)
	}
	sp.mu.Lock()
	sp.prepared, sp.writeAt, sp.retry = preparedSegments, full, time.Hour
	sp.mu.Unlock()
	sp.wake()
	testWait(t, "preparer error", func() bool {
		sp.mu.Lock()
		defer sp.mu.Unlock()
		return sp.prepErr != nil
	})
	perr := sp.preparerErr()
	if !strings.Contains(perr.Error(), "no space left") || !strings.Contains(perr.Error(), "preparing segment") {
		t.Fatalf("preparer error %q, want the disk-full cause and what failed", perr)
	}
	if files := spoolFiles(t, dir); len(files) != 0 {
		t.Fatalf("files %v after a failed preparation, want none left behind", files)
	}
	var buf []byte
	var last uint64
	grewAll := true
	for i := 0; i < 40; i++ {
		if last, buf, err = sp.write(buf, testRecs(40, "f")); err != nil {
			t.Fatal(err)
		}
		grew, err := sp.sync()
		if err != nil {
			t.Fatal(err)
		}
		grewAll = grewAll && grew
	}
	sp.mu.Lock()
	nsegs, nfree := len(sp.segs), len(sp.free)
	sp.mu.Unlock()
	if !grewAll || nsegs < 2 || nfree != 0 {
		t.Fatalf("after the failure: every flush grew %v, %d segments, %d free; want growing segments only, more than one", grewAll, nsegs, nfree)
	}
	if got := readAll(t, sp, 1); !slices.Equal(got, seqRange(1, last)) {
		t.Fatalf("read %v, want 1 to %d", got, last)
	}
	// Room again, the pause over: the next rotation wakes the preparer.
	sp.mu.Lock()
	sp.writeAt, sp.retryAt = (*os.File).WriteAt, time.Time{}
	sp.mu.Unlock()
	sp.wake()
	waitFree(t, sp, preparedSegments)
}

// TestSpoolPacesItsZeros: the zeros of a fresh segment, and the padding
// of a recycled one shorter than the segment size, go to the disk a chunk
// at a time: before a chunk is written, every chunk but the one just
// before it has been waited for (at most two in flight, so a flush's
// fsync never queues behind a segment's worth of zeros).
func TestSpoolPacesItsZeros(t *testing.T) {
	const segBytes = 4<<20 + 4096
	type ev struct {
		wait   bool
		off, n int64
	}
	for _, tc := range []string{"fresh", "recycled"} {
		t.Run(tc, func(t *testing.T) {
			dir := t.TempDir()
			sp, err := openSpoolPrepared(dir, 1<<30, segBytes, 0)
			if err != nil {
				t.Fatal(err)
			}
			defer sp.close()
			var evs []ev // the preparer's calls, in order (one goroutine)
			writeAt := func(f *os.File, b []byte, off int64) (int, error) {
				evs = append(evs, ev{off: off, n: int64(len(b))})
				return f.WriteAt(b, off)
			}
			pace := func(f *os.File, off, n int64) error {
				evs = append(evs, ev{wait: true, off: off, n: n})
				return waitWriteback(f, off, n)
			}
			var fs freeSeg
			if tc == "fresh" {
				sp.mu.Lock()
				sp.prepared, sp.writeAt, sp.paceWriteback = 1, writeAt, pace
				sp.mu.Unlock()
				sp.wake()
				waitFree(t, sp, 1)
				sp.mu.Lock() // the preparer is done with evs (free is set under mu)
				fs = sp.free[0]
				sp.mu.Unlock()
				checkFresh(t, fs, segBytes)
			} else {
				// A stored segment of 1 MiB (left early for a free one),
				// padded to the segment size when recycled.
				path := filepath.Join(dir, "w00000000000000000001.free")
				b := make([]byte, 1<<20)
				copy(b, segHeaderBytes(3))
				for i := segHeader; i < len(b); i++ {
					b[i] = byte(i)
				}
				if err := os.WriteFile(path, b, 0o600); err != nil {
					t.Fatal(err)
				}
				if fs, err = sp.reuse(path, writeAt, pace); err != nil {
					t.Fatal(err)
				}
				if st, err := os.Stat(path); err != nil || st.Size() != segBytes || !fs.recycled {
					t.Fatalf("recycled segment %+v: %v %v, want %d bytes", fs, st, err, segBytes)
				}
			}
			var chunks []ev // zeros written
			waited := map[int64]bool{}
			for _, e := range evs {
				if e.wait {
					waited[e.off] = true
					continue
				}
				if e.off == 0 {
					continue // the header
				}
				for _, c := range chunks[:max(0, len(chunks)-1)] {
					if !waited[c.off] {
						t.Fatalf("zeros at %d written while the chunk at %d was not waited for: more than two chunks in flight (%v)", e.off, c.off, evs)
					}
				}
				chunks = append(chunks, e)
			}
			if len(chunks) < 3 {
				t.Fatalf("%d chunks of zeros, want the padding in chunks of at most 1 MiB", len(chunks))
			}
		})
	}
}
