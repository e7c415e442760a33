//go:build !linux

package accesslog

import (
	"errors"
	"os"
)

var errNoDirect = errors.New("no O_DIRECT on this platform")

// openDirect fails where O_DIRECT is not used: the zeros go through the
// page cache (the buffered path).
func openDirect(string) (*os.File, error) { return nil, errNoDirect }

// directUnsupported says whether err means the buffered path takes over.
func directUnsupported(err error) bool { return errors.Is(err, errNoDirect) }
