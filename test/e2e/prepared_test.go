package e2e

import (
	"context"
	"fmt"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/pgtenant/pgtenant/internal/pgcluster"
	"github.com/pgtenant/pgtenant/test/testpg"
)

// connectMode is connect with a chosen pgx query mode.
func (e *env) connectMode(t testing.TB, org string, mode pgx.QueryExecMode) *pgx.Conn {
	t.Helper()
	cfg, err := pgx.ParseConfig(e.dsn(token(t, org)))
	if err != nil {
		t.Fatal(err)
	}
	cfg.DefaultQueryExecMode = mode
	conn, err := pgx.ConnectConfig(testpg.Context(t), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close(context.Background()) })
	return conn
}

func TestPgxPreparedStatementsWorkAcrossTransactionsAndBackends(t *testing.T) {
	for _, mode := range []struct {
		name string
		mode pgx.QueryExecMode
	}{
		{"cache_statement (the default)", pgx.QueryExecModeCacheStatement},
		{"describe_exec", pgx.QueryExecModeDescribeExec},
		{"cache_describe", pgx.QueryExecModeCacheDescribe},
	} {
		t.Run(mode.name, func(t *testing.T) {
			// Three backends per tenant, six clients: every client's
			// statements meet backends that have never seen them.
			e := startProxy(t, func(c *proxyConfig, _ *jwtConfig) { c.Pool.Size = 3 })
			var wg sync.WaitGroup
			for i := 0; i < 6; i++ {
				org := []string{"acme", "globex"}[i%2]
				conn := e.connectMode(t, org, mode.mode)
				wg.Add(1)
				go func() {
					defer wg.Done()
					for j := 0; j < 40; j++ {
						var s, orgs string
						if err := conn.QueryRow(context.Background(), visibleSQL+" WHERE id > $1", -j%3).Scan(&s, &orgs); err != nil {
							t.Errorf("%s, query %d: %v", org, j, err)
							return
						}
						parseVisible(s, orgs).check(t, org)
						var n int64
						if err := conn.QueryRow(context.Background(), "SELECT count_items() + $1::bigint", 0).Scan(&n); err != nil {
							t.Errorf("%s: %v", org, err)
							return
						}
					}
				}()
			}
			wg.Wait()
		})
	}
}

func TestClientsOfOneTenantKeepTheirOwnStatementsOnASharedBackend(t *testing.T) {
	e := startProxy(t, func(c *proxyConfig, _ *jwtConfig) { c.Pool.Size = 1 })
	a, b := e.connect(t, "acme").PgConn(), e.connect(t, "acme").PgConn()
	ctx := testpg.Context(t)
	if _, err := a.Prepare(ctx, "s1", "SELECT 'from a'", nil); err != nil {
		t.Fatal(err)
	}
	if _, err := b.Prepare(ctx, "s1", "SELECT 'from b'", nil); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 3; i++ {
		for _, c := range []struct {
			conn *pgconn.PgConn
			want string
		}{{a, "from a"}, {b, "from b"}} {
			res := c.conn.ExecPrepared(ctx, "s1", nil, nil, nil).Read()
			if res.Err != nil || string(res.Rows[0][0]) != c.want {
				t.Fatalf("got %q, %v; want %q", res.Rows, res.Err, c.want)
			}
		}
	}
	// Closing is the client's own business.
	if err := a.Deallocate(ctx, "s1"); err != nil {
		t.Fatal(err)
	}
	if res := a.ExecPrepared(ctx, "s1", nil, nil, nil).Read(); testpg.SQLState(res.Err) != "26000" {
		t.Fatalf("a's closed statement: %v, want 26000", res.Err)
	}
	if res := b.ExecPrepared(ctx, "s1", nil, nil, nil).Read(); res.Err != nil || string(res.Rows[0][0]) != "from b" {
		t.Fatalf("b lost its statement: %v", res.Err)
	}
	// SQL DEALLOCATE of a protocol-level statement, as psycopg sends it.
	if _, err := b.Prepare(ctx, "S2", "SELECT 2", nil); err != nil {
		t.Fatal(err)
	}
	if _, err := b.Exec(ctx, `DEALLOCATE "S2"`).ReadAll(); err != nil {
		t.Fatalf("DEALLOCATE of a protocol-level statement: %v", err)
	}
	if res := b.ExecPrepared(ctx, "S2", nil, nil, nil).Read(); testpg.SQLState(res.Err) != "26000" {
		t.Fatalf("after DEALLOCATE: %v, want 26000", res.Err)
	}
	// Unquoted names fold to lower case, as in PostgreSQL.
	if _, err := b.Prepare(ctx, "s3", "SELECT 3", nil); err != nil {
		t.Fatal(err)
	}
	if _, err := b.Exec(ctx, "DEALLOCATE PREPARE S3;").ReadAll(); err != nil {
		t.Fatalf("DEALLOCATE S3: %v", err)
	}
	if res := b.ExecPrepared(ctx, "s3", nil, nil, nil).Read(); testpg.SQLState(res.Err) != "26000" {
		t.Fatalf("after DEALLOCATE S3: %v, want 26000", res.Err)
	}
	// DEALLOCATE ALL too.
	if _, err := b.Exec(ctx, "DEALLOCATE ALL").ReadAll(); err != nil {
		t.Fatal(err)
	}
	if res := b.ExecPrepared(ctx, "s1", nil, nil, nil).Read(); testpg.SQLState(res.Err) != "26000" {
		t.Fatalf("after DEALLOCATE ALL: %v, want 26000", res.Err)
	}
	// Another client's backend name is not a way in.
	if res := a.ExecPrepared(ctx, "pgt_1_1", nil, nil, nil).Read(); testpg.SQLState(res.Err) != "26000" {
		t.Fatalf("binding a pgtenant statement name: %v, want 26000", res.Err)
	}
}

