package accesslog

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

// directSegBytes is a segment size whose end is not 4 KiB-aligned: a
// buffered head (after the header), an O_DIRECT middle, a buffered tail.
const directSegBytes = 3<<20 + 4096 + 100

// TestSpoolDirectFreshSegmentReplaysAsNothing: a fresh segment whose zeros
// went through O_DIRECT (where the file system takes it) is the segment
// size, reads back as the header and zeros only (the unaligned head and
// tail written through the page cache, the middle in aligned chunks of at
// most 1 MiB), and after a restart replays as nothing.
func TestSpoolDirectFreshSegmentReplaysAsNothing(t *testing.T) {
	dir := t.TempDir()
	sp, err := openSpoolPrepared(dir, 1<<30, directSegBytes, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer sp.close()
	var evs []zeroEv
	writeAt := func(f *os.File, b []byte, off int64) (int, error) {
		evs = append(evs, zeroEv{off: off, n: int64(len(b)), direct: isDirectWrite(t, f, b, off)})
		return f.WriteAt(b, off)
	}
	pace := func(f *os.File, off, n int64) error {
		evs = append(evs, zeroEv{wait: true, off: off, n: n})
		return waitWriteback(f, off, n)
	}
	sp.mu.Lock()
	sp.prepared, sp.writeAt, sp.paceWriteback = 1, writeAt, pace
	sp.mu.Unlock()
	sp.wake()
	waitFree(t, sp, 1)
	sp.mu.Lock()
	fs := sp.free[0]
	sp.mu.Unlock()
	checkFresh(t, fs, directSegBytes)
	direct := checkPaced(t, evs)
	if directWorks(t, dir) {
		var covered int64
		for _, e := range evs {
			if e.direct {
				covered += e.n
			}
		}
		if want := int64(directSegBytes&^(directAlign-1)) - directAlign; direct < 3 || covered != want {
			t.Fatalf("%d O_DIRECT chunks of %d bytes in all, want the aligned middle, %d bytes (%v)", direct, covered, want, evs)
		}
	}
	sp.close() // a kill: the files stay as they are

	sp, err = openSpool(dir, 1<<30, directSegBytes)
	if err != nil {
		t.Fatal(err)
	}
	defer sp.close()
	if sp.nextSeq() != 1 {
		t.Fatalf("next seq %d after the restart, want 1: the prepared segment replayed frames", sp.nextSeq())
	}
	if got := readAll(t, sp, 1); len(got) != 0 {
		t.Fatalf("replay read %v from a prepared segment, want nothing", got)
	}
	if err := sp.missing(1); err != nil {
		t.Fatal(err)
	}
}

// TestSpoolDirectFallsBack: where O_DIRECT is refused (the open, or the
// first write through it, fails with EINVAL or EOPNOTSUPP: tmpfs on old
// kernels, some file systems) the zeros go through the page cache as
// before and the segment is the same; any other error (EACCES opening,
// ENOSPC writing) fails the preparation and removes the file.
func TestSpoolDirectFallsBack(t *testing.T) {
	for _, tc := range []struct {
		name      string
		openErr   error // openDirect fails with it
		writeErr  error // the first write through the direct descriptor fails with it
		wantError bool
	}{
		{name: "open EINVAL", openErr: syscall.EINVAL},
		{name: "open EOPNOTSUPP", openErr: syscall.EOPNOTSUPP},
		{name: "first write EINVAL", writeErr: syscall.EINVAL},
		{name: "first write EOPNOTSUPP", writeErr: syscall.EOPNOTSUPP},
		{name: "open EACCES", openErr: syscall.EACCES, wantError: true},
		{name: "write ENOSPC", writeErr: syscall.ENOSPC, wantError: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			sp, err := openSpoolPrepared(dir, 1<<30, directSegBytes, 0)
			if err != nil {
				t.Fatal(err)
			}
			defer sp.close()
			var df *os.File // the descriptor openDirect gave
			var directTries int
			sp.mu.Lock()
			sp.openDirect = func(path string) (*os.File, error) {
				if tc.openErr != nil {
					return nil, &os.PathError{Op: "open", Path: path, Err: tc.openErr}
				}
				// A second descriptor the hook below recognises, also
				// where the file system has no O_DIRECT.
				df, err = os.OpenFile(path, os.O_WRONLY, 0)
				return df, err
			}
			sp.mu.Unlock()
			var evs []zeroEv
			writeAt := func(f *os.File, b []byte, off int64) (int, error) {
				if df != nil && f == df {
					directTries++
					return 0, &os.PathError{Op: "write", Path: f.Name(), Err: tc.writeErr}
				}
				evs = append(evs, zeroEv{off: off, n: int64(len(b))})
				return f.WriteAt(b, off)
			}
			pace := func(f *os.File, off, n int64) error {
				evs = append(evs, zeroEv{wait: true, off: off, n: n})
				return waitWriteback(f, off, n)
			}
			path := filepath.Join(dir, "w00000000000000000001.free")
			fs, err := sp.fresh(path, writeAt, pace)
			if tc.wantError {
				if err == nil || !errors.Is(err, tc.openErr) && !errors.Is(err, tc.writeErr) || !strings.Contains(err.Error(), path) {
					t.Fatalf("fresh: %v, want the %v with the file", err, errors.Join(tc.openErr, tc.writeErr))
				}
				if _, serr := os.Stat(path); !os.IsNotExist(serr) {
					t.Fatalf("failed segment %s left behind: %v", path, serr)
				}
				return
			}
			if err != nil {
				t.Fatalf("fresh: %v, want the buffered path to take over", err)
			}
			if tc.writeErr != nil && directTries != 1 {
				t.Fatalf("%d writes through the direct descriptor, want the first only", directTries)
			}
			checkFresh(t, fs, directSegBytes)
			checkPaced(t, evs)
			var covered int64
			for _, e := range evs {
				if !e.wait && e.off != 0 {
					covered += e.n
				}
			}
			if covered != directSegBytes-segHeader {
				t.Fatalf("%d bytes of zeros through the page cache, want all %d (%v)", covered, directSegBytes-segHeader, evs)
			}
		})
	}
}
