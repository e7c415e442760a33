package accesslogsidecar

import (
	"context"
	"log/slog"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestStoreWriterSettingsAreChecked: a store writer count or store delay
// out of range is refused with the flag named, and no store is opened.
func TestStoreWriterSettingsAreChecked(t *testing.T) {
	for _, c := range []struct {
		cfg  Config
		want string
	}{
		{Config{StoreWriters: 9}, "--store-writers 9: want 1 to 8"},
		{Config{StoreWriters: -1}, "--store-writers -1: want 1 to 8"},
		{Config{StoreDelay: -time.Second}, "--store-delay -1s: want a duration of 0 or more"},
	} {
		path := filepath.Join(t.TempDir(), "logs.duckdb")
		c.cfg.Store = "duckdb:" + path
		s, _, err := openStore(context.Background(), c.cfg, slog.New(slog.DiscardHandler))
		if s != nil {
			s.Close()
		}
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("store writers %d, store delay %s: error %v, want %q", c.cfg.StoreWriters, c.cfg.StoreDelay, err, c.want)
		}
		if matches, _ := filepath.Glob(path + "*"); len(matches) != 0 {
			t.Errorf("store writers %d, store delay %s: created %v", c.cfg.StoreWriters, c.cfg.StoreDelay, matches)
		}
	}
}
