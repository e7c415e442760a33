package broker

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/gatehouse-edge/gatehouse/broker/queue"
	"github.com/gatehouse-edge/gatehouse/broker/queue/sqlitequeue"
	"github.com/gatehouse-edge/gatehouse/broker/store"
	"github.com/gatehouse-edge/gatehouse/broker/store/sqlitestore"
)

// Embedded file names under a data directory.
const (
	EmbeddedStoreFile = "broker-store.db"
	EmbeddedQueueFile = "broker-queue.db"
)

// OpenEmbedded opens (creating) the SQLite store and queue under dataDir,
// for running broker.Run, worker.Run and the control plane (its route-store
// source, controlplane/source.NewFeed, and ReportPublished) in one process, as `gatehouse dev` does: pass them as
// Config.Store/Queue and worker.Config.Store/Queue. visibility is the
// queue's visibility timeout (0: 30s). Close both when done.
func OpenEmbedded(ctx context.Context, dataDir string, visibility time.Duration) (store.Store, queue.Queue, error) {
	if err := os.MkdirAll(dataDir, 0o750); err != nil {
		return nil, nil, fmt.Errorf("broker: data directory %s: %w", dataDir, err)
	}
	s, err := sqlitestore.Open(ctx, filepath.Join(dataDir, EmbeddedStoreFile))
	if err != nil {
		return nil, nil, err
	}
	q, err := sqlitequeue.Open(ctx, filepath.Join(dataDir, EmbeddedQueueFile), sqlitequeue.Options{Visibility: visibility})
	if err != nil {
		s.Close()
		return nil, nil, err
	}
	return s, q, nil
}
