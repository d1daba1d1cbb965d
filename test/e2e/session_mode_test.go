package e2e

import (
	"testing"

	"github.com/pgtenant/pgtenant/poolmgr"
	"github.com/pgtenant/pgtenant/test/testpg"
)

func TestSessionPoolingKeepsSessionStateAndTheTenantContext(t *testing.T) {
	session := poolmgr.ModeSession
	e := startProxy(t, func(c *proxyConfig, _ *jwtConfig) {
		c.Pool.Size = 2
		c.Pool.Tenants = map[string]poolmgr.Override{"acme": {Mode: &session}}
	})
	acme, globex := e.connect(t, "acme"), e.connect(t, "globex")
	ctx := testpg.Context(t)
	pid := backendPID(t, acme)
	for _, sql := range []string{
		"CREATE TEMP TABLE notes (x int)",
		"INSERT INTO notes VALUES (1)",
		"SELECT pg_advisory_lock(99)",
		"LISTEN acme_events",
	} {
		if _, err := acme.Exec(ctx, sql); err != nil {
			t.Fatalf("session mode: %q: %v", sql, err)
		}
	}
	for i := 0; i < 3; i++ {
		var n int
		if err := acme.QueryRow(ctx, "SELECT count(*) FROM notes").Scan(&n); err != nil || n != 1 {
			t.Fatalf("temp table across transactions: %d, %v", n, err)
		}
		scanVisible(t, acme.QueryRow(ctx, visibleSQL)).check(t, "acme")
		if got := backendPID(t, acme); got != pid {
			t.Fatalf("session mode changed backends: %d then %d", pid, got)
		}
	}
	// SQL-level prepared statements live across transactions, and a
	// DEALLOCATE of one keeps the session on its backend.
	if _, err := acme.Exec(ctx, "PREPARE q AS SELECT 41 + 1"); err != nil {
		t.Fatal(err)
	}
	var n int
	if err := acme.QueryRow(ctx, "EXECUTE q").Scan(&n); err != nil || n != 42 {
		t.Fatalf("EXECUTE in a later transaction: %d, %v", n, err)
	}
	if _, err := acme.Exec(ctx, "DEALLOCATE q"); err != nil {
		t.Fatal(err)
	}
	if got := backendPID(t, acme); got != pid {
		t.Fatalf("DEALLOCATE moved the session: %d then %d", pid, got)
	}
	// The other tenant is still pooled by transaction, and refused as such.
	if _, err := globex.Exec(ctx, "CREATE TEMP TABLE notes (x int)"); testpg.SQLState(err) != "0A000" {
		t.Fatalf("transaction mode tenant: %v, want 0A000", err)
	}
	scanVisible(t, globex.QueryRow(ctx, visibleSQL)).check(t, "globex")
}
