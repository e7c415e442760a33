package ratelimit

import "math"

// The step functions below are the whole arithmetic of the three
// algorithms. Memory runs them under a lock; package redisstore runs the
// same steps, operation for operation in float64 (Lua numbers), inside one
// Lua script, so both backends give identical answers. Times are Unix
// milliseconds (microseconds for the token bucket's theoretical arrival
// time).

// stepFixed counts addend hits into a fixed-window counter that holds count:
// every hit is counted (as envoyproxy/ratelimit does), the result is over
// when the new count exceeds limit.
func stepFixed(count, addend, limit uint64) (newCount uint64, over bool) {
	newCount = count + addend
	return newCount, newCount > limit
}

// fixedReset is the time until the current fixed window ends.
func fixedReset(nowMs, winMs int64) int64 { return winMs - nowMs%winMs }

// slidingState is a two-window sliding counter: the start of the current
// window (ms), the hits counted in it and in the window before.
type slidingState struct {
	start     int64
	cur, prev uint64
}

// stepSliding rolls the windows forward to nowMs, estimates the hits in the
// last winMs as prev weighted by the share of the previous window still
// inside the sliding window plus cur, and counts addend unless that goes
// over limit.
func stepSliding(st *slidingState, nowMs, winMs int64, addend, limit uint64) (used uint64, over bool, resetMs int64) {
	ws := nowMs - nowMs%winMs
	if ws != st.start {
		if ws-st.start == winMs {
			st.prev = st.cur
		} else {
			st.prev = 0
		}
		st.cur, st.start = 0, ws
	}
	elapsed := nowMs - ws
	weighted := uint64(math.Floor(float64(st.prev) * float64(winMs-elapsed) / float64(winMs)))
	used = st.cur + weighted + addend
	over = used > limit
	if !over {
		st.cur += addend
	}
	return used, over, winMs - elapsed
}

// stepToken is GCRA over tat, the theoretical arrival time in µs: each hit
// costs interval = window/requests; a bucket of capacity hits may be spent
// at once. A hit that would push tat past now+capacity*interval is over
// and changes nothing.
func stepToken(tat *float64, nowUs float64, winUs float64, requests, capacity, addend uint64) (used uint64, over bool, resetUs float64) {
	interval := winUs / float64(requests)
	t := *tat
	if t < nowUs {
		t = nowUs
	}
	next := t + float64(addend)*interval
	allowAt := next - float64(capacity)*interval
	over = nowUs < allowAt
	after := next
	if over {
		after = t
	} else {
		*tat = next
	}
	used = uint64(math.Ceil((after-nowUs)/interval - 1e-9))
	if over {
		used += addend
		return used, true, allowAt - nowUs
	}
	return used, false, after - nowUs
}
