package store

import (
	"context"
	"time"
)

// Watch is the control plane's way in: it calls fn with every live spec
// (and the store revision they reflect) once at start and again after
// every change, polling the change feed every interval, until ctx ends.
// fn is never called concurrently and never twice for the same set of
// (name, revision) pairs. A failing read is retried at the next interval,
// the last delivered set staying in force; Watch returns nil when ctx
// ends. ReportPublished on the Store is the way back.
func Watch(ctx context.Context, f Feed, interval time.Duration, fn func(revision int64, specs []StoredSpec)) error {
	if interval <= 0 {
		interval = 200 * time.Millisecond
	}
	var (
		cursor int64
		last   map[string]int64
		first  = true
	)
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		// The cursor comes from Changes, never from Snapshot: a backend
		// whose revisions are allocated before they are written (DynamoDB)
		// holds its cursor back until late writes have landed.
		next, changes, err := f.Changes(ctx, cursor)
		if err == nil && (first || len(changes) > 0) {
			if rev, specs, serr := f.Snapshot(ctx); serr == nil {
				cursor, first = next, false
				set := make(map[string]int64, len(specs))
				for _, s := range specs {
					set[s.Name] = s.Revision
				}
				if !sameSet(set, last) || last == nil {
					last = set
					fn(max(rev, next), specs)
				}
			}
		}
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}

func sameSet(a, b map[string]int64) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if w, ok := b[k]; !ok || w != v {
			return false
		}
	}
	return true
}
