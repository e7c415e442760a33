package api_test

import (
	"context"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/gatehouse-edge/gatehouse/accesslog/accesslogtest"
	"github.com/gatehouse-edge/gatehouse/internal/browsertest"
	"github.com/gatehouse-edge/gatehouse/internal/telemetry"
)

// browser starts a headless Chromium with a w×h window.
func browser(t *testing.T, w, h int) context.Context {
	t.Helper()
	return browsertest.Start(t, 120*time.Second, chromedp.WindowSize(w, h))
}

// js runs a JavaScript statement as a step.
func js(expr string) chromedp.Action[chromedp.Void] {
	a := chromedp.Evaluate[any](expr)
	return func(ctx context.Context, t *chromedp.Target) (chromedp.Void, error) {
		_, err := a(ctx, t)
		return chromedp.Void{}, err
	}
}

// eval runs a JavaScript expression and returns its value.
func eval[T any](t *testing.T, ctx context.Context, js string) T {
	t.Helper()
	v, err := chromedp.Run(ctx, chromedp.Evaluate[T](js))
	if err != nil {
		t.Fatalf("%s: %v", js, err)
	}
	return v
}

// waitDone waits for the page to finish the search the last action
// started (#status gets data-done="1").
func waitDone(t *testing.T, ctx context.Context, what string, act ...chromedp.Action[chromedp.Void]) {
	t.Helper()
	var steps []chromedp.Action[chromedp.Void]
	if what != "open" {
		steps = append(steps, js(`document.getElementById("status").dataset.done = ""; true`))
	}
	steps = append(steps, act...)
	steps = append(steps, chromedp.WaitVisible(`#status[data-done="1"]`))
	if err := chromedp.Do(ctx, steps...); err != nil {
		t.Fatalf("%s: %v (status: %q)", what, err, eval[string](t, ctx, `document.getElementById("status").textContent`))
	}
	if cls := eval[string](t, ctx, `document.getElementById("status").className`); cls == "error" {
		t.Fatalf("%s: the page shows an error: %s", what, eval[string](t, ctx, `document.getElementById("status").textContent`))
	}
}

// shot writes a PNG of the page to $GATEHOUSE_SCREENSHOTS (make
// screenshots) when it is set.
func shot(t *testing.T, ctx context.Context, name string) {
	t.Helper()
	dir := os.Getenv("GATEHOUSE_SCREENSHOTS")
	if dir == "" {
		return
	}
	png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100)) // 100: PNG (lower is JPEG)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, name+".png"), png, 0o644); err != nil {
		t.Fatal(err)
	}
}

func total(t *testing.T, ctx context.Context) int {
	t.Helper()
	return eval[int](t, ctx, `Number(document.getElementById("total").dataset.total)`)
}

// column returns the text of every cell of the named column.
func column(t *testing.T, ctx context.Context, col string) []string {
	t.Helper()
	return eval[[]string](t, ctx, `(() => { const i = Array.from(document.querySelectorAll("#results thead th")).findIndex(th => th.dataset.col === "`+col+`");
		return Array.from(document.querySelectorAll("#results tbody tr")).map(tr => tr.children[i].textContent); })()`)
}

