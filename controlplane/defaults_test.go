package controlplane_test

import (
	"context"
	"testing"

	"github.com/gatehouse-edge/gatehouse/controlplane"
	"github.com/gatehouse-edge/gatehouse/controlplane/source"
)

// TestNewDefaultsLogAndRegistry: like every role, the control plane runs
// without a logger or a registry (a discarding logger and a new registry)
// instead of refusing to start.
func TestNewDefaultsLogAndRegistry(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	src := source.Func(func(ctx context.Context, _ func(source.Revision)) error { <-ctx.Done(); return nil })
	cp, err := controlplane.New(ctx, controlplane.Config{Source: src})
	if err != nil {
		t.Fatalf("New without Log and Registry: %v", err)
	}
	if cp.XDS() == nil || cp.Publisher() == nil {
		t.Fatal("New built no xDS server or publisher")
	}
}
