package accesslogsidecar_test

import (
	"bytes"
	"context"
	"encoding/json"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	alv3 "github.com/envoyproxy/go-control-plane/envoy/data/accesslog/v3"

	"github.com/gatehouse-edge/gatehouse/accesslog/accesslogtest"
	"github.com/gatehouse-edge/gatehouse/accesslog/api"
	"github.com/gatehouse-edge/gatehouse/internal/browsertest"
)

// TestWebPageInHeadlessChromium loads the page in a real headless
// Chromium, runs a query through the form and reads the rendered table
// and panels.
func TestWebPageInHeadlessChromium(t *testing.T) {
	browsertest.Path(t) // fail before anything starts when there is no Chromium
	dir := t.TempDir()
	s := startSidecar(t, dir, nil)
	es := accesslogtest.Random(11, 600, time.Now().UTC().Add(-20*time.Minute), 10*time.Minute)
	entries := make([]*alv3.HTTPAccessLogEntry, len(es))
	want403 := map[string]bool{}
	for i := range es {
		entries[i] = es[i].HTTP()
		if es[i].Status == 403 {
			want403[es[i].RequestID] = true
		}
	}
	send(t, s.grpcAddr, entries, nil)
	c := apiClient{t: t, base: "http://" + s.httpAddr, seen: &bytes.Buffer{}}
	for deadline := time.Now().Add(20 * time.Second); len(c.logs(url.Values{"limit": {"1000"}}).Records) != len(es); {
		if time.Now().After(deadline) {
			t.Fatal("entries not stored")
		}
		time.Sleep(20 * time.Millisecond)
	}
	_, b := c.get("/v1/stats", url.Values{"group_by": {"client_ip"}, "status": {"403"}, "since": {"1h"}}, apiToken)
	var top api.StatsResponse
	if err := json.Unmarshal(b, &top); err != nil || len(top.Groups) == 0 {
		t.Fatalf("stats: %s", b)
	}

	ctx := browsertest.Start(t, 90*time.Second)

	type row struct {
		Cells []string `json:"cells"`
	}
	page := "http://" + s.httpAddr + "/"
	setToken := func(tok string) chromedp.Action[chromedp.Void] {
		return chromedp.Steps(
			chromedp.SetValue("#token", tok),
			ignore(chromedp.Evaluate[any](`document.getElementById("token").dispatchEvent(new Event("change"))`)),
			ignore(chromedp.Evaluate[any](`document.getElementById("status").dataset.done = ""`)),
		)
	}
	// A wrong token first: the page shows the API's 401.
	err := chromedp.Do(ctx,
		chromedp.Navigate(page),
		chromedp.WaitVisible("#filters"),
		setToken("not-the-token-0000000"),
		chromedp.Click("#run"),
		chromedp.WaitVisible(`#status[data-done="1"]`),
	)
	if err != nil {
		t.Fatal(err)
	}
	status, err := chromedp.Run(ctx, chromedp.Text("#status"))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(status, "401") {
		t.Fatalf("with a wrong token the page says %q, want the 401", status)
	}
	err = chromedp.Do(ctx,
		setToken(apiToken),
		chromedp.SetValue(`input[name="since"]`, "1h"), // the page opens on 15m; these entries are 10-20 minutes old
		chromedp.SetValue(`input[name="status"]`, "403"),
		chromedp.SetValue(`input[name="limit"]`, "500"),
		chromedp.Click("#run"),
		chromedp.WaitVisible(`#status[data-done="1"]`),
	)
	if err != nil {
		t.Fatal(err)
	}
	status, _ = chromedp.Run(ctx, chromedp.Text("#status"))
	rows, err := chromedp.Run(ctx, chromedp.Evaluate[[]row](`Array.from(document.querySelectorAll("#results tbody tr")).map(tr => ({cells: Array.from(tr.children).map(td => td.textContent)}))`))
	if err != nil {
		t.Fatal(err)
	}
	topIP, err := chromedp.Run(ctx, chromedp.Evaluate[string](`(document.querySelector("#top-client_ip li") || {dataset: {}}).dataset.key || ""`))
	if err != nil {
		t.Fatal(err)
	}
	bars, err := chromedp.Run(ctx, chromedp.Evaluate[int](`document.querySelectorAll("#histogram rect.bar-denied").length`))
	if err != nil {
		t.Fatal(err)
	}
	if len(rows) != len(want403) || len(rows) == 0 {
		t.Fatalf("page shows %d rows (%q), want %d", len(rows), status, len(want403))
	}
	for _, r := range rows {
		if len(r.Cells) != 10 || r.Cells[4] != "403" || r.Cells[5] != "deny" || !strings.HasPrefix(r.Cells[3], "/items/") {
			t.Fatalf("row %v is not a denied request", r.Cells)
		}
	}
	if topIP != top.Groups[0].Key {
		t.Fatalf("top client IP panel shows %q, API says %q", topIP, top.Groups[0].Key)
	}
	if bars == 0 {
		t.Fatal("histogram has no denial bars")
	}
}

// ignore turns a valued action into a step.
func ignore[T any](a chromedp.Action[T]) chromedp.Action[chromedp.Void] {
	return func(ctx context.Context, t *chromedp.Target) (chromedp.Void, error) {
		_, err := a(ctx, t)
		return chromedp.Void{}, err
	}
}
