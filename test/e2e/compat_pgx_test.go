package e2e

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgconn/ctxwatch"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/pgtenant/pgtenant/test/testpg"
)

// cancelOnContextDone makes pgx answer a canceled context the way libpq
// programs do: with a CancelRequest, so the query fails with 57014 and the
// connection stays usable. (pgx's default closes the socket instead.)
func cancelOnContextDone(c *pgconn.Config) {
	c.BuildContextWatcherHandler = func(pc *pgconn.PgConn) ctxwatch.Handler {
		return &pgconn.CancelRequestContextWatcherHandler{Conn: pc, DeadlineDelay: 5 * time.Second}
	}
}

// cancelAfter runs query with a context canceled after 300ms and checks that
// it fails with 57014 well before pg_sleep(30) would end.
func cancelAfter(t *testing.T, who string, run func(ctx context.Context) error) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	timer := time.AfterFunc(300*time.Millisecond, cancel)
	defer timer.Stop()
	start := time.Now()
	err := run(ctx)
	if code := testpg.SQLState(err); code != "57014" {
		t.Errorf("%s: canceled pg_sleep(30) returned %v (SQLSTATE %q), want SQLSTATE 57014", who, err, code)
	}
	if took := time.Since(start); took > 10*time.Second {
		t.Errorf("%s: the cancel took %s", who, took)
	}
}

// pgxWorkers is how many connections each tenant's pool holds at once.
const pgxWorkers = 10

func TestCompatPgxpoolTwentyConnectionsOfTwoTenantsSeeOnlyTheirOwnRowsConcurrently(t *testing.T) {
	t.Parallel()
	// Four backends per tenant under ten clients each: transactions of every
	// client meet backends that have not seen its prepared statements.
	e := startProxy(t, func(c *proxyConfig, _ *jwtConfig) { c.Pool.Size = 4 })
	ctx := testpg.Context(t)
	pools := map[string]*pgxpool.Pool{}
	for _, org := range compatOrgs {
		cfg, err := pgxpool.ParseConfig(e.dsn(token(t, org)))
		if err != nil {
			t.Fatal(err)
		}
		// The default query mode: a statement cache of named prepared
		// statements, reused across transactions.
		cfg.MaxConns = pgxWorkers
		cancelOnContextDone(&cfg.ConnConfig.Config)
		pool, err := pgxpool.NewWithConfig(ctx, cfg)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(pool.Close)
		pools[org] = pool
	}

	var wg sync.WaitGroup
	var ready sync.WaitGroup // every worker holds its connection before any starts
	ready.Add(len(compatOrgs) * pgxWorkers)
	for _, org := range compatOrgs {
		for w := 0; w < pgxWorkers; w++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				conn, err := pools[org].Acquire(ctx)
				ready.Done()
				if err != nil {
					t.Errorf("%s: acquire: %v", org, err)
					return
				}
				defer conn.Release()
				ready.Wait()
				pgxWork(t, ctx, conn.Conn(), org, fmt.Sprintf("compat-pgx-%s-%d", org, w))
			}()
		}
	}
	wg.Wait()
	for _, org := range compatOrgs {
		if n := pools[org].Stat().TotalConns(); n != pgxWorkers {
			t.Errorf("%s's pool held %d connections, want %d", org, n, pgxWorkers)
		}
	}
	if t.Failed() {
		return
	}

	for _, org := range compatOrgs {
		conn, err := pools[org].Acquire(ctx)
		if err != nil {
			t.Fatal(err)
		}
		pgxCopy(t, ctx, conn.Conn(), org)
		cancelAfter(t, org, func(ctx context.Context) error {
			_, err := conn.Exec(ctx, "SELECT pg_sleep(30)")
			return err
		})
		scanVisible(t, conn.QueryRow(ctx, visibleSQL)).check(t, org)
		conn.Release()
	}
}

