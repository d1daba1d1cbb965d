package e2e

import (
	"context"
	"testing"

	"github.com/pgtenant/pgtenant/test/testpg"
)

// After a column is added, PostgreSQL refuses a statement prepared before
// with "cached plan must not change result type". pgtenant prepares it again
// and reruns the group when the client asks for the row description with
// the execution (so it cannot be misled by an old one) and nothing of the
// group has run; otherwise the client gets PostgreSQL's error.
func TestAStatementWhoseResultTypeChangedIsPreparedAgain(t *testing.T) {
	e := startProxy(t, func(c *proxyConfig, _ *jwtConfig) { c.Pool.Size = 1 })
	ctx := testpg.Context(t)
	su := superuser(t)
	if _, err := su.Exec(ctx, `DROP TABLE IF EXISTS replan_t; CREATE TABLE replan_t (a int);
		INSERT INTO replan_t VALUES (1); GRANT SELECT ON replan_t TO `+appRole); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _, _ = su.Exec(context.Background(), "DROP TABLE replan_t") })
	pc := e.connect(t, "acme").PgConn()
	if _, err := pc.Prepare(ctx, "s", "SELECT * FROM replan_t", nil); err != nil {
		t.Fatal(err)
	}
	if res := pc.ExecPrepared(ctx, "s", nil, nil, nil).Read(); res.Err != nil || len(res.FieldDescriptions) != 1 {
		t.Fatalf("before the change: %v, %d columns", res.Err, len(res.FieldDescriptions))
	}
	if _, err := su.Exec(ctx, "ALTER TABLE replan_t ADD COLUMN b text DEFAULT 'new'"); err != nil {
		t.Fatal(err)
	}
	res := pc.ExecPrepared(ctx, "s", nil, nil, nil).Read()
	if res.Err != nil || len(res.FieldDescriptions) != 2 || len(res.Rows) != 1 || string(res.Rows[0][1]) != "new" {
		t.Fatalf("after the change: %v, %d columns, rows %q; want the new row type", res.Err, len(res.FieldDescriptions), res.Rows)
	}

	// In a transaction block the error is PostgreSQL's: the block is
	// aborted, and nothing can be run again behind the client's back.
	if _, err := su.Exec(ctx, "ALTER TABLE replan_t ADD COLUMN c int"); err != nil {
		t.Fatal(err)
	}
	if _, err := pc.Exec(ctx, "BEGIN").ReadAll(); err != nil {
		t.Fatal(err)
	}
	if res := pc.ExecPrepared(ctx, "s", nil, nil, nil).Read(); testpg.SQLState(res.Err) != "0A000" {
		t.Fatalf("in a transaction block: %v, want 0A000", res.Err)
	}
	if _, err := pc.Exec(ctx, "ROLLBACK").ReadAll(); err != nil {
		t.Fatal(err)
	}

	// A client that binds with the description it cached (pgx's statement
	// cache does) would misread the new rows: it gets PostgreSQL's error.
	sd, err := pc.Prepare(ctx, "s2", "SELECT * FROM replan_t", nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := su.Exec(ctx, "ALTER TABLE replan_t ADD COLUMN d int"); err != nil {
		t.Fatal(err)
	}
	if res := pc.ExecStatement(ctx, sd, nil, nil, nil).Read(); testpg.SQLState(res.Err) != "0A000" {
		t.Fatalf("binding with a cached description: %v, want 0A000", res.Err)
	}
	if res := pc.ExecPrepared(ctx, "s2", nil, nil, nil).Read(); res.Err != nil || len(res.FieldDescriptions) != 4 {
		t.Fatalf("the same statement with a Describe: %v, %d columns", res.Err, len(res.FieldDescriptions))
	}
}
