package accesslog

import "os"

// SetSpoolFsync replaces the spool's fsync of a segment (fdatasync) for
// tests that slow it down; call it before Run.
func SetSpoolFsync(in *Ingester, fsync func(f *os.File, real func(*os.File) error) error) {
	in.spool.fsync = func(f *os.File) error { return fsync(f, fdatasync) }
}

// SpoolNextSeq is the seq the next spool frame gets: every frame below it
// is written (not necessarily fsynced).
func SpoolNextSeq(in *Ingester) uint64 { return in.spool.nextSeq() }

// SpoolFramesRead is how many frames were read back from the spool files.
func SpoolFramesRead(in *Ingester) uint64 { return in.spool.framesRead.Load() }

// SpoolFreeReady is how many free segments are ready for the spool's
// next rotations.
func SpoolFreeReady(in *Ingester) int {
	in.spool.mu.Lock()
	defer in.spool.mu.Unlock()
	return len(in.spool.free)
}
