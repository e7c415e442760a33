package authzsidecar

import (
	"context"
	"crypto/sha256"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"google.golang.org/protobuf/types/known/anypb"

	"github.com/gatehouse-edge/gatehouse/authz"
	"github.com/gatehouse-edge/gatehouse/contract"
	"github.com/gatehouse-edge/gatehouse/spec"
)

// LoadSpecDir loads, validates and compiles every spec in dir, through the
// same authz.Compile the control plane uses.
func LoadSpecDir(dir string) ([]*authz.SpecPolicy, error) {
	docs, err := spec.Load(dir)
	if err != nil {
		return nil, fmt.Errorf("spec dir %s: %w", dir, err)
	}
	out := make([]*authz.SpecPolicy, 0, len(docs))
	for _, d := range docs {
		p, err := authz.Compile(&d.EdgeRoute)
		if err != nil {
			return nil, fmt.Errorf("spec dir %s: %s: %w", dir, d.File, err)
		}
		out = append(out, p)
	}
	return out, nil
}

// PoliciesFromResources decodes the authz policies among TypedExtensionConfig
// resources: those named contract.AuthzPrefix+<spec>; other concerns'
// resources are skipped. Any undecodable authz resource fails the whole set
// (the caller NACKs and keeps its last good policies).
func PoliciesFromResources(resources []*anypb.Any) ([]*authz.SpecPolicy, error) {
	return contract.Collect(resources, contract.AuthzPrefix, contract.AuthzPolicyType, func(p *authz.SpecPolicy) string { return p.Spec })
}

// dirState fingerprints the spec files of dir (names, sizes, mtimes).
func dirState(dir string) (string, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return "", err
	}
	var lines []string
	for _, e := range entries {
		if e.IsDir() || strings.HasPrefix(e.Name(), ".") {
			continue
		}
		switch strings.ToLower(filepath.Ext(e.Name())) {
		case ".yaml", ".yml", ".json":
		default:
			continue
		}
		info, err := e.Info()
		if err != nil {
			return "", err
		}
		lines = append(lines, fmt.Sprintf("%s %d %d", e.Name(), info.Size(), info.ModTime().UnixNano()))
	}
	sort.Strings(lines)
	sum := sha256.Sum256([]byte(strings.Join(lines, "\n")))
	return string(sum[:]), nil
}

// watchSpecDir reloads the specs of dir when its files change, until ctx
// ends. last is the fingerprint taken before the policies in force were
// loaded, so a change made between that load and this loop's first tick
// is still seen. A reload that fails is logged and the last good policies
// stay.
func watchSpecDir(ctx context.Context, dir, last string, every time.Duration, update func([]*authz.SpecPolicy) error, log *slog.Logger) {
	if every == 0 {
		every = 2 * time.Second
	}
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		st, err := dirState(dir)
		if err != nil || st == last {
			continue
		}
		last = st
		ps, err := LoadSpecDir(dir)
		if err == nil {
			err = update(ps)
		}
		if err != nil {
			log.Warn("spec dir reload failed; keeping the last good policies", "spec_dir", dir, "error", err)
			continue
		}
		log.Info("spec dir reloaded", "spec_dir", dir, "specs", len(ps))
	}
}