func TestSQLPreparedStatementsDoNotReachAnotherClient(t *testing.T) {
	e := startProxy(t, func(c *proxyConfig, _ *jwtConfig) { c.Pool.Size = 1 })
	a, b := e.connect(t, "acme").PgConn(), e.connect(t, "acme").PgConn()
	ctx := testpg.Context(t)
	res, err := a.Exec(ctx, "BEGIN; PREPARE q AS SELECT 'secret of a'; EXECUTE q; COMMIT").ReadAll()
	if err != nil || string(res[2].Rows[0][0]) != "secret of a" {
		t.Fatalf("PREPARE and EXECUTE in one transaction: %v", err)
	}
	for _, sql := range []string{
		"EXECUTE q",
		"EXPLAIN EXECUTE q",
		"EXECUTE pgt_1_1",
		`EXECUTE "pgt_1_1"`,
		`EXECUTE U&"\0070gt_1_1"`,
		"EXECUTE pgtenant_ctx_local",
	} {
		if _, err := b.Exec(ctx, sql).ReadAll(); testpg.SQLState(err) != "26000" {
			t.Errorf("%s from another client: %v, want 26000", sql, err)
		}
	}
	// a's statement is still a's, in later transactions.
	if res, err := a.Exec(ctx, "EXECUTE q").ReadAll(); err != nil || string(res[0].Rows[0][0]) != "secret of a" {
		t.Fatalf("EXECUTE q in a later transaction: %v", err)
	}
}