// TestExplorerPage drives the access-log page in headless Chromium as an
// analyst would: open it with the token in the fragment, pick a preset,
// click a top-N entry and a cell to filter, sort a column, open a row's
// detail, drag on the histogram to zoom, export, and read the screen.
func TestExplorerPage(t *testing.T) {
	now := time.Now().UTC()
	recs := accesslogtest.RandomRecords(21, 1500, now.Add(-58*time.Minute), 57*time.Minute)
	for i := range recs {
		if i%7 == 0 {
			recs[i].Rule, recs[i].Provider, recs[i].APIKeyID, recs[i].AuthKind = "deny-unknown-key", "partners", "key-42", "apiKey"
		}
	}
	base := serveAPI(t, storeWith(t, recs), telemetry.ServerLimits{})
	ctx := browser(t, 1400, 1000)

	// 1. Opened with the token in the fragment: it loads the last 15
	// minutes at once and the token leaves the URL.
	waitDone(t, ctx, "open", chromedp.Navigate(base+"/#token="+exportToken))
	if h := eval[string](t, ctx, `location.href`); strings.Contains(h, exportToken) || strings.Contains(h, "token") {
		t.Fatalf("the token stays in the URL: %s", h)
	}
	if s := eval[string](t, ctx, `sessionStorage.getItem("gatehouse_token")`); s != exportToken {
		t.Fatalf("sessionStorage holds %q", s)
	}
	n15 := total(t, ctx)
	if n15 == 0 || n15 >= len(recs) {
		t.Fatalf("15m default shows %d of %d matches", n15, len(recs))
	}
	if got := len(column(t, ctx, "route")); got != min(100, n15) {
		t.Fatalf("%d rows shown, want a page of %d", got, min(100, n15))
	}
	if txt := eval[string](t, ctx, `document.getElementById("total").textContent`); !strings.Contains(txt, "of ") || !strings.Contains(txt, "page size 100") {
		t.Fatalf("total line %q", txt)
	}
	title := eval[string](t, ctx, `document.querySelector("#results tbody td").title`)
	if !strings.HasSuffix(title, "Z (UTC)") {
		t.Fatalf("time cell hover %q, want the UTC time", title)
	}
	shot(t, ctx, "1-open-15m")

	// 2. Preset 1h: every record.
	waitDone(t, ctx, "preset", chromedp.Click(`#presets button[data-since="1h"]`))
	if got := total(t, ctx); got != len(recs) {
		t.Fatalf("1h preset: %d matches, want %d", got, len(recs))
	}
	if !strings.Contains(eval[string](t, ctx, `location.hash`), "since=1h") {
		t.Fatal("the preset is not in the URL")
	}
	bars := eval[int](t, ctx, `document.querySelectorAll("#histogram rect.bar-allow").length`)
	axes := eval[int](t, ctx, `document.querySelectorAll("#histogram text.axis-label").length`)
	if bars < 30 || axes < 5 || eval[int](t, ctx, `document.querySelectorAll("#histogram rect.bar-limited").length`) == 0 {
		t.Fatalf("histogram: %d allow bars, %d axis labels, no rate-limited bars?", bars, axes)
	}
	shot(t, ctx, "2-preset-1h")

	// 3. Sort the status column both ways.
	if err := chromedp.Do(ctx, chromedp.Click(`#results th[data-col="status"]`)); err != nil {
		t.Fatal(err)
	}
	st := column(t, ctx, "status")
	if !sort.StringsAreSorted(st) || st[0] == st[len(st)-1] {
		t.Fatalf("status ascending: %v", st)
	}
	if err := chromedp.Do(ctx, chromedp.Click(`#results th[data-col="status"]`)); err != nil {
		t.Fatal(err)
	}
	st = column(t, ctx, "status")
	if st[0] < st[len(st)-1] || !strings.Contains(eval[string](t, ctx, `location.hash`), "sort=-status") {
		t.Fatalf("status descending: first %s last %s, hash %s", st[0], st[len(st)-1], eval[string](t, ctx, `location.hash`))
	}

	// 4. Click a top-N route: the filter is set and every row is that route.
	key := eval[string](t, ctx, `document.querySelector("#top-route li").dataset.key`)
	count := eval[int](t, ctx, `Number(document.querySelector("#top-route li").dataset.count)`)
	waitDone(t, ctx, "top-N click", chromedp.Click(`#top-route li`))
	if v := eval[string](t, ctx, `document.querySelector("input[name=route]").value`); v != key {
		t.Fatalf("route filter %q, want %q", v, key)
	}
	if got := total(t, ctx); got != count {
		t.Fatalf("after clicking %s: %d matches, the list said %d", key, got, count)
	}
	for _, r := range column(t, ctx, "route") {
		if r != key {
			t.Fatalf("row of route %s with filter %s", r, key)
		}
	}
	// ... then a status cell, with the exclusion modifier: status != it.
	first := column(t, ctx, "status")[0]
	waitDone(t, ctx, "alt-click a cell", js(`(() => { const i = Array.from(document.querySelectorAll("#results thead th")).findIndex(th => th.dataset.col === "status");
		document.querySelector("#results tbody tr").children[i].dispatchEvent(new MouseEvent("click", {bubbles: true, altKey: true})); return true; })()`))
	if v := eval[string](t, ctx, `document.querySelector("input[name=status]").value`); v != "!"+first {
		t.Fatalf("status filter %q, want !%s", v, first)
	}
	for _, s := range column(t, ctx, "status") {
		if s == first {
			t.Fatalf("status %s shown though excluded", s)
		}
	}
	if !strings.Contains(eval[string](t, ctx, `decodeURIComponent(location.hash)`), "status=!"+first) {
		t.Fatal("the filter is not in the URL")
	}
	shot(t, ctx, "3-filtered")

	// 5. Row detail: every field, the authz ones included.
	waitDone(t, ctx, "clear", chromedp.Click("#clear"))
	if err := chromedp.Do(ctx, chromedp.Click(`#results tbody tr td:first-child`), chromedp.WaitVisible("#detail")); err != nil {
		t.Fatal(err)
	}
	fields := eval[[]string](t, ctx, `Array.from(document.querySelectorAll("#detail dt")).map(d => d.textContent)`)
	for _, f := range []string{"rule", "provider", "apikey_id", "request_id", "auth_kind", "user_agent", "node", "upstream_cluster", "headers", "batch"} {
		found := false
		for _, g := range fields {
			found = found || g == f
		}
		if !found {
			t.Fatalf("row detail lacks %s: %v", f, fields)
		}
	}
	rid := eval[string](t, ctx, `document.querySelector("#detail dd[data-field=request_id]").textContent`)
	if !strings.HasPrefix(rid, "req-21-") {
		t.Fatalf("detail request id %q", rid)
	}
	shot(t, ctx, "4-row-detail")
	if err := chromedp.Do(ctx, chromedp.Click("#detail-close")); err != nil {
		t.Fatal(err)
	}

	// 6. Drag across the middle of the histogram: the range narrows.
	before := total(t, ctx)
	box := eval[[]float64](t, ctx, `(() => { const r = document.getElementById("histogram").getBoundingClientRect(); return [r.left, r.top, r.width, r.height]; })()`)
	x0, x1, y := box[0]+box[2]*0.4, box[0]+box[2]*0.6, box[1]+box[3]/2
	waitDone(t, ctx, "zoom",
		chromedp.MouseEvent(chromedp.MousePressed, x0, y, chromedp.ButtonLeft),
		chromedp.MouseEvent(chromedp.MouseMoved, (x0+x1)/2, y, chromedp.ButtonLeft),
		chromedp.MouseEvent(chromedp.MouseMoved, x1, y, chromedp.ButtonLeft),
		chromedp.MouseEvent(chromedp.MouseReleased, x1, y, chromedp.ButtonLeft),
	)
	since := eval[string](t, ctx, `document.querySelector("input[name=since]").value`)
	until := eval[string](t, ctx, `document.querySelector("input[name=until]").value`)
	after := total(t, ctx)
	if !strings.HasSuffix(since, "Z") || !strings.HasSuffix(until, "Z") || after == 0 || after >= before/2 {
		t.Fatalf("zoom: since %q until %q, %d matches (before %d)", since, until, after, before)
	}
	shot(t, ctx, "5-zoomed")

	// 7. Export the whole result (more than a page), then an export that
	// fails shows why.
	waitDone(t, ctx, "1h again", chromedp.Click(`#presets button[data-since="1h"]`))
	if err := chromedp.Do(ctx, chromedp.Click("#export-ndjson"), chromedp.WaitVisible(`#export-status[data-done="1"]`)); err != nil {
		t.Fatal(err)
	}
	if got := eval[string](t, ctx, `document.getElementById("export-status").dataset.records`); got != "1500" {
		t.Fatalf("export: %s records (%s), want 1500", got, eval[string](t, ctx, `document.getElementById("export-status").textContent`))
	}
	err := chromedp.Do(ctx,
		js(`document.getElementById("export-status").dataset.done = ""; document.getElementById("token").value = "wrong-token-000000000"; true`),
		chromedp.Click("#export-csv"), chromedp.WaitVisible(`#export-status[data-done="1"]`))
	if err != nil {
		t.Fatal(err)
	}
	msg := eval[string](t, ctx, `document.getElementById("export-status").className + ": " + document.getElementById("export-status").textContent`)
	if !strings.HasPrefix(msg, "error: export failed: 401") {
		t.Fatalf("failed export shows %q", msg)
	}
}

