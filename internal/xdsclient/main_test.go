package xdsclient_test

import (
	"testing"

	"go.uber.org/goleak"
)

// TestMain fails the package if Run leaves goroutines behind once its
// context ends.
func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }
