package testenv

import (
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
