package accesslog

import (
	"os"
	"syscall"
)

// fdatasync writes f's data and only the metadata needed to read it back
// (its size when it grew): for a preallocated spool segment no journal
// commit.
func fdatasync(f *os.File) error {
	rc, err := f.SyscallConn()
	if err != nil {
		return err
	}
	var serr error
	if err := rc.Control(func(fd uintptr) {
		for {
			serr = syscall.Fdatasync(int(fd))
			if serr != syscall.EINTR {
				return
			}
		}
	}); err != nil {
		return err
	}
	if serr != nil {
		return &os.PathError{Op: "fdatasync", Path: f.Name(), Err: serr}
	}
	return nil
}

// startWriteback starts writing f's dirty pages in [off, off+n) to disk
// without waiting and without a device cache flush (sync_file_range
// SYNC_FILE_RANGE_WRITE), so that a segment's zeros go out in small pieces
// instead of lying in the page cache until one large fsync.
func startWriteback(f *os.File, off, n int64) {
	const syncFileRangeWrite = 0x2
	rc, err := f.SyscallConn()
	if err != nil {
		return
	}
	_ = rc.Control(func(fd uintptr) { _ = syscall.SyncFileRange(int(fd), off, n, syncFileRangeWrite) })
}

// waitWriteback starts writing f's dirty pages in [off, off+n) and waits
// until they are written (sync_file_range SYNC_FILE_RANGE_WAIT_BEFORE |
// WRITE | WAIT_AFTER; no device cache flush, no metadata).
func waitWriteback(f *os.File, off, n int64) error {
	const waitAll = 0x1 | 0x2 | 0x4
	rc, err := f.SyscallConn()
	if err != nil {
		return err
	}
	var serr error
	if err := rc.Control(func(fd uintptr) { serr = syscall.SyncFileRange(int(fd), off, n, waitAll) }); err != nil {
		return err
	}
	if serr != nil {
		return &os.PathError{Op: "sync_file_range", Path: f.Name(), Err: serr}
	}
	return nil
}
