package telemetry

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"
)

// TestHTTPServerLimits: every server built by ServeHTTP has read-header,
// read, write and idle timeouts, a header limit and a body cap, and they
// act: a body over the cap is refused, and a client that stalls in its
// headers, in its body or idles on a kept-alive connection is cut off.
func TestHTTPServerLimits(t *testing.T) {
	srv := NewHTTPServer(http.NotFoundHandler())
	if srv.ReadHeaderTimeout <= 0 || srv.ReadTimeout <= 0 || srv.WriteTimeout <= 0 || srv.IdleTimeout <= 0 || srv.MaxHeaderBytes != 64<<10 {
		t.Fatalf("server limits: %+v", srv)
	}

	bodyErr := make(chan error, 10)
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, err := io.ReadAll(r.Body)
		if err != nil {
			bodyErr <- err
			var mbe *http.MaxBytesError
			if errors.As(err, &mbe) {
				http.Error(w, "too large", http.StatusRequestEntityTooLarge)
			}
			return
		}
		fmt.Fprintf(w, "read %d", len(b))
	})
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- ServeHTTP(ctx, l, h, ServerLimits{ReadHeaderTimeout: 300 * time.Millisecond, ReadTimeout: 500 * time.Millisecond,
			WriteTimeout: 2 * time.Second, IdleTimeout: 300 * time.Millisecond, MaxBodyBytes: 1024})
	}()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Error(err)
		}
	}()
	base := "http://" + l.Addr().String()

	post := func(body io.Reader, size int64) int {
		t.Helper()
		req, _ := http.NewRequest("POST", base+"/", body)
		req.ContentLength = size
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	if code := post(strings.NewReader(strings.Repeat("a", 100)), 100); code != 200 {
		t.Fatalf("small body: %d", code)
	}
	if code := post(strings.NewReader(strings.Repeat("a", 2048)), 2048); code != http.StatusRequestEntityTooLarge {
		t.Fatalf("declared 2 KiB body: %d, want 413", code)
	}
	if code := post(io.MultiReader(strings.NewReader(strings.Repeat("a", 2048))), -1); code != http.StatusRequestEntityTooLarge {
		t.Fatalf("chunked 2 KiB body: %d, want 413", code)
	}
	if err := <-bodyErr; err == nil {
		t.Fatal("no body error for the chunked 2 KiB body")
	}

	// closed reports whether the server closes c (the guard only keeps a
	// broken server from hanging the test).
	closed := func(c net.Conn) bool {
		c.SetReadDeadline(time.Now().Add(15 * time.Second))
		_, err := io.ReadAll(c)
		var ne net.Error
		return !(errors.As(err, &ne) && ne.Timeout())
	}
	dial := func() net.Conn {
		t.Helper()
		c, err := net.Dial("tcp", l.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		return c
	}
	// Headers that never end.
	c := dial()
	fmt.Fprintf(c, "GET / HTTP/1.1\r\nHost: x\r\nX-Slow: ")
	if !closed(c) {
		t.Fatal("a client stalling in its headers kept the connection")
	}
	// A body that stops halfway.
	c = dial()
	fmt.Fprintf(c, "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n0123456789")
	if !closed(c) {
		t.Fatal("a client stalling in its body kept the connection")
	}
	select {
	case err := <-bodyErr:
		var ne net.Error
		if !errors.As(err, &ne) || !ne.Timeout() {
			t.Fatalf("stalled body: handler got %v, want a timeout", err)
		}
	default:
		t.Fatal("the handler never saw the stalled body end")
	}
	// An idle kept-alive connection.
	c = dial()
	fmt.Fprintf(c, "GET / HTTP/1.1\r\nHost: x\r\n\r\n")
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if !closed(c) {
		t.Fatal("an idle keep-alive connection was kept")
	}
}