func TestSQLPreparedStatementsFollowTheClientAcrossBackends(t *testing.T) {
	e := startProxy(t, func(c *proxyConfig, _ *jwtConfig) { c.Pool.Size = 2 })
	ctx := testpg.Context(t)
	a, b := e.connect(t, "acme").PgConn(), e.connect(t, "acme").PgConn()
	if _, err := a.Exec(ctx, "PREPARE q (int, text) AS SELECT $1 + 1, $2 || '!', pg_backend_pid()").ReadAll(); err != nil {
		t.Fatalf("PREPARE: %v", err)
	}
	pids := map[string]bool{}
	for i := range 8 {
		// b holds one of the two backends in every other round, so a's
		// EXECUTE lands on both over the rounds.
		if i%2 == 1 {
			if _, err := b.Exec(ctx, "BEGIN; SELECT 1").ReadAll(); err != nil {
				t.Fatal(err)
			}
		}
		res, err := a.Exec(ctx, fmt.Sprintf("EXECUTE q(%d, 'x')", i)).ReadAll()
		if err != nil {
			t.Fatalf("EXECUTE q in round %d: %v", i, err)
		}
		row := res[0].Rows[0]
		if string(row[0]) != fmt.Sprint(i+1) || string(row[1]) != "x!" {
			t.Fatalf("EXECUTE q(%d, 'x') = %s, %s", i, row[0], row[1])
		}
		pids[string(row[2])] = true
		if i%2 == 1 {
			if _, err := b.Exec(ctx, "COMMIT").ReadAll(); err != nil {
				t.Fatal(err)
			}
		}
	}
	if len(pids) < 2 {
		t.Fatalf("a's EXECUTEs all ran on one backend (%v): the test proves nothing", pids)
	}
	// The client's own name in errors, EXPLAIN, a second PREPARE of the
	// name, DEALLOCATE.
	if _, err := a.Exec(ctx, "EXPLAIN EXECUTE q(1, 'y')").ReadAll(); err != nil {
		t.Fatalf("EXPLAIN EXECUTE: %v", err)
	}
	var pe *pgconn.PgError
	if _, err := a.Exec(ctx, "PREPARE q AS SELECT 1").ReadAll(); !asPgError(err, &pe) || pe.Code != "42P05" || pe.Message != `prepared statement "q" already exists` {
		t.Fatalf("PREPARE of a taken name: %v", err)
	}
	if _, err := a.Exec(ctx, "DEALLOCATE q").ReadAll(); err != nil {
		t.Fatalf("DEALLOCATE q: %v", err)
	}
	if _, err := a.Exec(ctx, "EXECUTE q(1, 'z')").ReadAll(); !asPgError(err, &pe) || pe.Code != "26000" || pe.Message != `prepared statement "q" does not exist` {
		t.Fatalf("EXECUTE after DEALLOCATE: %v", err)
	}
	// A PREPARE that fails leaves nothing behind, and the name is free.
	if _, err := a.Exec(ctx, "PREPARE bad AS SELECT * FROM no_such_table").ReadAll(); testpg.SQLState(err) != "42P01" {
		t.Fatalf("PREPARE of a bad statement: %v", err)
	}
	if _, err := a.Exec(ctx, "PREPARE bad AS SELECT 'fixed'").ReadAll(); err != nil {
		t.Fatalf("PREPARE after a failed one: %v", err)
	}
	// Through the extended protocol too, as drivers send a PREPARE text.
	conn := e.connect(t, "acme")
	if _, err := conn.Exec(ctx, "PREPARE r AS SELECT count(*) FROM items"); err != nil {
		t.Fatal(err)
	}
	var n int
	if err := conn.QueryRow(ctx, "EXECUTE r").Scan(&n); err != nil || n != len(tenantRows["acme"]) {
		t.Fatalf("EXECUTE r through the extended protocol: %d, %v (want acme's %d rows)", n, err, len(tenantRows["acme"]))
	}
}

