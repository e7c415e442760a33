// Package client is the Go client of the access-log query API and the
// renderer of its answers for the CLI (`gatehouse logs`): table or JSON.
// It speaks HTTP only and must not import a store, the sidecars or cmd/.
package client

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/gatehouse-edge/gatehouse/accesslog"
	"github.com/gatehouse-edge/gatehouse/accesslog/api"
)

// Client calls one accesslog sidecar's query API.
type Client struct {
	BaseURL string // http://127.0.0.1:9003
	Token   string // bearer token; never printed
	HTTP    *http.Client
}

// TokenFromFile reads the first token line of a token file.
func TokenFromFile(path string) (string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return "", fmt.Errorf("token file: %w", err)
	}
	for _, l := range strings.Split(string(b), "\n") {
		if l = strings.TrimSpace(l); l != "" && !strings.HasPrefix(l, "#") {
			return l, nil
		}
	}
	return "", fmt.Errorf("token file %s has no token", path)
}

func (c *Client) get(ctx context.Context, path string, q url.Values) (*http.Response, error) {
	u := strings.TrimRight(c.BaseURL, "/") + path
	if len(q) > 0 {
		u += "?" + q.Encode()
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return nil, fmt.Errorf("query API %s: %w", c.BaseURL, err)
	}
	req.Header.Set("Authorization", "Bearer "+c.Token)
	hc := c.HTTP
	if hc == nil {
		hc = &http.Client{Timeout: 0}
	}
	resp, err := hc.Do(req)
	if err != nil {
		return nil, fmt.Errorf("query API %s: %w", c.BaseURL, err)
	}
	if resp.StatusCode != http.StatusOK {
		defer resp.Body.Close()
		var e struct {
			Error string `json:"error"`
		}
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
		if json.Unmarshal(b, &e) != nil || e.Error == "" {
			e.Error = strings.TrimSpace(string(b))
		}
		return nil, fmt.Errorf("query API %s%s: %s: %s", c.BaseURL, path, resp.Status, e.Error)
	}
	return resp, nil
}

func (c *Client) getJSON(ctx context.Context, path string, q url.Values, v any) error {
	resp, err := c.get(ctx, path, q)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if err := json.NewDecoder(resp.Body).Decode(v); err != nil {
		return fmt.Errorf("query API %s%s: decoding answer: %w", c.BaseURL, path, err)
	}
	return nil
}

// Logs calls /v1/logs.
func (c *Client) Logs(ctx context.Context, q url.Values) (*api.LogsResponse, error) {
	var r api.LogsResponse
	return &r, c.getJSON(ctx, "/v1/logs", q, &r)
}

// Stats calls /v1/stats.
func (c *Client) Stats(ctx context.Context, q url.Values) (*api.StatsResponse, error) {
	var r api.StatsResponse
	return &r, c.getJSON(ctx, "/v1/stats", q, &r)
}

// Verify calls /v1/verify.
func (c *Client) Verify(ctx context.Context) (*accesslog.VerifyResult, error) {
	var r accesslog.VerifyResult
	return &r, c.getJSON(ctx, "/v1/verify", nil, &r)
}

// Export streams /v1/export to w.
func (c *Client) Export(ctx context.Context, q url.Values, w io.Writer) (int64, error) {
	resp, err := c.get(ctx, "/v1/export", q)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	n, err := io.Copy(w, resp.Body)
	if err != nil {
		return n, fmt.Errorf("query API %s/v1/export: %w", c.BaseURL, err)
	}
	return n, nil
}

// RenderLogs prints records as a table or JSON.
func RenderLogs(w io.Writer, r *api.LogsResponse, format string) error {
	if format == "json" {
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		return enc.Encode(r)
	}
	if format != "table" {
		return fmt.Errorf("output %q: want table or json", format)
	}
	tw := tabwriter.NewWriter(w, 2, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "TIME\tROUTE\tMETHOD\tPATH\tSTATUS\tDECISION\tSUBJECT\tCLIENT_IP\tMS\tFLAGS")
	for _, rec := range r.Records {
		path := rec.Path
		if rec.Query != "" {
			path += "?" + rec.Query
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%d\t%s\t%s\t%s\t%.1f\t%s\n", rec.Time.UTC().Format(time.RFC3339Nano), rec.Route, rec.Method,
			path, rec.Status, rec.Decision, rec.Subject, rec.ClientIP, float64(rec.DurationUS)/1000, rec.ResponseFlags)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	if r.NextCursor != "" {
		fmt.Fprintf(w, "more: --cursor %s\n", r.NextCursor)
	}
	return nil
}

// RenderStats prints groups as a table or JSON.
func RenderStats(w io.Writer, r *api.StatsResponse, format string) error {
	if format == "json" {
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		return enc.Encode(r)
	}
	if format != "table" {
		return fmt.Errorf("output %q: want table or json", format)
	}
	tw := tabwriter.NewWriter(w, 2, 4, 2, ' ', 0)
	fmt.Fprintf(tw, "%s\tCOUNT\tDENIED\tP50_MS\tP99_MS\n", strings.ToUpper(r.GroupBy))
	for _, g := range r.Groups {
		key := g.Key
		if key == "" {
			key = "(none)"
		}
		fmt.Fprintf(tw, "%s\t%d\t%d\t%.1f\t%.1f\n", key, g.Count, g.Denied, g.P50MS, g.P99MS)
	}
	return tw.Flush()
}

// ErrBroken is returned by RenderVerify when the chain does not verify.
var ErrBroken = errors.New("hash chain broken")

// RenderVerify prints a verification result; a broken chain returns
// ErrBroken (so the CLI exits non-zero).
func RenderVerify(w io.Writer, r *accesslog.VerifyResult, format string) error {
	if format == "json" {
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		if err := enc.Encode(r); err != nil {
			return err
		}
	} else if r.OK {
		fmt.Fprintf(w, "ok: %d batches (%d pruned by retention, %d prune records), %d records verified\n", r.Batches, r.Pruned, r.PruneRecords, r.Records)
		switch {
		case !r.Keyed:
			fmt.Fprintln(w, "warning: checked without the chain key ring: this only shows careless edits, anyone who can write the store can recompute an unkeyed chain")
		case r.Unkeyed > 0:
			fmt.Fprintf(w, "warning: %d batches at the start of the chain are unkeyed (written before the chain key was set)\n", r.Unkeyed)
		}
	} else {
		fmt.Fprintf(w, "BROKEN at batch %d: %s\n", r.BrokenBatch, r.Reason)
	}
	if !r.OK {
		return fmt.Errorf("%w at batch %d", ErrBroken, r.BrokenBatch)
	}
	return nil
}