// pgxWork is one pgx client's share: reads, and writes that are rolled back,
// through the statement cache, each in a transaction of its own.
func pgxWork(t *testing.T, ctx context.Context, conn *pgx.Conn, org, marker string) {
	for i := 0; i < 25; i++ {
		var s, orgs string
		if err := conn.QueryRow(ctx, visibleSQL+" WHERE id > $1", i%2-1).Scan(&s, &orgs); err != nil {
			t.Errorf("%s, round %d: %v", org, i, err)
			return
		}
		parseVisible(s, orgs).check(t, org)

		err := pgx.BeginFunc(ctx, conn, func(tx pgx.Tx) error {
			var got string
			if err := tx.QueryRow(ctx, "INSERT INTO items (name) VALUES ($1) RETURNING org_id", marker).Scan(&got); err != nil {
				return err
			}
			if got != org {
				return fmt.Errorf("insert took org_id %q from the context, want %q", got, org)
			}
			var n int
			if err := tx.QueryRow(ctx, "SELECT count(*) FROM items WHERE name = $1", marker).Scan(&n); err != nil {
				return err
			}
			if n != 1 {
				return fmt.Errorf("saw %d rows named %s in the transaction that inserted one", n, marker)
			}
			tag, err := tx.Exec(ctx, "UPDATE items SET name = name WHERE org_id <> $1", org)
			if err != nil {
				return err
			}
			if tag.RowsAffected() != 0 {
				return fmt.Errorf("update reached %d rows of other tenants", tag.RowsAffected())
			}
			return errRollback
		})
		if !errors.Is(err, errRollback) {
			t.Errorf("%s, round %d: %v", org, i, err)
			return
		}
	}
	var n int
	if err := conn.QueryRow(ctx, "SELECT count(*) FROM items WHERE name = $1", marker).Scan(&n); err != nil || n != 0 {
		t.Errorf("%s: %d rows of rolled-back transactions are visible (%v)", org, n, err)
	}
}

// errRollback makes pgx.BeginFunc roll back.
var errRollback = errors.New("roll back")

// pgxCopy runs COPY TO STDOUT from a query on items and a binary COPY FROM
// (pgx.CopyFrom) into app_owned in a transaction that is rolled back.
func pgxCopy(t *testing.T, ctx context.Context, conn *pgx.Conn, org string) {
	t.Helper()
	var out bytes.Buffer
	if _, err := conn.PgConn().CopyTo(ctx, &out, "COPY (SELECT org_id, name FROM items ORDER BY id) TO STDOUT"); err != nil {
		t.Fatal(err)
	}
	var want strings.Builder
	for _, name := range tenantRows[org] {
		want.WriteString(org + "\t" + name + "\n")
	}
	if out.String() != want.String() {
		t.Errorf("%s: COPY TO returned %q, want %q", org, out.String(), want.String())
	}

	marker := "compat-pgx-copy-" + org
	tx, err := conn.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback(ctx)
	rows := make([][]any, 500)
	for i := range rows {
		rows[i] = []any{int32(i), marker}
	}
	n, err := tx.CopyFrom(ctx, pgx.Identifier{"app_owned"}, []string{"id", "note"}, pgx.CopyFromRows(rows))
	if err != nil || n != 500 {
		t.Fatalf("%s: CopyFrom: %d rows, %v", org, n, err)
	}
	countNotes(t, ctx, tx, marker, 500)
	if err := tx.Rollback(ctx); err != nil {
		t.Fatal(err)
	}
	countNotes(t, ctx, conn, marker, 0)
}

// countNotes checks how many app_owned rows q sees with note.
func countNotes(t *testing.T, ctx context.Context, q interface {
	QueryRow(context.Context, string, ...any) pgx.Row
}, note string, want int) {
	t.Helper()
	var n int
	if err := q.QueryRow(ctx, "SELECT count(*) FROM app_owned WHERE note = $1", note).Scan(&n); err != nil || n != want {
		t.Errorf("%d app_owned rows noted %s (%v), want %d", n, note, err, want)
	}
}
