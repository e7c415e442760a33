package authzsidecar

import (
	"testing"

	"go.uber.org/goleak"
)

// Every test leaves no goroutine behind (JWKS refreshers, servers, fetches).
func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }
