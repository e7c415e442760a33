//go:build !linux

package accesslog

import (
	"os"
	"testing"
)

// isDirectWrite: no O_DIRECT writes off Linux.
func isDirectWrite(*testing.T, *os.File, []byte, int64) bool { return false }

// directWorks: the preparer does not use O_DIRECT off Linux.
func directWorks(*testing.T, string) bool { return false }
