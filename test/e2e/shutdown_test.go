package e2e

import (
	"context"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/pgtenant/pgtenant/test/testpg"
)

func TestShutdownLetsTransactionsFinishAndEndsSessionsWith57P01(t *testing.T) {
	e := startProxy(t, nil)
	idle, busy := hijack(t, e.dsn(token(t, "acme"))), e.connect(t, "globex")
	ctx := testpg.Context(t)
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
	// The idle session is told at once, without having to ask.
	m, err := idle.fe.Receive()
	if er, ok := m.(*pgproto3.ErrorResponse); err != nil || !ok || er.Code != "57P01" || er.Severity != "FATAL" {
		t.Fatalf("idle session: got %#v, %v; want FATAL 57P01", m, err)
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
