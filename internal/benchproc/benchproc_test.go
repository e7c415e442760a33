package benchproc

import (
	"os"
	"os/exec"
	"syscall"
	"testing"
	"time"
)

func TestParseStatCPU(t *testing.T) {
	// Field 2 may hold spaces and parentheses; utime 250 and stime 150
	// ticks are fields 14 and 15.
	line := "4242 (a b) (c)) S 1 2 3 4 5 6 7 8 9 10 250 150 11 12 20 0 1 0\n"
	got, err := ParseStatCPU(line)
	if err != nil || got.Seconds() != 4.0 {
		t.Fatalf("ParseStatCPU = %v, %v, want 4.0", got, err)
	}
	if _, err := ParseStatCPU("4242 (x) S 1 2"); err == nil {
		t.Error("a short line parsed")
	}
	if _, err := ParseStatCPU("4242 (x) S 1 2 3 4 5 6 7 8 9 10 x 150 11"); err == nil {
		t.Error("a non-numeric utime parsed")
	}
	a, err := CPU(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	// Burn CPU until the kernel's tick counter moves (bounded).
	deadline := time.Now().Add(20 * time.Second)
	for x := 0; time.Now().Before(deadline); x++ {
		if x%1_000_000 == 0 {
			b, err := CPU(os.Getpid())
			if err != nil {
				t.Fatal(err)
			}
			if b > a {
				return
			}
		}
	}
	t.Fatal("this process's CPU from /proc never grew while it was spinning")
}

// TestProcCPU: Proc.CPU reads this process's user+system time from
// /proc/<pid>/stat. It is checked against getrusage, an independent source
// of the same figure: the test burns CPU until getrusage says at least
// 300 ms were spent (bounded in wall time, no speed asserted), and the
// parser must see the growth, neither a constant nor a wrong field or unit.
func TestProcCPU(t *testing.T) {
	p := &Proc{Cmd: &exec.Cmd{Process: &os.Process{Pid: os.Getpid()}}}
	const burn = 300 * time.Millisecond
	a, err := p.CPU()
	if err != nil {
		t.Fatal(err)
	}
	r0 := rusageCPU(t)
	x := 0
	for deadline := time.Now().Add(30 * time.Second); rusageCPU(t)-r0 < burn; {
		if time.Now().After(deadline) {
			t.Fatalf("could not burn %v of CPU within 30s (got %v)", burn, rusageCPU(t)-r0)
		}
		for i := 0; i < 1_000_000; i++ { // bounded busy work
			x += i % 7
		}
	}
	b, err := p.CPU()
	if err != nil {
		t.Fatal(err)
	}
	burnt := rusageCPU(t) - r0
	// /proc counts in clock ticks (10 ms); the test's own goroutines and
	// the GC may add a little on either side of the reads.
	if got := b - a; got < burnt/2 || got > 2*burnt+100*time.Millisecond {
		t.Fatalf("/proc says the process used %v (from %v to %v); getrusage says %v (x=%d)", got, a, b, burnt, x)
	}
}

func rusageCPU(t *testing.T) time.Duration {
	t.Helper()
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		t.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
