package ratelimit

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
func watchDir(ctx context.Context, log *slog.Logger, dir string, delay time.Duration, reload func()) error {
	w, err := fsnotify.NewWatcher()
	if err != nil {
		return fmt.Errorf("ratelimit: watching %s: %w", dir, err)
	}
	defer w.Close()
	if err := w.Add(dir); err != nil {
		return fmt.Errorf("ratelimit: watching %s: %w", dir, err)
	}
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
