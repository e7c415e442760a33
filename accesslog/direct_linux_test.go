package accesslog

import (
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"unsafe"
)

// isDirectWrite says whether a write of b at off through f bypasses the
// page cache: f was opened with O_DIRECT. Such a write is on the device
// when it returns, so it is never "in flight" afterwards. It fails t when
// the write is not aligned as O_DIRECT needs (offset, length, address).
func isDirectWrite(t *testing.T, f *os.File, b []byte, off int64) bool {
	fl, err := fcntlGetfl(f)
	if err != nil {
		t.Errorf("fcntl %s: %v", f.Name(), err)
		return false
	}
	if fl&syscall.O_DIRECT == 0 {
		return false
	}
	if off%directAlign != 0 || len(b)%directAlign != 0 || uintptr(unsafe.Pointer(&b[0]))%directAlign != 0 {
		t.Errorf("O_DIRECT write of %d bytes at %d from %p: not aligned to %d", len(b), off, &b[0], directAlign)
	}
	return true
}

func fcntlGetfl(f *os.File) (int, error) {
	rc, err := f.SyscallConn()
	if err != nil {
		return 0, err
	}
	var fl uintptr
	var errno syscall.Errno
	if err := rc.Control(func(fd uintptr) {
		fl, _, errno = syscall.Syscall(syscall.SYS_FCNTL, fd, syscall.F_GETFL, 0)
	}); err != nil {
		return 0, err
	}
	if errno != 0 {
		return 0, errno
	}
	return int(fl), nil
}

// directWorks says whether the file system of dir takes O_DIRECT writes
// (ext4, xfs, tmpfs since Linux 6.6): there the preparer must use them.
func directWorks(t *testing.T, dir string) bool {
	p := filepath.Join(dir, "direct-probe")
	defer os.Remove(p)
	f, err := os.OpenFile(p, os.O_WRONLY|os.O_CREATE|syscall.O_DIRECT, 0o600)
	if err != nil {
		t.Logf("no O_DIRECT in %s: %v", dir, err)
		return false
	}
	defer f.Close()
	buf := make([]byte, 2*directAlign)
	skip := (directAlign - int(uintptr(unsafe.Pointer(&buf[0]))%directAlign)) % directAlign
	if _, err := f.WriteAt(buf[skip:skip+directAlign], 0); err != nil {
		t.Logf("no O_DIRECT writes in %s: %v", dir, err)
		return false
	}
	return true
}
