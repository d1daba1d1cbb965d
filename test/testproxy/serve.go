// Package testproxy runs a pgtenant proxy.Server for a test. It is apart from
// testpg, which packages below proxy (audit, policies) use.
package testproxy

import (
	"context"
	"errors"
	"net"
	"testing"
	"time"

	"github.com/pgtenant/pgtenant/proxy"
)

// Serve runs srv on a free loopback port until the test ends, then shuts it
// down (failing the test if that does not end cleanly), and returns the
// address clients connect to. Cleanups the test registered before Serve run
// after the shutdown.
func Serve(t testing.TB, srv *proxy.Server) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ln) }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := srv.Shutdown(ctx); err != nil {
			t.Errorf("shutdown: %v", err)
		}
		if err := <-done; !errors.Is(err, proxy.ErrServerClosed) {
			t.Errorf("serve: %v", err)
		}
	})
	return ln.Addr().String()
}
