package accesslogsidecar

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"time"

	"github.com/fsnotify/fsnotify"
	"google.golang.org/protobuf/types/known/anypb"

	"github.com/gatehouse-edge/gatehouse/accesslog"
	"github.com/gatehouse-edge/gatehouse/contract"
	"github.com/gatehouse-edge/gatehouse/internal/xdsclient"
	"github.com/gatehouse-edge/gatehouse/spec"
)

// run keeps the settings current from the configured source until ctx
// ends. Without a source the platform defaults apply (every default
// secret header and query parameter masked, all headers kept).
func (s *settingsHolder) run(ctx context.Context, cfg Config) error {
	switch {
	case cfg.SpecDir != "" && cfg.XDSServer != "":
		return errors.New("accesslog: give --spec-dir or --xds-server, not both")
	case cfg.SpecDir != "":
		return s.watchDir(ctx, cfg.SpecDir)
	case cfg.XDSServer != "":
		if cfg.NodeID == "" {
			return errors.New("accesslog: --xds-server needs --node-id")
		}
		return xdsclient.Run(ctx, xdsclient.Config{
			Server: cfg.XDSServer, NodeID: cfg.NodeID, NodeCluster: cfg.NodeCluster,
			TypeURL: contract.ExtensionConfigType, Log: s.log, DialOptions: cfg.xdsDial,
		}, s.fromXDS)
	default:
		s.log.Warn("no --spec-dir or --xds-server: only the platform default redaction applies")
		s.set(nil)
		<-ctx.Done()
		return nil
	}
}

// CompileDir compiles the access-log settings of every spec under dir.
func CompileDir(dir string) ([]*accesslog.SpecSettings, error) {
	docs, err := spec.Load(dir)
	if err != nil {
		return nil, err
	}
	out := make([]*accesslog.SpecSettings, 0, len(docs))
	for _, d := range docs {
		ss, err := accesslog.Compile(&d.EdgeRoute)
		if err != nil {
			return nil, err
		}
		out = append(out, ss)
	}
	return out, nil
}

// watchDir loads dir and reloads it when files change; a bad change keeps
// the last good settings.
func (s *settingsHolder) watchDir(ctx context.Context, dir string) error {
	specs, err := CompileDir(dir)
	if err != nil {
		return fmt.Errorf("accesslog: --spec-dir %s: %w", dir, err)
	}
	s.set(specs)
	w, err := fsnotify.NewWatcher()
	if err != nil {
		return fmt.Errorf("accesslog: watching %s: %w", dir, err)
	}
	defer w.Close()
	if err := w.Add(dir); err != nil {
		return fmt.Errorf("accesslog: watching %s: %w", dir, err)
	}
	var reload <-chan time.Time
	for {
		select {
		case <-ctx.Done():
			return nil
		case ev, ok := <-w.Events:
			if !ok {
				return nil
			}
			if ev.Has(fsnotify.Chmod) && !ev.Has(fsnotify.Write) {
				continue
			}
			reload = time.After(200 * time.Millisecond) // let editors finish writing
		case err := <-w.Errors:
			s.log.Warn("spec-dir watch error", "dir", dir, "error", err)
		case <-reload:
			reload = nil
			specs, err := CompileDir(dir)
			if err != nil {
				s.lastOK.Set(0)
				s.log.Error("spec-dir reload failed; keeping the last good settings", "dir", dir, "error", err)
				continue
			}
			s.set(specs)
		}
	}
}

// fromXDS decodes every accesslog resource of a response; any bad one
// rejects the whole response (NACK) and the last good settings stay.
func (s *settingsHolder) fromXDS(version string, resources []*anypb.Any) error {
	specs, err := contract.Collect(resources, contract.AccessLogPrefix, contract.AccessLogSettingType, func(ss *accesslog.SpecSettings) string { return ss.Spec })
	if err != nil {
		s.lastOK.Set(0)
		s.log.Error("rejecting access-log settings from xDS", "version", version, "error", err)
		return err
	}
	sort.Slice(specs, func(i, j int) bool { return specs[i].Spec < specs[j].Spec })
	s.set(specs)
	return nil
}
