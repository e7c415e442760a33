package ratelimitsidecar

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"github.com/fsnotify/fsnotify"
)

// watchDir calls reload (from this goroutine only) once changes in dir
// have been quiet for delay. Editors and config-map updates write in
// several steps; batching them avoids loading half-written files twice.
// The directory itself is watched, so renames and symlink swaps count.
// The watch is set up before watchDir returns, so no change after it
// returns is missed; the returned function runs the loop until ctx ends.
func watchDir(log *slog.Logger, dir string, delay time.Duration, reload func()) (func(context.Context) error, error) {
	w, err := fsnotify.NewWatcher()
	if err != nil {
		return nil, fmt.Errorf("ratelimit: watching %s: %w", dir, err)
	}
	if err := w.Add(dir); err != nil {
		w.Close()
		return nil, fmt.Errorf("ratelimit: watching %s: %w", dir, err)
	}
	return func(ctx context.Context) error {
		defer w.Close()
		return watchLoop(ctx, log, w, dir, delay, reload)
	}, nil
}

func watchLoop(ctx context.Context, log *slog.Logger, w *fsnotify.Watcher, dir string, delay time.Duration, reload func()) error {
	var timer *time.Timer
	var fire <-chan time.Time
	for {
		select {
		case <-ctx.Done():
			if timer != nil {
				timer.Stop()
			}
			return nil
		case ev, ok := <-w.Events:
			if !ok {
				return nil
			}
			log.Debug("config dir changed", "dir", dir, "file", ev.Name, "op", ev.Op.String())
			if timer == nil {
				timer = time.NewTimer(delay)
			} else {
				timer.Reset(delay)
			}
			fire = timer.C
		case err, ok := <-w.Errors:
			if !ok {
				return nil
			}
			log.Warn("config dir watch error", "dir", dir, "error", err)
		case <-fire:
			fire = nil
			reload()
		}
	}
}
