package testenv

import (
	"fmt"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

func TestCounterValueFiltersByLabels(t *testing.T) {
	reg := prometheus.NewRegistry()
	c := prometheus.NewCounterVec(prometheus.CounterOpts{Name: "x_total", Help: "x"}, []string{"type", "kind"})
	reg.MustRegister(c)
	c.WithLabelValues("listener", "a").Add(2)
	c.WithLabelValues("listener", "b").Add(3)
	c.WithLabelValues("cluster", "a").Add(5)
	for _, tc := range []struct {
		name   string
		labels []string
		want   float64
	}{
		{name: "every series", want: 10},
		{name: "one label", labels: []string{"type", "listener"}, want: 5},
		{name: "two labels", labels: []string{"type", "listener", "kind", "b"}, want: 3},
		{name: "no match", labels: []string{"type", "route"}, want: 0},
	} {
		if got := CounterValue(t, reg, "x_total", tc.labels...); got != tc.want {
			t.Errorf("%s: CounterValue = %v, want %v", tc.name, got, tc.want)
		}
	}
	if got := CounterValue(t, reg, "absent_total"); got != 0 {
		t.Errorf("absent family: %v", got)
	}
}

func TestWaitForReturnsOnceTrue(t *testing.T) {
	n := 0
	WaitFor(t, "three polls", time.Second, func() bool { n++; return n == 3 })
	if n != 3 {
		t.Fatalf("cond called %d times, want 3", n)
	}
}

func TestHTTPGetReturnsStatusAndBody(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusTeapot)
		_, _ = w.Write([]byte("body of " + r.URL.Path))
	})}
	go func() { _ = srv.Serve(l) }()
	t.Cleanup(func() { _ = srv.Close() })
	code, body := HTTPGet(t, "http://"+l.Addr().String()+"/x")
	if code != http.StatusTeapot || body != "body of /x" {
		t.Fatalf("HTTPGet = %d %q, want 418 %q", code, body, "body of /x")
	}
}

func TestWrapExtensionsWrapsEach(t *testing.T) {
	res := WrapExtensions(t,
		Extension{Name: "authz/a", Type: "t.one", Value: map[string]any{"x": 1}},
		Extension{Name: "authz/b", Type: "t.two", Value: map[string]any{"y": 2}})
	if len(res) != 2 {
		t.Fatalf("WrapExtensions: %d resources, want 2", len(res))
	}
	for i, want := range []string{"authz/a", "authz/b"} {
		if got := res[i].(interface{ GetName() string }).GetName(); got != want {
			t.Errorf("resource %d: name %q, want %q", i, got, want)
		}
	}
}

func TestSyncBufferTakesConcurrentWrites(t *testing.T) {
	var b SyncBuffer
	var wg sync.WaitGroup
	for i := 0; i < 8; i++ {
		wg.Add(1)
		go func() { defer wg.Done(); fmt.Fprintf(&b, "line %d\n", i) }()
	}
	wg.Wait()
	if n := strings.Count(b.String(), "\n"); n != 8 {
		t.Fatalf("%d lines, want 8:\n%s", n, b.String())
	}
}

func TestClosedAddrRefusesConnections(t *testing.T) {
	if c, err := net.DialTimeout("tcp", ClosedAddr(t), time.Second); err == nil {
		c.Close()
		t.Fatal("dialled a closed address")
	}
}
