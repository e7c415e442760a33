package browsertest

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
)

// recorder is a testing.TB that keeps what Start logs and the failure it
// reports instead of ending the test.
type recorder struct {
	testing.TB
	logs  []string
	fatal string
}

func (r *recorder) Logf(format string, args ...any) {
	r.logs = append(r.logs, fmt.Sprintf(format, args...))
}
func (r *recorder) Fatalf(format string, args ...any) { r.fatal = fmt.Sprintf(format, args...) }

// TestStartRetriesThenFails: a browser that never starts (its binary
// exits at once) is tried attempts times, each attempt logged, then
// reported as one failure; no context is handed out for a browser that
// did not start.
func TestStartRetriesThenFails(t *testing.T) {
	Path(t) // the real Chromium must exist, as for the tests that use Start
	rec := &recorder{TB: t}
	ctx := Start(rec, 20*time.Second, chromedp.ExecPath("/bin/false"))
	if ctx != nil {
		t.Fatal("Start handed out a context for a browser that did not start")
	}
	if len(rec.logs) != attempts {
		t.Errorf("%d attempts logged, want %d: %q", len(rec.logs), attempts, rec.logs)
	}
	if !strings.Contains(rec.fatal, fmt.Sprintf("chromium did not start in %d attempts", attempts)) {
		t.Errorf("failure %q, want it to say how many attempts failed", rec.fatal)
	}
}

// TestStartRunsTheBrowser: the context Start returns has a running
// browser: a step needs no further start.
func TestStartRunsTheBrowser(t *testing.T) {
	ctx := Start(t, 60*time.Second)
	got, err := chromedp.Run(ctx, chromedp.Evaluate[int](`1 + 2`))
	if err != nil || got != 3 {
		t.Fatalf("evaluate 1 + 2: %v, %v", got, err)
	}
}
