package specdir_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/gatehouse-edge/gatehouse/internal/specdir"
	"github.com/gatehouse-edge/gatehouse/spec"
)

const holdOff = 50 * time.Millisecond

// watch runs a Watcher on dir until the test ends and returns a channel
// that receives one value per reload.
func watch(t *testing.T, dir string, o specdir.Options) <-chan struct{} {
	t.Helper()
	if o.HoldOff == 0 {
		o.HoldOff = holdOff
	}
	if o.PollInterval == 0 {
		o.PollInterval = -1
	}
	w, err := specdir.Start(dir, o)
	if err != nil {
		t.Fatal(err)
	}
	reloads := make(chan struct{}, 100)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- w.Run(ctx, func() { reloads <- struct{}{} }) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	})
	return reloads
}

// expectReloads waits for exactly n reloads: n within a generous window,
// then none for a few hold-offs.
func expectReloads(t *testing.T, reloads <-chan struct{}, n int) {
	t.Helper()
	for i := 0; i < n; i++ {
		select {
		case <-reloads:
		case <-time.After(10 * time.Second):
			t.Fatalf("reload %d of %d did not come", i+1, n)
		}
	}
	select {
	case <-reloads:
		t.Fatalf("more than %d reload(s)", n)
	case <-time.After(6 * holdOff):
	}
}

func write(t *testing.T, path, data string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(data), 0o644); err != nil {
		t.Fatal(err)
	}
}

func TestWatchEachChangeIsOneReloadAfterTheHoldOff(t *testing.T) {
	dir := t.TempDir()
	a := filepath.Join(dir, "a.yaml")
	reloads := watch(t, dir, specdir.Options{})
	expectReloads(t, reloads, 0) // starting is not a change

	write(t, a, "one")
	expectReloads(t, reloads, 1) // create (create + write events: one reload)

	write(t, a, "two")
	expectReloads(t, reloads, 1) // modify

	b := filepath.Join(dir, "b.yml")
	if err := os.Rename(a, b); err != nil {
		t.Fatal(err)
	}
	expectReloads(t, reloads, 1) // rename

	if err := os.Remove(b); err != nil {
		t.Fatal(err)
	}
	expectReloads(t, reloads, 1) // delete
}

func TestWatchCoalescesABurst(t *testing.T) {
	dir := t.TempDir()
	reloads := watch(t, dir, specdir.Options{HoldOff: 300 * time.Millisecond})
	for i := 0; i < 20; i++ {
		write(t, filepath.Join(dir, "r"+string(rune('a'+i))+".json"), "{}")
	}
	expectReloads(t, reloads, 1)
}

func TestWatchIgnoresDotFilesAndOtherFiles(t *testing.T) {
	dir := t.TempDir()
	reloads := watch(t, dir, specdir.Options{})
	write(t, filepath.Join(dir, ".a.yaml.swp"), "x")
	write(t, filepath.Join(dir, ".hidden.yaml"), "x")
	write(t, filepath.Join(dir, "notes.txt"), "x")
	write(t, filepath.Join(dir, "README"), "x")
	if err := os.Mkdir(filepath.Join(dir, "sub"), 0o755); err != nil {
		t.Fatal(err)
	}
	expectReloads(t, reloads, 0)
	// Attribute-only changes of a spec file are not content changes.
	a := filepath.Join(dir, "a.yaml")
	write(t, a, "x")
	expectReloads(t, reloads, 1)
	if err := os.Chmod(a, 0o600); err != nil {
		t.Fatal(err)
	}
	expectReloads(t, reloads, 0)
}

func TestWatchPollCatchesWhatNotifyMisses(t *testing.T) {
	dir := t.TempDir()
	a := filepath.Join(dir, "a.yaml")
	write(t, a, "one")
	reloads := watch(t, dir, specdir.Options{NoNotify: true, PollInterval: 40 * time.Millisecond})
	expectReloads(t, reloads, 0) // polls that find nothing new reload nothing
	write(t, a, "one plus")
	expectReloads(t, reloads, 1)
	write(t, filepath.Join(dir, "notes.txt"), "x")
	expectReloads(t, reloads, 0)
	if err := os.Remove(a); err != nil {
		t.Fatal(err)
	}
	expectReloads(t, reloads, 1)
}