func TestPgbenchRunsInEveryProtocolMode(t *testing.T) {
	bin, err := pgcluster.BinDir()
	if err != nil {
		t.Fatal(err)
	}
	pgbench := filepath.Join(bin, "pgbench")
	e := startProxy(t, func(c *proxyConfig, _ *jwtConfig) { c.Pool.Size = 4 })
	host, port, _ := strings.Cut(e.addr, ":")
	script := filepath.Join(t.TempDir(), "tenant.sql")
	if err := writeFileString(script, "\\set n random(0, 2)\nSELECT count(*) FROM items WHERE id > :n AND org_id = current_setting('app.current_org');\n"); err != nil {
		t.Fatal(err)
	}
	// An explicit transaction, its BEGIN a statement of its own, and a
	// check that fails the transaction when the context is missing. Run by
	// as many clients as the pool has connections: pgbench prepares each
	// statement synchronously on its first use, so with more clients one
	// of its threads can wait for a connection that another client of the
	// same thread holds in a transaction.
	explicit := filepath.Join(t.TempDir(), "explicit.sql")
	if err := writeFileString(explicit, "BEGIN;\nSELECT 1 / (SELECT count(*) FROM items WHERE org_id = current_setting('app.current_org'))::int;\n"+
		"SELECT count(*) FROM items;\nEND;\n"); err != nil {
		t.Fatal(err)
	}
	for _, mode := range []string{"simple", "extended", "prepared"} {
		t.Run(mode, func(t *testing.T) {
			for _, run := range []struct {
				script, clients, want string
			}{{script, "8", "1600/1600"}, {explicit, "4", "800/800"}} {
				cmd := exec.CommandContext(testpg.Context(t), pgbench, "-n", "-f", run.script, "-c", run.clients, "-j", "2", "-t", "200",
					"-M", mode, "-h", host, "-p", port, "-U", "app", database)
				cmd.Env = append(cmd.Environ(), "PGPASSWORD="+token(t, "acme"), "PGSSLMODE=disable")
				out, err := cmd.CombinedOutput()
				if err != nil || !strings.Contains(string(out), "number of failed transactions: 0") ||
					!strings.Contains(string(out), "number of transactions actually processed: "+run.want) {
					t.Fatalf("pgbench -M %s -f %s: %v\n%s", mode, filepath.Base(run.script), err, out)
				}
			}
		})
	}
}

func TestABackendKeepsAtMostItsLimitOfStatementsAndReprepares(t *testing.T) {
	e := startProxy(t, func(c *proxyConfig, _ *jwtConfig) {
		c.Pool.Size = 1
		c.MaxBackendStatements = 3
	})
	conn := e.connect(t, "acme").PgConn()
	ctx := testpg.Context(t)
	for i := 0; i < 5; i++ {
		if _, err := conn.Prepare(ctx, "q"+string(rune('a'+i)), "SELECT "+string(rune('0'+i))+"::int AS n", nil); err != nil {
			t.Fatal(err)
		}
	}
	for round := 0; round < 3; round++ {
		for i := 0; i < 5; i++ {
			res := conn.ExecPrepared(ctx, "q"+string(rune('a'+i)), nil, nil, nil).Read()
			if res.Err != nil || string(res.Rows[0][0]) != string(rune('0'+i)) {
				t.Fatalf("statement %d, round %d: %v %q", i, round, res.Err, res.Rows)
			}
		}
		res := conn.ExecParams(ctx, "SELECT count(*) FROM pg_prepared_statements WHERE name LIKE 'pgt\\_%'", nil, nil, nil, nil).Read()
		if res.Err != nil {
			t.Fatal(res.Err)
		}
		if n, _ := strconv.Atoi(string(res.Rows[0][0])); n > 3 || n < 1 {
			t.Fatalf("the backend holds %q client statements, limit 3 (%v)", res.Rows, res.Err)
		}
	}
}

func TestErrorsNameTheClientsStatementEvenWhenThePipelineClosesIt(t *testing.T) {
	// One backend holding one client statement: b's Parse evicts a's s2,
	// so a's Bind of s2 comes after a Parse pgtenant injects.
	e := startProxy(t, func(c *proxyConfig, _ *jwtConfig) {
		c.Pool.Size = 1
		c.MaxBackendStatements = 1
	})
	a, b := hijack(t, e.dsn(token(t, "acme"))), hijack(t, e.dsn(token(t, "acme")))
	a.exchange(1, &pgproto3.Parse{Name: "s2", Query: "SELECT $1::int + 1"}, &pgproto3.Sync{})
	b.exchange(1, &pgproto3.Parse{Name: "x", Query: "SELECT 1"}, &pgproto3.Sync{})
	got := strings.Join(a.exchange(1,
		&pgproto3.Bind{PreparedStatement: "s2"}, &pgproto3.Execute{},
		&pgproto3.Close{ObjectType: 'S', Name: "s2"}, &pgproto3.Sync{}), "\n")
	if !strings.Contains(got, `bind message supplies 0 parameters, but prepared statement \"s2\" requires 1`) {
		t.Fatalf("the error does not name the client's statement:\n%s", got)
	}
}
