package main

import (
	"net/http"
	"strconv"
	"testing"

	"github.com/gatehouse-edge/gatehouse/internal/testenv"
)

// The control plane's admin port serves Go profiles only with --pprof.
func TestControlplanePprofOnlyWithFlag(t *testing.T) {
	for _, tc := range []struct {
		flags []string
		want  int
	}{{nil, http.StatusNotFound}, {[]string{"--pprof"}, http.StatusOK}} {
		admin := "127.0.0.1:" + strconv.Itoa(testenv.FreePort(t))
		xds := "127.0.0.1:" + strconv.Itoa(testenv.FreePort(t))
		args := append([]string{"controlplane", "--source", "file:../../deploy/examples", "--xds-addr", xds, "--admin-addr", admin, "--log-level", "warn"}, tc.flags...)
		startRole(t, admin, args...)
		resp, err := http.Get("http://" + admin + "/debug/pprof/")
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != tc.want {
			t.Errorf("controlplane %v: GET /debug/pprof/ = %d, want %d", tc.flags, resp.StatusCode, tc.want)
		}
	}
}