// A mounted ConfigMap changes by swapping the "..data" symlink its files
// point through; the spec files' own names never see an event.
func TestWatchSeesAConfigMapSwap(t *testing.T) {
	for _, notify := range []bool{true, false} {
		t.Run(map[bool]string{true: "fsnotify", false: "poll"}[notify], func(t *testing.T) {
			dir := t.TempDir()
			for _, v := range []string{"..v1", "..v2"} {
				if err := os.Mkdir(filepath.Join(dir, v), 0o755); err != nil {
					t.Fatal(err)
				}
			}
			write(t, filepath.Join(dir, "..v1", "a.yaml"), "one")
			write(t, filepath.Join(dir, "..v2", "a.yaml"), "two, longer")
			if err := os.Symlink("..v1", filepath.Join(dir, "..data")); err != nil {
				t.Fatal(err)
			}
			if err := os.Symlink(filepath.Join("..data", "a.yaml"), filepath.Join(dir, "a.yaml")); err != nil {
				t.Fatal(err)
			}
			o := specdir.Options{NoNotify: !notify}
			if !notify {
				o.PollInterval = 40 * time.Millisecond
			}
			reloads := watch(t, dir, o)
			if err := os.Symlink("..v2", filepath.Join(dir, "..data_tmp")); err != nil {
				t.Fatal(err)
			}
			if err := os.Rename(filepath.Join(dir, "..data_tmp"), filepath.Join(dir, "..data")); err != nil {
				t.Fatal(err)
			}
			expectReloads(t, reloads, 1)
		})
	}
}

func TestStartRefusesWhatIsNotADirectory(t *testing.T) {
	dir := t.TempDir()
	f := filepath.Join(dir, "a.yaml")
	write(t, f, "x")
	for _, p := range []string{f, filepath.Join(dir, "missing")} {
		if _, err := specdir.Start(p, specdir.Options{}); err == nil || !strings.Contains(err.Error(), p) {
			t.Errorf("Start(%s) = %v, want an error naming it", p, err)
		}
	}
}

const route = `apiVersion: gatehouse/v1
kind: EdgeRoute
metadata:
  name: NAME
  team: t
spec:
  hosts: [NAME.example.com]
  upstreams:
    - name: web
      dns: web.internal:8080
  routes:
    - name: all
      match: {pathPrefix: /}
      upstream: web
`

func TestLoadCompiled(t *testing.T) {
	dir := t.TempDir()
	write(t, filepath.Join(dir, "b.yaml"), strings.ReplaceAll(route, "NAME", "beta"))
	write(t, filepath.Join(dir, "a.yaml"), strings.ReplaceAll(route, "NAME", "alpha"))
	write(t, filepath.Join(dir, ".ignored.yaml"), "not: a spec")
	write(t, filepath.Join(dir, "notes.txt"), "not a spec")
	names, err := specdir.LoadCompiled(dir, func(r *spec.EdgeRoute) (string, error) { return r.Metadata.Name, nil })
	if err != nil {
		t.Fatal(err)
	}
	if strings.Join(names, ",") != "alpha,beta" {
		t.Fatalf("compiled %v, want alpha,beta in file order", names)
	}

	// A compile error names the file and fails the whole directory.
	_, err = specdir.LoadCompiled(dir, func(r *spec.EdgeRoute) (string, error) {
		if r.Metadata.Name == "beta" {
			return "", errors.New("no beta here")
		}
		return r.Metadata.Name, nil
	})
	if err == nil || !strings.Contains(err.Error(), "b.yaml") || !strings.Contains(err.Error(), "no beta here") {
		t.Fatalf("compile error = %v, want it to name b.yaml and the reason", err)
	}

	// An invalid spec is a validation error with its place.
	write(t, filepath.Join(dir, "c.yaml"), "apiVersion: gatehouse.dev/v1\nkind: EdgeRoute\n")
	if _, err := specdir.LoadCompiled(dir, func(r *spec.EdgeRoute) (string, error) { return "", nil }); err == nil || !strings.Contains(err.Error(), "c.yaml") {
		t.Fatalf("invalid spec: %v, want an error naming c.yaml", err)
	}
}

func TestIsSpecFile(t *testing.T) {
	for name, want := range map[string]bool{
		"a.yaml": true, "a.yml": true, "a.json": true, "A.YAML": true,
		".a.yaml": false, "..data": false, "a.txt": false, "a": false, "a.yaml~": false,
	} {
		if got := spec.IsSpecFile(name); got != want {
			t.Errorf("IsSpecFile(%q) = %v, want %v", name, got, want)
		}
	}
}
