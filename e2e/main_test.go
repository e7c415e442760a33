package e2e

import (
	"os"
	"path/filepath"
	"testing"
)

// TestMain removes the gatehouse binary gatehouseBinary built (about
// 170 MB in a temporary directory per run of the package), which no
// single test owns.
func TestMain(m *testing.M) {
	code := m.Run()
	if gatehouseBinPath != "" {
		os.RemoveAll(filepath.Dir(gatehouseBinPath))
	}
	os.Exit(code)
}
