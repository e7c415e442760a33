package source

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"time"

	"github.com/gatehouse-edge/gatehouse/internal/specdir"
	"github.com/gatehouse-edge/gatehouse/spec"
)

// Options configure the sources; the zero value is usable.
type Options struct {
	Log *slog.Logger
	// PollInterval is how often S3 and the broker store are polled, and
	// how often a watched directory is re-read in case an event was
	// missed. Default 5s (dir: 30s).
	PollInterval time.Duration
	// HoldOff batches bursts of file events (an editor writing a file
	// twice, a checkout of many files). Default 100ms.
	HoldOff time.Duration
	// S3 settings; empty means the SDK's default chain.
	S3Endpoint  string // e.g. http://127.0.0.1:4568 (path-style is then used)
	S3Region    string
	S3AccessKey string
	S3SecretKey string
	// AWSEndpoint overrides the AWS endpoint of the broker's DynamoDB
	// store (an emulator).
	AWSEndpoint string
}

func (o Options) log() *slog.Logger {
	if o.Log == nil {
		return slog.New(slog.DiscardHandler)
	}
	return o.Log
}

// maxFiles bounds how many spec files one directory or prefix may hold.
const maxFiles = 20000

// maxSpecBytes bounds one spec file (spec.MaxDocumentSize is 1 MiB).
const maxSpecBytes = 1 << 20

// Dir is a directory of spec files (*.yaml, *.yml, *.json, not
// recursive, dot-files ignored), watched with fsnotify.
type Dir struct {
	dir  string
	opts Options
	log  *slog.Logger
}

// NewDir checks that dir is a readable directory.
func NewDir(dir string, o Options) (*Dir, error) {
	st, err := os.Stat(dir)
	if err != nil {
		return nil, fmt.Errorf("file source %s: %w", dir, err)
	}
	if !st.IsDir() {
		return nil, fmt.Errorf("file source %s: not a directory", dir)
	}
	return &Dir{dir: dir, opts: o, log: o.log().With("component", "source", "source", "file:"+dir)}, nil
}

// Read returns the directory's current revision.
func (d *Dir) Read() (Revision, error) {
	entries, err := os.ReadDir(d.dir)
	if err != nil {
		return Revision{}, fmt.Errorf("file source %s: %w", d.dir, err)
	}
	var specs []Spec
	for _, e := range entries {
		if !isSpecFile(e.Name()) || e.IsDir() {
			continue
		}
		if len(specs) >= maxFiles {
			return Revision{}, fmt.Errorf("file source %s: more than %d spec files", d.dir, maxFiles)
		}
		p := filepath.Join(d.dir, e.Name())
		data, err := readLimited(p)
		if err != nil {
			if errors.Is(err, os.ErrNotExist) {
				continue // removed between ReadDir and Open
			}
			return Revision{}, fmt.Errorf("file source: %w", err)
		}
		specs = append(specs, Spec{Origin: p, Data: data})
	}
	sort.Slice(specs, func(i, j int) bool { return specs[i].Origin < specs[j].Origin })
	return Revision{ID: RevisionID(specs), Specs: specs}, nil
}

func isSpecFile(name string) bool { return spec.IsSpecFile(name) }

func readLimited(p string) ([]byte, error) {
	f, err := os.Open(p)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, maxSpecBytes+1))
	if err != nil {
		return nil, fmt.Errorf("%s: %w", p, err)
	}
	if len(data) > maxSpecBytes {
		return nil, fmt.Errorf("%s: file is over %d bytes", p, maxSpecBytes)
	}
	return data, nil
}

// Watch implements Source. A revision is delivered only when the content
// changed; events are batched by the hold-off timer, and the directory is
// re-read every PollInterval in case an event was lost (internal/specdir,
// the watcher every --spec-dir uses).
func (d *Dir) Watch(ctx context.Context, fn func(Revision)) error {
	poll := d.opts.PollInterval
	if poll <= 0 {
		poll = 30 * time.Second
	}
	w, err := specdir.Start(d.dir, specdir.Options{Log: d.log, HoldOff: d.opts.HoldOff, PollInterval: poll})
	if err != nil {
		return fmt.Errorf("file source: %w", err)
	}
	last := ""
	emit := func() {
		rev, err := d.Read()
		if err != nil {
			d.log.Error("reading specs; keeping the last revision", "error", err)
			return
		}
		if rev.ID == last {
			return
		}
		last = rev.ID
		d.log.Info("new revision", "revision", rev.ID, "files", len(rev.Specs))
		fn(rev)
	}
	emit()
	return w.Run(ctx, emit)
}

// ReadPaths reads files and directories (as a Dir reads them) into one
// revision, for offline tools such as `gatehouse spec render`.
func ReadPaths(paths ...string) (Revision, error) {
	var specs []Spec
	for _, p := range paths {
		st, err := os.Stat(p)
		if err != nil {
			return Revision{}, fmt.Errorf("reading specs: %w", err)
		}
		if st.IsDir() {
			d, err := NewDir(p, Options{})
			if err != nil {
				return Revision{}, err
			}
			rev, err := d.Read()
			if err != nil {
				return Revision{}, err
			}
			if len(rev.Specs) == 0 {
				return Revision{}, fmt.Errorf("%s holds no .yaml, .yml or .json files", p)
			}
			specs = append(specs, rev.Specs...)
			continue
		}
		data, err := readLimited(p)
		if err != nil {
			return Revision{}, fmt.Errorf("reading specs: %w", err)
		}
		specs = append(specs, Spec{Origin: p, Data: data})
	}
	return Revision{ID: RevisionID(specs), Specs: specs}, nil
}
