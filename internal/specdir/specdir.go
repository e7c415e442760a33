// Package specdir is the one way a process reads and follows a directory
// of EdgeRoute files (`--spec-dir`): LoadCompiled validates every spec and
// compiles it with a concern's compiler (authz.Compile, ratelimit.Compile,
// accesslog.Compile), and a Watcher (Start, then Run) calls a reload
// function when the directory's spec files change. The control plane's
// file source and the three sidecars use it, so the same flag reloads the
// same way everywhere: fsnotify events on spec files, batched by a
// hold-off timer, plus a periodic poll of the files' names, sizes and
// modification times in case an event was lost.
//
// A spec file is what spec.IsSpecFile says (.yaml, .yml, .json, not a
// dot-file). Keeping the last good configuration when a reload fails is
// the caller's job: a Watcher only says when to reload.
//
// It imports spec; it must not import the control plane, the sidecars or
// cmd/.
package specdir

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/fsnotify/fsnotify"

	"github.com/gatehouse-edge/gatehouse/spec"
)

// Defaults of Options.
const (
	DefaultHoldOff      = 100 * time.Millisecond
	DefaultPollInterval = 30 * time.Second
)

// Load reads and validates every spec file in dir (spec.Load).
func Load(dir string) ([]*spec.Document, error) {
	docs, err := spec.Load(dir)
	if err != nil {
		return nil, fmt.Errorf("spec dir %s: %w", dir, err)
	}
	return docs, nil
}

// LoadCompiled loads dir and compiles every document with compile, in
// file order. The first document that does not compile fails the whole
// directory, naming its file.
func LoadCompiled[T any](dir string, compile func(*spec.EdgeRoute) (T, error)) ([]T, error) {
	docs, err := Load(dir)
	if err != nil {
		return nil, err
	}
	out := make([]T, 0, len(docs))
	for _, d := range docs {
		v, err := compile(&d.EdgeRoute)
		if err != nil {
			return nil, fmt.Errorf("spec dir %s: %s: %w", dir, d.File, err)
		}
		out = append(out, v)
	}
	return out, nil
}

// Options configure a Watcher; the zero value is usable.
type Options struct {
	Log *slog.Logger // default: discard
	// HoldOff is how long the directory must be quiet after a file event
	// before reload runs: an editor writing a file twice, a checkout of
	// many files or a ConfigMap swap is one reload. Default 100ms.
	HoldOff time.Duration
	// PollInterval is how often the spec files' names, sizes and
	// modification times are compared with the last look, in case an
	// event was lost. Default 30s; negative disables polling.
	PollInterval time.Duration
	// NoNotify disables fsnotify: only the poll sees changes (file
	// systems without inotify, and tests of the poll).
	NoNotify bool
}

// Watcher follows one directory. Start it before loading the directory
// for the first time, so that no change made during that load is missed.
type Watcher struct {
	dir     string
	log     *slog.Logger
	holdOff time.Duration
	poll    time.Duration
	fsw     *fsnotify.Watcher // nil with NoNotify
	last    string            // fingerprint at the last reload (or Start)
}

// Start checks that dir is a directory, starts watching it and takes the
// fingerprint later polls compare with. Run (or Close) must follow.
func Start(dir string, o Options) (*Watcher, error) {
	st, err := os.Stat(dir)
	if err != nil {
		return nil, fmt.Errorf("spec dir %s: %w", dir, err)
	}
	if !st.IsDir() {
		return nil, fmt.Errorf("spec dir %s: not a directory", dir)
	}
	w := &Watcher{dir: dir, log: o.Log, holdOff: o.HoldOff, poll: o.PollInterval}
	if w.log == nil {
		w.log = slog.New(slog.DiscardHandler)
	}
	if w.holdOff <= 0 {
		w.holdOff = DefaultHoldOff
	}
	if w.poll == 0 {
		w.poll = DefaultPollInterval
	}
	if !o.NoNotify {
		if w.fsw, err = fsnotify.NewWatcher(); err != nil {
			return nil, fmt.Errorf("spec dir %s: watching: %w", dir, err)
		}
		if err := w.fsw.Add(dir); err != nil {
			w.fsw.Close()
			return nil, fmt.Errorf("spec dir %s: watching: %w", dir, err)
		}
	}
	w.last, _ = Fingerprint(dir)
	return w, nil
}

