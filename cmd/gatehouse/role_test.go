package main

import (
	"context"
	"net/http"
	"testing"
	"time"
)

// startRole runs `gatehouse args...` until the test ends (and checks it
// then stops cleanly), and waits until its admin server at adminAddr
// answers /readyz with 200.
func startRole(t *testing.T, adminAddr string, args ...string) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		root := newRootCmd()
		root.SetArgs(args)
		done <- root.ExecuteContext(ctx)
	}()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("gatehouse %s: %v", args[0], err)
			}
		case <-time.After(15 * time.Second):
			t.Errorf("gatehouse %s did not stop", args[0])
		}
	})
	deadline := time.Now().Add(15 * time.Second)
	for {
		resp, err := http.Get("http://" + adminAddr + "/readyz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("gatehouse %s: admin %s not ready: %v", args[0], adminAddr, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