// TestExplorerPageStates: no token says where to find one, no match says
// to widen the range, and at 1024 px the page does not scroll sideways.
func TestExplorerPageStates(t *testing.T) {
	recs := accesslogtest.RandomRecords(22, 50, time.Now().UTC().Add(-3*time.Hour), time.Hour)
	base := serveAPI(t, storeWith(t, recs), telemetry.ServerLimits{})
	ctx := browser(t, 1024, 800)
	waitDone(t, ctx, "open", chromedp.Navigate(base+"/"))
	if msg := eval[string](t, ctx, `document.getElementById("token-help").hidden ? "" : document.getElementById("token-help").textContent`); !strings.Contains(msg, "accesslog-token") {
		t.Fatalf("no token: help %q", msg)
	}
	shot(t, ctx, "6-no-token")
	waitDone(t, ctx, "paste the token", chromedp.SetValue("#token", exportToken),
		js(`document.getElementById("token").dispatchEvent(new Event("change"))`))
	msg := eval[string](t, ctx, `document.getElementById("status").className + ": " + document.getElementById("status").textContent`)
	if !strings.HasPrefix(msg, "empty: No requests match") || !strings.Contains(msg, "Widen the time range") {
		t.Fatalf("empty state: %q", msg)
	}
	if w := eval[int](t, ctx, `document.documentElement.scrollWidth`); w > 1024 {
		t.Fatalf("at 1024 px the page is %d px wide", w)
	}
	shot(t, ctx, "7-empty-1024px")
}
