package accesslogsidecar

import (
	"errors"
	"fmt"
	"sort"

	"google.golang.org/protobuf/types/known/anypb"

	"github.com/gatehouse-edge/gatehouse/accesslog"
	"github.com/gatehouse-edge/gatehouse/contract"
	"github.com/gatehouse-edge/gatehouse/internal/sidecar"
	"github.com/gatehouse-edge/gatehouse/internal/specdir"
)

// sources are where the settings come from: a spec directory or the
// control plane, never both. Without a source the platform defaults apply
// (every default secret header and query parameter masked, all headers
// kept) and the settings count as loaded.
func (s *settingsHolder) sources(cfg Config) ([]sidecar.Dir, sidecar.XDS, error) {
	switch {
	case cfg.SpecDir != "" && cfg.XDSServer != "":
		return nil, sidecar.XDS{}, errors.New("accesslog: give --spec-dir or --xds-server, not both")
	case cfg.SpecDir != "":
		return []sidecar.Dir{{Path: cfg.SpecDir, Source: "spec_dir", Reload: func() error { return s.loadDir(cfg.SpecDir) }}}, sidecar.XDS{}, nil
	case cfg.XDSServer != "":
		if cfg.NodeID == "" {
			return nil, sidecar.XDS{}, errors.New("accesslog: --xds-server needs --node-id")
		}
		return nil, sidecar.XDS{Server: cfg.XDSServer, NodeID: cfg.NodeID, NodeCluster: cfg.NodeCluster,
			Subscriptions: []sidecar.Subscription{{TypeURL: contract.ExtensionConfigType, Handler: s.fromXDS}}}, nil
	default:
		s.log.Warn("no --spec-dir or --xds-server: only the platform default redaction applies")
		s.set(nil)
		return nil, sidecar.XDS{}, nil
	}
}

// CompileDir compiles the access-log settings of every spec under dir.
func CompileDir(dir string) ([]*accesslog.SpecSettings, error) {
	return specdir.LoadCompiled(dir, accesslog.Compile)
}

// loadDir (re)loads dir; a bad change keeps the last good settings.
func (s *settingsHolder) loadDir(dir string) error {
	specs, err := CompileDir(dir)
	if err != nil {
		s.lastOK.Set(0)
		return fmt.Errorf("accesslog: --spec-dir: %w", err)
	}
	s.set(specs)
	return nil
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
