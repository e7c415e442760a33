package accesslog

import (
	"errors"
	"os"
	"syscall"
)

// openDirect opens the file at path a second time for writing with
// O_DIRECT: writes through it bypass the page cache and return when the
// device has the data (not its volatile cache: the final fsync flushes
// that). Offsets, lengths and buffer addresses must be multiples of
// directAlign.
func openDirect(path string) (*os.File, error) {
	return os.OpenFile(path, os.O_WRONLY|syscall.O_DIRECT, 0)
}

// directUnsupported says whether err, from openDirect or the first write
// through its file, means the file system does not do O_DIRECT (or not
// with these alignments), so the buffered path takes over.
func directUnsupported(err error) bool {
	return errors.Is(err, syscall.EINVAL) || errors.Is(err, syscall.EOPNOTSUPP)
}
