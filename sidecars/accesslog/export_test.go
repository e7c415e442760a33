package accesslogsidecar

import "github.com/gatehouse-edge/gatehouse/accesslog"

// WrapStore makes Run wrap its store with f (the crash test holds store
// writes back in the child process so that entries are only spooled when
// it is killed).
func WrapStore(cfg *Config, f func(accesslog.Store) accesslog.Store) { cfg.wrapStore = f }
