package backend_test

import (
	"context"
	"path/filepath"
	"strings"
	"testing"

	"github.com/gatehouse-edge/gatehouse/broker/backend"
)

func TestRefsAreCheckedWithTheirName(t *testing.T) {
	ctx := context.Background()
	for _, ref := range []string{"", "postgres://x", "sqlite:", "dynamodb://a/b"} {
		if _, err := backend.OpenStore(ctx, ref, backend.Options{}); err == nil || !strings.Contains(err.Error(), ref) {
			t.Errorf("OpenStore(%q): err = %v, want one naming the reference", ref, err)
		}
	}
	for _, ref := range []string{"", "kafka://x", "sqlite:"} {
		if _, err := backend.OpenQueue(ctx, ref, backend.Options{}); err == nil || !strings.Contains(err.Error(), ref) {
			t.Errorf("OpenQueue(%q): err = %v, want one naming the reference", ref, err)
		}
	}
}

func TestSQLiteRefsCreateTheDirectory(t *testing.T) {
	ctx := context.Background()
	dir := filepath.Join(t.TempDir(), "nested", "data")
	s, err := backend.OpenStore(ctx, "sqlite:"+filepath.Join(dir, "s.db"), backend.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if err := s.Ping(ctx); err != nil {
		t.Fatal(err)
	}
	q, err := backend.OpenQueue(ctx, "sqlite:"+filepath.Join(dir, "q.db"), backend.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer q.Close()
	if err := q.Send(ctx, []byte(`{"op":"a","instance":"b"}`)); err != nil {
		t.Fatal(err)
	}
}
