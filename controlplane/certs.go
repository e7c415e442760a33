package controlplane

import (
	"context"
	"crypto/sha256"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/gatehouse-edge/gatehouse/controlplane/compile"
)

// certDirState fingerprints the certificate directory: every visible
// file's name, size and modification time, following symlinks (so a
// Kubernetes secret volume's atomic swap counts as a change).
func certDirState(dir string) (string, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return "", err
	}
	var lines []string
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), ".") {
			continue
		}
		fi, err := os.Stat(filepath.Join(dir, e.Name()))
		if err != nil || fi.IsDir() {
			continue
		}
		lines = append(lines, fmt.Sprintf("%s %d %d", e.Name(), fi.Size(), fi.ModTime().UnixNano()))
	}
	sort.Strings(lines)
	sum := sha256.Sum256([]byte(strings.Join(lines, "\n")))
	return string(sum[:]), nil
}

// watchCerts polls the certificate directory and wakes the loop when its
// files change, so renewed certificates reach Envoy without a spec change
// or a restart.
func (cp *ControlPlane) watchCerts(ctx context.Context, every time.Duration) {
	dir := cp.cfg.Compile.CertDir
	last, _ := certDirState(dir)
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		st, err := certDirState(dir)
		if err != nil {
			cp.log.Warn("reading the certificate directory", "cert_dir", dir, "error", err)
			continue
		}
		if st == last {
			continue
		}
		last = st
		cp.log.Info("certificate directory changed; recompiling", "cert_dir", dir)
		select {
		case cp.certs <- struct{}{}:
		default:
		}
	}
}

// certsChanged (loop goroutine) recompiles the last revision with a fresh
// compiler, which reads every certificate again. Versions are derived
// from content, so only the node groups whose secrets changed get a new
// one. A renewal that breaks a published spec (a mismatched or unreadable
// pair) is refused as a whole: the fleet keeps the certificates it has,
// and the error is logged and shown in /debug/specs until the files are
// fixed.
func (cp *ControlPlane) certsChanged() {
	if cp.lastRev == nil {
		return
	}
	comp, err := compile.New(cp.cfg.Compile)
	if err != nil {
		cp.log.Error("certificate directory changed, but the compiler could not be rebuilt; keeping the current certificates", "error", err)
		return
	}
	published := map[string]bool{}
	for _, s := range cp.State().Specs {
		if s.Published {
			published[s.Name] = true
		}
	}
	var broken []string
	res := comp.Compile(*cp.lastRev)
	for _, s := range res.Failed() {
		if published[s.Name] {
			broken = append(broken, s.Name)
			cp.log.Error("renewed certificate refused: it would take a published spec down; the fleet keeps the current certificates", "spec", s.Name, "error", s.Err)
		}
	}
	cp.stateMu.Lock()
	cp.state.CertError = ""
	if len(broken) > 0 {
		cp.state.CertError = fmt.Sprintf("certificate directory change refused: it breaks published specs %s (see the log); the fleet keeps the current certificates", strings.Join(broken, ", "))
	}
	cp.stateMu.Unlock()
	if len(broken) > 0 {
		cp.metrics.certRefusals.Inc()
		return
	}
	cp.compiler = comp
	cp.pendingMu.Lock()
	if cp.pending == nil {
		rev := *cp.lastRev
		cp.pending = &rev
	}
	cp.pendingMu.Unlock()
	select {
	case cp.notify <- struct{}{}:
	default:
	}
}