// Close stops watching; Run closes the watcher itself when it returns.
func (w *Watcher) Close() {
	if w.fsw != nil {
		w.fsw.Close()
	}
}

// Run calls reload (from this goroutine only) once after each burst of
// changes to the directory's spec files has been quiet for the hold-off,
// and when a poll finds the files changed, until ctx ends. Dot-files,
// files of other extensions and attribute-only changes are ignored,
// except Kubernetes' "..data" link, whose swap is how a mounted ConfigMap
// changes every file at once.
func (w *Watcher) Run(ctx context.Context, reload func()) error {
	defer w.Close()
	var events <-chan fsnotify.Event
	var errs <-chan error
	if w.fsw != nil {
		events, errs = w.fsw.Events, w.fsw.Errors
	}
	var tick <-chan time.Time
	if w.poll > 0 {
		t := time.NewTicker(w.poll)
		defer t.Stop()
		tick = t.C
	}
	hold := time.NewTimer(w.holdOff)
	hold.Stop()
	defer hold.Stop()
	fire := func() {
		w.last, _ = Fingerprint(w.dir)
		reload()
	}
	for {
		select {
		case <-ctx.Done():
			return nil
		case ev, ok := <-events:
			if !ok {
				return fmt.Errorf("spec dir %s: watcher closed", w.dir)
			}
			if relevant(ev) {
				w.log.Debug("spec dir changed", "spec_dir", w.dir, "file", filepath.Base(ev.Name), "op", ev.Op.String())
				hold.Reset(w.holdOff)
			}
		case err, ok := <-errs:
			if !ok {
				return fmt.Errorf("spec dir %s: watcher closed", w.dir)
			}
			w.log.Warn("spec dir watch error; re-reading the directory", "spec_dir", w.dir, "error", err)
			hold.Reset(w.holdOff)
		case <-hold.C:
			fire()
		case <-tick:
			fp, err := Fingerprint(w.dir)
			if err != nil {
				w.log.Warn("spec dir poll failed", "spec_dir", w.dir, "error", err)
				continue
			}
			if fp != w.last {
				w.log.Debug("spec dir poll found a change", "spec_dir", w.dir)
				fire()
			}
		}
	}
}

// kubernetesDataLink is the symlink a Kubernetes volume swaps to replace
// all of a ConfigMap's or Secret's files at once.
const kubernetesDataLink = "..data"

func relevant(ev fsnotify.Event) bool {
	if ev.Op == fsnotify.Chmod {
		return false
	}
	name := filepath.Base(ev.Name)
	return spec.IsSpecFile(name) || name == kubernetesDataLink
}

// Fingerprint summarises the spec files of dir: their names, and the size
// and modification time of what they point to (symlinks are followed, so
// a swapped ConfigMap counts). Equal fingerprints mean no visible change.
func Fingerprint(dir string) (string, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return "", err
	}
	var lines []string
	for _, e := range entries {
		if !spec.IsSpecFile(e.Name()) {
			continue
		}
		info, err := os.Stat(filepath.Join(dir, e.Name()))
		if err != nil {
			if errors.Is(err, os.ErrNotExist) {
				continue // removed since ReadDir, or a dangling link
			}
			return "", err
		}
		if info.IsDir() {
			continue
		}
		lines = append(lines, fmt.Sprintf("%q %d %d", e.Name(), info.Size(), info.ModTime().UnixNano()))
	}
	sort.Strings(lines)
	sum := sha256.Sum256([]byte(strings.Join(lines, "\n")))
	return fmt.Sprintf("%x", sum), nil
}
