package sqlitequeue_test

import (
	"context"
	"path/filepath"
	"testing"
	"time"

	"github.com/gatehouse-edge/gatehouse/broker/queue/queuetest"
	"github.com/gatehouse-edge/gatehouse/broker/queue/sqlitequeue"
)

func TestConformance(t *testing.T) {
	queuetest.Run(t, func(t *testing.T) queuetest.Backend {
		vis := time.Second
		q, err := sqlitequeue.Open(context.Background(), filepath.Join(t.TempDir(), "queue.db"), sqlitequeue.Options{Visibility: vis})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { q.Close() })
		return queuetest.Backend{Queue: q, Visibility: vis, DeadLetters: func(ctx context.Context) ([][]byte, error) {
			ds, err := q.DeadLetters(ctx, 10)
			var out [][]byte
			for _, d := range ds {
				out = append(out, d.Body)
			}
			return out, err
		}}
	})
}
