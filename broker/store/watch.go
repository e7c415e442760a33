package store

import (
	"context"
	"time"
)

// Watch is the control plane's way in: it calls fn with every live spec
// (and the store revision they reflect) once at start and again after
// every change, polling the change feed every interval, until ctx ends.
// deleted lists the deletions (tombstones) among the changes behind this
// call (on the first call: every tombstone in the store): once a config
// without those specs is live, report each tombstone's Revision through
// ReportPublished, as for a live spec — the broker's deprovision waits for
// it. fn is never called concurrently. A failing read is retried at the
// next interval, the last delivered set staying in force; Watch returns
// nil when ctx ends.
func Watch(ctx context.Context, f Feed, interval time.Duration, fn func(revision int64, specs, deleted []StoredSpec)) error {
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
				var deleted []StoredSpec
				for _, c := range changes {
					if !c.Deleted {
						continue
					}
					if last[c.Name] != -c.Revision {
						deleted = append(deleted, c)
					}
					set[c.Name] = -c.Revision // delivered: not again, even if the feed repeats it
				}
				if !sameSet(set, last) || last == nil {
					last = set
					fn(max(rev, next), specs, deleted)
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
