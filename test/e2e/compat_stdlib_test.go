package e2e

import (
	"bytes"
	"context"
	"database/sql"
	"errors"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/stdlib"

	"github.com/pgtenant/pgtenant/test/testpg"
)

func TestCompatDatabaseSQLSeesOnlyItsTenantAndSurvivesCancelCopyAndPreparedStatements(t *testing.T) {
	t.Parallel()
	e := startProxy(t, nil)
	for _, org := range compatOrgs {
		t.Run(org, func(t *testing.T) {
			cfg, err := pgx.ParseConfig(e.dsn(token(t, org)))
			if err != nil {
				t.Fatal(err)
			}
			cancelOnContextDone(&cfg.Config)
			db := stdlib.OpenDB(*cfg)
			defer db.Close()
			// One connection: every step, the cancel included, happens on
			// the same session.
			db.SetMaxOpenConns(1)
			ctx := testpg.Context(t)
			want := tenantRows[org]

			sqlVisible(t, ctx, db, org)

			// A prepared statement used 40 times, alternately in a
			// transaction (tx.Stmt) and outside one.
			stmt, err := db.PrepareContext(ctx, "SELECT count(*), current_setting('app.current_org') FROM items WHERE name <> $1")
			if err != nil {
				t.Fatal(err)
			}
			defer stmt.Close()
			for i := 0; i < 40; i++ {
				var n int
				var s string
				if i%2 == 0 {
					tx, err := db.BeginTx(ctx, nil)
					if err != nil {
						t.Fatal(err)
					}
					err = tx.StmtContext(ctx, stmt).QueryRowContext(ctx, "nothing").Scan(&n, &s)
					if cerr := tx.Commit(); err == nil {
						err = cerr
					}
					if err != nil {
						t.Fatalf("execution %d in a transaction: %v", i, err)
					}
				} else if err := stmt.QueryRowContext(ctx, "nothing").Scan(&n, &s); err != nil {
					t.Fatalf("execution %d: %v", i, err)
				}
				if n != len(want) || s != org {
					t.Fatalf("execution %d: got (%d, %q), want (%d, %q)", i, n, s, len(want), org)
				}
			}

			// CRUD with parameters in a transaction that is rolled back.
			marker := "compat-database-sql-" + org
			tx, err := db.BeginTx(ctx, nil)
			if err != nil {
				t.Fatal(err)
			}
			var got string
			if err := tx.QueryRowContext(ctx, "INSERT INTO items (name) VALUES ($1) RETURNING org_id", marker).Scan(&got); err != nil || got != org {
				t.Fatalf("insert took org_id %q from the context (%v), want %q", got, err, org)
			}
			for _, c := range []struct {
				sql  string
				args []any
				want int64
			}{
				{"UPDATE items SET name = $1 WHERE name = $2", []any{marker + "-updated", marker}, 1},
				{"UPDATE items SET name = name WHERE org_id <> $1", []any{org}, 0},
				{"DELETE FROM items WHERE org_id <> $1", []any{org}, 0},
				{"DELETE FROM items WHERE name = $1", []any{marker + "-updated"}, 1},
			} {
				res, err := tx.ExecContext(ctx, c.sql, c.args...)
				if err != nil {
					t.Fatalf("%s: %v", c.sql, err)
				}
				if n, _ := res.RowsAffected(); n != c.want {
					t.Fatalf("%s changed %d rows, want %d", c.sql, n, c.want)
				}
			}
			if _, err := tx.ExecContext(ctx, "INSERT INTO items (name) VALUES ($1)", marker); err != nil {
				t.Fatal(err)
			}
			if err := tx.Rollback(); err != nil {
				t.Fatal(err)
			}
			var n int
			if err := db.QueryRowContext(ctx, "SELECT count(*) FROM items WHERE name LIKE $1", marker+"%").Scan(&n); err != nil || n != 0 {
				t.Fatalf("%d rows of a rolled-back transaction are visible (%v)", n, err)
			}

			// An error aborts a transaction; rolling back makes the session usable.
			tx, err = db.BeginTx(ctx, nil)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := tx.ExecContext(ctx, "SELECT 1 / $1::int", 0); testpg.SQLState(err) != "22012" {
				t.Fatalf("division by zero: %v, want 22012", err)
			}
			if _, err := tx.ExecContext(ctx, "SELECT 1"); testpg.SQLState(err) != "25P02" {
				t.Fatalf("in an aborted transaction: %v, want 25P02", err)
			}
			if err := tx.Rollback(); err != nil {
				t.Fatal(err)
			}

			// COPY: database/sql has no API for it, the driver's connection has.
			conn, err := db.Conn(ctx)
			if err != nil {
				t.Fatal(err)
			}
			err = conn.Raw(func(dc any) error {
				pc := dc.(*stdlib.Conn).Conn()
				pgxCopy(t, ctx, pc, org)
				var out bytes.Buffer
				if _, err := pc.PgConn().CopyTo(ctx, &out, "COPY (SELECT org_id FROM items) TO STDOUT"); err != nil {
					return err
				}
				if got := strings.Count(out.String(), org+"\n"); got != len(want) || out.Len() != len(want)*(len(org)+1) {
					return errors.New("COPY TO returned rows of another tenant: " + out.String())
				}
				return nil
			})
			if err != nil {
				t.Fatal(err)
			}
			if err := conn.Close(); err != nil {
				t.Fatal(err)
			}

			cancelAfter(t, org, func(ctx context.Context) error {
				_, err := db.ExecContext(ctx, "SELECT pg_sleep(30)")
				return err
			})
			sqlVisible(t, ctx, db, org)
			if s := db.Stats(); s.OpenConnections != 1 {
				t.Errorf("%d connections are open, want the one session that did everything", s.OpenConnections)
			}
		})
	}
}

// sqlVisible checks the tenant setting and that only org's rows are visible.
func sqlVisible(t *testing.T, ctx context.Context, db *sql.DB, org string) {
	t.Helper()
	var s, orgs string
	if err := db.QueryRowContext(ctx, visibleSQL+" WHERE id > $1", 0).Scan(&s, &orgs); err != nil {
		t.Fatal(err)
	}
	parseVisible(s, orgs).check(t, org)
}
