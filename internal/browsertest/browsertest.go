// Package browsertest starts headless Chromium for the tests that drive
// Gatehouse's web pages (the access-log explorer) with chromedp. It is
// imported by tests only and imports no Gatehouse package.
package browsertest

import (
	"context"
	"os/exec"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
)

// Path is the Chromium binary; the test fails when there is none.
func Path(t testing.TB) string {
	t.Helper()
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	t.Fatal("chromium is not installed; run `make test` (it installs the Debian chromium package) or apt-get install -y chromium")
	return ""
}

// attempts is how many times Start starts Chromium before it gives up.
const attempts = 3

// Start starts headless Chromium with opts added to the defaults and
// returns a context for chromedp.Run whose browser is running, valid
// for timeout and cancelled when the test ends.
//
// The browser is started here, not by the test's first step, and a start
// that fails is retried in a fresh allocator and profile directory: on a
// loaded machine Chromium occasionally fails to start, and a later step on
// a context whose browser never started makes chromedp (v0.23) start a
// second browser for it, whose exit panics the test binary ("close of
// closed channel"), hiding the first error.
func Start(t testing.TB, timeout time.Duration, opts ...chromedp.ExecAllocatorOption) context.Context {
	t.Helper()
	bin := Path(t)
	var err error
	for i := 0; i < attempts; i++ {
		all := append(chromedp.DefaultExecAllocatorOptions[:],
			chromedp.ExecPath(bin), chromedp.Headless, chromedp.NoSandbox, chromedp.DisableGPU,
			chromedp.Flag("disable-background-networking", true), chromedp.Flag("disable-extensions", true),
			chromedp.Flag("disable-dev-shm-usage", true), chromedp.Flag("no-first-run", true),
			chromedp.UserDataDir(t.TempDir()),
		)
		all = append(all, opts...)
		actx, cancelA := chromedp.NewExecAllocator(context.Background(), all...)
		ctx, cancel := chromedp.NewContext(actx)
		ctx, cancelT := context.WithTimeout(ctx, timeout)
		stop := func() { cancelT(); cancel(); cancelA() }
		if err = chromedp.Do(ctx); err == nil { // starts the browser
			t.Cleanup(stop)
			return ctx
		}
		t.Logf("chromium did not start (attempt %d of %d): %v", i+1, attempts, err)
		stop()
	}
	t.Fatalf("chromium did not start in %d attempts: %v", attempts, err)
	return nil
}
