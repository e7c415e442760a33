//go:build !linux

package accesslog

import "os"

// fdatasync is fsync where the platform has no fdatasync.
func fdatasync(f *os.File) error { return f.Sync() }

// startWriteback does nothing where there is no sync_file_range.
func startWriteback(*os.File, int64, int64) {}

// waitWriteback does nothing where there is no sync_file_range (the
// final fsync writes everything).
func waitWriteback(*os.File, int64, int64) error { return nil }
