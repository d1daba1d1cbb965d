package e2e

import (
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/pgtenant/pgtenant/test/testpg"
)

func TestStateThatCannotCrossClientsIsRefusedWith0A000(t *testing.T) {
	e := startProxy(t, func(c *proxyConfig, _ *jwtConfig) { c.Pool.Size = 1 })
	conn := e.connect(t, "acme")
	ctx := testpg.Context(t)
	refused := []struct {
		sql  string
		args []any
	}{
		{"CREATE TEMP TABLE scratch (x int)", nil},
		{"create temporary table scratch2 as select 1", nil},
		{"SELECT pg_advisory_lock(42)", nil},
		{"SELECT pg_try_advisory_lock($1::bigint)", []any{int64(7)}},
		{"DECLARE c CURSOR WITH HOLD FOR SELECT 1", nil},
		{"LISTEN tenant_events", nil},
		{"SET SESSION AUTHORIZATION postgres", nil},
	}
	for _, r := range refused {
		for _, mode := range []pgx.QueryExecMode{pgx.QueryExecModeSimpleProtocol, pgx.QueryExecModeCacheStatement} {
			args := append([]any{mode}, r.args...)
			_, err := conn.Exec(ctx, r.sql, args...)
			if testpg.SQLState(err) != "0A000" {
				t.Errorf("%q (%v): got %v, want SQLSTATE 0A000", r.sql, mode, err)
			}
		}
	}
	// What stays inside the transaction is fine.
	for _, sql := range []string{
		"BEGIN; CREATE TEMP TABLE t1 (x int) ON COMMIT DROP; INSERT INTO t1 VALUES (1); COMMIT",
		"SELECT pg_advisory_xact_lock(42)",
		"BEGIN; DECLARE c CURSOR FOR SELECT 1; FETCH c; COMMIT",
		"SELECT 'create temp table is only text here'",
	} {
		if _, err := conn.PgConn().Exec(ctx, sql).ReadAll(); err != nil {
			t.Errorf("%q: %v", sql, err)
		}
	}
	// A refusal inside a transaction block aborts it, as any error does.
	tx, err := conn.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tx.Exec(ctx, "LISTEN x"); testpg.SQLState(err) != "0A000" {
		t.Fatalf("LISTEN in a transaction: %v", err)
	}
	if _, err := tx.Exec(ctx, "SELECT 1"); testpg.SQLState(err) != "25P02" {
		t.Fatalf("after the refusal: %v, want 25P02", err)
	}
	_ = tx.Rollback(ctx)
	// Nothing was left on the tenant's only backend.
	var temps, locks int
	if err := conn.QueryRow(ctx, "SELECT (SELECT count(*) FROM pg_class WHERE relpersistence = 't'), (SELECT count(*) FROM pg_locks WHERE locktype = 'advisory')").Scan(&temps, &locks); err != nil {
		t.Fatal(err)
	}
	if temps != 0 || locks != 0 {
		t.Fatalf("state left behind: %d temporary relations, %d advisory locks", temps, locks)
	}
}
