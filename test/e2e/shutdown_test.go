package e2e

import (
	"context"
	"testing"
	"time"
)

func TestShutdownLetsTransactionsFinishAndEndsSessionsWith57P01(t *testing.T) {
	e := startProxy(t, nil)
	idle, busy := e.connect(t, "acme"), e.connect(t, "globex")
	ctx := ctxT(t)
	tx, err := busy.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var n int
	if err := tx.QueryRow(ctx, "SELECT count(*) FROM items").Scan(&n); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() {
		sctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		done <- e.srv.Shutdown(sctx)
	}()
	// The idle session is told at once.
	_, err = idle.Exec(ctx, "SELECT 1")
	if pgCode(err) != "57P01" {
		t.Fatalf("idle session: got %v, want SQLSTATE 57P01", err)
	}
	// The open transaction may finish.
	if _, err := tx.Exec(ctx, "INSERT INTO items (name) VALUES ('during shutdown')"); err != nil {
		t.Fatalf("the open transaction was cut short: %v", err)
	}
	if err := tx.Rollback(ctx); err != nil {
		t.Fatal(err)
	}
	if err := <-done; err != nil {
		t.Fatalf("shutdown: %v", err)
	}
	if _, err := busy.Exec(ctx, "SELECT 1"); err == nil {
		t.Fatal("the session outlived the shutdown")
	}
}
