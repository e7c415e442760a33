// Package benchproc runs the child server processes of the bench tools
// (sidecars/authz/cmd/authz-load, sidecars/ratelimit/ratelimitbench):
// start, stop with a grace period, and the process's CPU time read from
// /proc/<pid>/stat (Linux). It imports no other Gatehouse package.
package benchproc

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"time"
)

// Proc is a started child process.
type Proc struct{ Cmd *exec.Cmd }

// Start starts cmd (its output, environment and arguments set by the
// caller); name says which process in the error.
func Start(name string, cmd *exec.Cmd) (*Proc, error) {
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("starting %s: %w", name, err)
	}
	return &Proc{Cmd: cmd}, nil
}

// Stop sends sig, waits up to grace for the process to exit, then kills
// it and waits for it. A nil or unstarted Proc is left alone.
func (p *Proc) Stop(sig os.Signal, grace time.Duration) {
	if p == nil || p.Cmd == nil || p.Cmd.Process == nil {
		return
	}
	_ = p.Cmd.Process.Signal(sig)
	done := make(chan struct{})
	go func() { _ = p.Cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(grace):
		_ = p.Cmd.Process.Kill()
		<-done
	}
}

// CPU is the process's user+system CPU time so far.
func (p *Proc) CPU() (time.Duration, error) { return CPU(p.Cmd.Process.Pid) }

// CPU is the user+system CPU time of process pid, from /proc/<pid>/stat.
func CPU(pid int) (time.Duration, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	return ParseStatCPU(string(b))
}

// clockTick is USER_HZ, 100 on Linux for every architecture Go supports.
const clockTick = 100

// ParseStatCPU reads utime+stime (fields 14 and 15, in clock ticks) of a
// /proc/<pid>/stat line. The command name (field 2) may hold spaces and
// parentheses, so fields are counted after its last ')'.
func ParseStatCPU(s string) (time.Duration, error) {
	i := strings.LastIndexByte(s, ')')
	if i < 0 || i+2 > len(s) {
		return 0, fmt.Errorf("/proc stat %q: no command name", s)
	}
	f := strings.Fields(s[i+1:])
	if len(f) < 13 {
		return 0, fmt.Errorf("/proc stat: %d fields after the command name, want at least 13", len(f))
	}
	ut, err := strconv.ParseUint(f[11], 10, 64)
	if err != nil {
		return 0, fmt.Errorf("/proc stat utime %q: %w", f[11], err)
	}
	st, err := strconv.ParseUint(f[12], 10, 64)
	if err != nil {
		return 0, fmt.Errorf("/proc stat stime %q: %w", f[12], err)
	}
	return time.Duration(ut+st) * time.Second / clockTick, nil
}

// FreePort is a TCP port on 127.0.0.1 that was free a moment ago.
func FreePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}
