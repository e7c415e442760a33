package main

import (
	"bufio"
	"fmt"
	"io"
	"net/http"
	"os"
	"strconv"
	"strings"
)

// MemSample is where the control plane's memory is at one moment: its
// resident set and the Go runtime's memory classes (runtime/metrics
// /memory/classes/*, which the Go collector on the control plane's
// /metrics exports as go_memstats_*: heap_alloc_bytes is
// /memory/classes/heap/objects, heap_inuse - heap_alloc is heap/unused,
// heap_idle - heap_released is heap/free, heap_released is heap/released,
// stack_inuse is heap/stacks, sys is total) and its goroutines
// (/sched/goroutines, go_goroutines). Bytes, except Goroutines.
type MemSample struct {
	RSS float64 `json:"rss"`
	// HeapObjects are live and not yet collected objects.
	HeapObjects float64 `json:"heap_objects"`
	// HeapUnused is the free space of spans that hold objects
	// (fragmentation).
	HeapUnused float64 `json:"heap_unused"`
	// HeapFree is heap memory the runtime keeps for future allocations
	// and has not returned to the OS (GC headroom, after a burst).
	HeapFree float64 `json:"heap_free"`
	// HeapReleased was returned to the OS: mapped, not resident.
	HeapReleased float64 `json:"heap_released"`
	// Stacks are goroutine stacks.
	Stacks float64 `json:"stacks"`
	// OtherGo is everything else the runtime maps: OS thread stacks,
	// span and GC metadata, profiling buckets, other.
	OtherGo float64 `json:"other_go"`
	// Goroutines is the number of goroutines.
	Goroutines float64 `json:"goroutines"`
	// HeapGoal is the heap size at which the next GC starts.
	HeapGoal float64 `json:"heap_goal"`
}

// NotGo is the resident memory the runtime's classes do not account for
// (the binary, C allocations, pages of released memory not yet unmapped;
// and, since the runtime's classes count mapped memory, resident memory
// they count too much or too little).
func (m MemSample) NotGo() float64 {
	return m.RSS - (m.HeapObjects + m.HeapUnused + m.HeapFree + m.Stacks + m.OtherGo)
}

// sub is m - o, field by field.
func (m MemSample) sub(o MemSample) MemSample {
	return MemSample{RSS: m.RSS - o.RSS, HeapObjects: m.HeapObjects - o.HeapObjects, HeapUnused: m.HeapUnused - o.HeapUnused,
		HeapFree: m.HeapFree - o.HeapFree, HeapReleased: m.HeapReleased - o.HeapReleased, Stacks: m.Stacks - o.Stacks,
		OtherGo: m.OtherGo - o.OtherGo, Goroutines: m.Goroutines - o.Goroutines, HeapGoal: m.HeapGoal - o.HeapGoal}
}

// div is m / n, field by field.
func (m MemSample) div(n float64) MemSample {
	return MemSample{RSS: m.RSS / n, HeapObjects: m.HeapObjects / n, HeapUnused: m.HeapUnused / n, HeapFree: m.HeapFree / n,
		HeapReleased: m.HeapReleased / n, Stacks: m.Stacks / n, OtherGo: m.OtherGo / n, Goroutines: m.Goroutines / n, HeapGoal: m.HeapGoal / n}
}

// kib is one line of what a node's memory is made of (m is per node).
func (m MemSample) kib() string {
	k := func(b float64) float64 { return b / 1024 }
	return fmt.Sprintf("RSS %.1f KiB = heap objects %.1f + heap unused %.1f + heap free %.1f + goroutine stacks %.1f + other Go %.1f + outside Go's classes %.1f; released to the OS %.1f (not resident); %.2f goroutines",
		k(m.RSS), k(m.HeapObjects), k(m.HeapUnused), k(m.HeapFree), k(m.Stacks), k(m.OtherGo), k(m.NotGo()), k(m.HeapReleased), m.Goroutines)
}

// readMemory samples pid's resident set, then, with gc, forces a
// collection (so that HeapObjects is the live heap; a collection moves
// bytes between the heap classes but neither maps nor unmaps memory),
// then reads the runtime classes from the control plane's /metrics.
func readMemory(adminAddr string, pid int, gc bool) (MemSample, error) {
	rss := statusKiB(pid, "VmRSS") * 1024
	if gc {
		forceGC(adminAddr)
	}
	resp, err := http.Get("http://" + adminAddr + "/metrics")
	if err != nil {
		return MemSample{}, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return MemSample{}, fmt.Errorf("/metrics: %s", resp.Status)
	}
	v, err := samples(resp.Body, "go_memstats_heap_alloc_bytes", "go_memstats_heap_inuse_bytes", "go_memstats_heap_idle_bytes",
		"go_memstats_heap_released_bytes", "go_memstats_heap_sys_bytes", "go_memstats_stack_inuse_bytes", "go_memstats_sys_bytes",
		"go_goroutines", "go_memstats_next_gc_bytes")
	if err != nil {
		return MemSample{}, err
	}
	m := MemSample{
		RSS:          rss,
		HeapObjects:  v[0],
		HeapUnused:   v[1] - v[0],
		HeapFree:     v[2] - v[3],
		HeapReleased: v[3],
		Stacks:       v[5],
		OtherGo:      v[6] - v[4] - v[5],
		Goroutines:   v[7],
		HeapGoal:     v[8],
	}
	return m, nil
}

// samples reads the unlabeled samples names from a Prometheus text
// exposition, in that order; every one must be there.
func samples(r io.Reader, names ...string) ([]float64, error) {
	want := make(map[string]int, len(names))
	for i, n := range names {
		want[n] = i
	}
	out := make([]float64, len(names))
	seen := 0
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		name, val, ok := strings.Cut(sc.Text(), " ")
		i, wanted := want[name]
		if !ok || !wanted {
			continue
		}
		f, err := strconv.ParseFloat(strings.TrimSpace(val), 64)
		if err != nil {
			return nil, fmt.Errorf("/metrics: %s: %w", name, err)
		}
		out[i] = f
		delete(want, name)
		seen++
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	if seen != len(names) {
		missing := make([]string, 0, len(want))
		for n := range want {
			missing = append(missing, n)
		}
		return nil, fmt.Errorf("/metrics lacks %s", strings.Join(missing, ", "))
	}
	return out, nil
}

// statusKiB is one "kB" field of /proc/<pid>/status (VmRSS, VmHWM), 0
// when unknown.
func statusKiB(pid int, field string) float64 {
	if pid == 0 {
		return 0
	}
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if rest, ok := strings.CutPrefix(sc.Text(), field+":"); ok {
			kb, _ := strconv.ParseFloat(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(rest), "kB")), 64)
			return kb
		}
	}
	return 0
}

// resetPeakRSS resets pid's resident high-water mark (VmHWM) to its
// current resident set (Linux: "5" to /proc/<pid>/clear_refs), so that
// VmHWM read later is the peak since now.
func resetPeakRSS(pid int) error {
	if pid == 0 {
		return fmt.Errorf("no process")
	}
	return os.WriteFile(fmt.Sprintf("/proc/%d/clear_refs", pid), []byte("5"), 0)
}
