package main

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

func TestHealthcheck(t *testing.T) {
	ready := false
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/readyz" || !ready {
			http.Error(w, "not ready: no version published yet", http.StatusServiceUnavailable)
			return
		}
		w.Write([]byte("ok"))
	}))
	defer srv.Close()

	_, errOut, code := run(t, "healthcheck", srv.URL+"/readyz")
	if code == 0 || !strings.Contains(errOut, "503") {
		t.Errorf("not ready: exit %d, stderr %q; want non-zero with the status", code, errOut)
	}
	ready = true
	t.Setenv("GATEHOUSE_HEALTHCHECK_URL", srv.URL+"/readyz") // env twin of --url, as the image's HEALTHCHECK uses it
	if _, errOut, code := run(t, "healthcheck"); code != 0 {
		t.Errorf("ready via GATEHOUSE_HEALTHCHECK_URL: exit %d, stderr %q", code, errOut)
	}
	if out, errOut, code := run(t, "healthcheck", srv.URL+"/readyz"); code != 0 || !strings.Contains(out, "200") {
		t.Errorf("ready: exit %d, stdout %q, stderr %q", code, out, errOut)
	}
	if _, _, code := run(t, "healthcheck", srv.URL+"/missing"); code == 0 {
		t.Error("404 passed the health check")
	}
	// Nothing listening: fails, does not hang.
	l := httptest.NewServer(http.NotFoundHandler())
	dead := l.URL
	l.Close()
	if _, _, code := run(t, "healthcheck", "--timeout", "1s", dead+"/readyz"); code == 0 {
		t.Error("closed port passed the health check")
	}
	for _, bad := range []string{"127.0.0.1:9091/readyz", "ftp://x/readyz", "http://user:secret@127.0.0.1:1/readyz"} {
		_, errOut, code := run(t, "healthcheck", bad)
		if code == 0 || strings.Contains(errOut, "secret") {
			t.Errorf("healthcheck %q: exit %d, stderr %q", bad, code, errOut)
		}
	}
}
