package e2e

import (
	"context"
	"strings"
	"sync"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/pgtenant/pgtenant/proxy"
	"github.com/pgtenant/pgtenant/test/testpg"
)

// visible is what one statement saw: the tenant setting and the org_id of
// every row it could read.
type visible struct {
	setting string
	orgs    []string
}

func (v visible) check(t *testing.T, org string) {
	t.Helper()
	if v.setting != org {
		t.Errorf("current_setting(%q) = %q, want %q", setting, v.setting, org)
	}
	if len(v.orgs) != len(tenantRows[org]) {
		t.Errorf("saw %d rows %v, want the %d rows of %s", len(v.orgs), v.orgs, len(tenantRows[org]), org)
	}
	for _, o := range v.orgs {
		if o != org {
			t.Errorf("tenant %s saw a row of %s", org, o)
		}
	}
}

const visibleSQL = `SELECT current_setting('app.current_org'), coalesce(string_agg(org_id, ',' ORDER BY id), '') FROM items`

func parseVisible(settingVal, orgs string) visible {
	v := visible{setting: settingVal}
	if orgs != "" {
		v.orgs = strings.Split(orgs, ",")
	}
	return v
}

// lastRow returns the text values of the last row of the last result of a
// simple-protocol exchange.
func lastRow(t *testing.T, results []*pgconn.Result) []string {
	t.Helper()
	for i := len(results) - 1; i >= 0; i-- {
		r := results[i]
		if r.Err != nil {
			t.Fatalf("statement %d failed: %v", i, r.Err)
		}
		if len(r.Rows) > 0 {
			row := r.Rows[len(r.Rows)-1]
			out := make([]string, len(row))
			for j, v := range row {
				out[j] = string(v)
			}
			return out
		}
	}
	t.Fatal("no rows returned")
	return nil
}

func TestEachTenantSeesOnlyItsRowsThroughEveryProtocolPath(t *testing.T) {
	for _, form := range []proxy.SetWith{proxy.SetWithLocal, proxy.SetWithConfig, proxy.SetWithAuto} {
		t.Run(string(form), func(t *testing.T) {
			e := startProxy(t, func(c *proxyConfig, _ *jwtConfig) { c.SetWith = form })
			eachTenantSeesOnlyItsRows(t, e)
		})
	}
}

func eachTenantSeesOnlyItsRows(t *testing.T, e *env) {
	paths := []struct {
		name string
		run  func(t *testing.T, conn *pgx.Conn) []visible
	}{
		{"simple query", func(t *testing.T, conn *pgx.Conn) []visible {
			row := lastRow(t, mustReadAll(t, conn.PgConn().Exec(testpg.Context(t), visibleSQL)))
			return []visible{parseVisible(row[0], row[1])}
		}},
		{"multi-statement simple query", func(t *testing.T, conn *pgx.Conn) []visible {
			results := mustReadAll(t, conn.PgConn().Exec(testpg.Context(t), "SELECT 1; "+visibleSQL+"; "+visibleSQL))
			a, b := results[1].Rows[0], results[2].Rows[0]
			return []visible{parseVisible(string(a[0]), string(a[1])), parseVisible(string(b[0]), string(b[1]))}
		}},
		{"explicit transaction", func(t *testing.T, conn *pgx.Conn) []visible {
			ctx := testpg.Context(t)
			tx, err := conn.Begin(ctx)
			if err != nil {
				t.Fatal(err)
			}
			defer tx.Rollback(ctx)
			var out []visible
			for _, stmt := range []string{"SELECT 1", "SAVEPOINT s1", "ROLLBACK TO SAVEPOINT s1"} {
				if _, err := tx.Exec(ctx, stmt); err != nil {
					t.Fatal(err)
				}
				out = append(out, scanVisible(t, tx.QueryRow(ctx, visibleSQL)))
			}
			if err := tx.Commit(ctx); err != nil {
				t.Fatal(err)
			}
			return out
		}},
		{"extended protocol", func(t *testing.T, conn *pgx.Conn) []visible {
			ctx := testpg.Context(t)
			var out []visible
			for i := 0; i < 3; i++ {
				out = append(out, scanVisible(t, conn.QueryRow(ctx, visibleSQL+" WHERE id > $1", -i)))
			}
			return out
		}},
		{"pipelined batch", func(t *testing.T, conn *pgx.Conn) []visible {
			ctx := testpg.Context(t)
			b := &pgx.Batch{}
			for i := 0; i < 4; i++ {
				b.Queue(visibleSQL+" WHERE id > $1", -i)
			}
			br := conn.SendBatch(ctx, b)
			defer br.Close()
			var out []visible
			for i := 0; i < 4; i++ {
				out = append(out, scanVisible(t, br.QueryRow()))
			}
			return out
		}},
		{"pipeline of several transactions", func(t *testing.T, conn *pgx.Conn) []visible {
			// Each Sync ends a transaction; the next one starts before the
			// proxy has seen the previous ReadyForQuery.
			return pipelineVisible(t, conn, []string{visibleSQL, visibleSQL, "BEGIN", visibleSQL, "COMMIT", visibleSQL})
		}},
		{"pipeline through an aborted transaction", func(t *testing.T, conn *pgx.Conn) []visible {
			return pipelineVisible(t, conn, []string{"BEGIN", visibleSQL, "SELECT 1/0", "ROLLBACK", visibleSQL})
		}},
		{"pipeline behind DEALLOCATE ALL", func(t *testing.T, conn *pgx.Conn) []visible {
			// The client may drop every prepared statement on the backend,
			// the proxy's own included; the next transaction must not care.
			return pipelineVisible(t, conn, []string{"DEALLOCATE ALL", visibleSQL, "DISCARD ALL", visibleSQL})
		}},
		{"PL/pgSQL function", func(t *testing.T, conn *pgx.Conn) []visible {
			var n int64
			var s string
			if err := conn.QueryRow(testpg.Context(t), "SELECT count_items(), current_setting('app.current_org')").Scan(&n, &s); err != nil {
				t.Fatal(err)
			}
			orgs := make([]string, n)
			for i := range orgs {
				orgs[i] = s // count_items counts only the caller's rows; check the count
			}
			return []visible{{setting: s, orgs: orgs}}
		}},
	}
	for _, org := range []string{"acme", "globex"} {
		conn := e.connect(t, org)
		for _, p := range paths {
			t.Run(org+"/"+p.name, func(t *testing.T) {
				for _, v := range p.run(t, conn) {
					v.check(t, org)
				}
				assertNoSessionContext(t, conn)
			})
		}
	}
}

func mustReadAll(t *testing.T, mrr *pgconn.MultiResultReader) []*pgconn.Result {
	t.Helper()
	results, err := mrr.ReadAll()
	if err != nil {
		t.Fatal(err)
	}
	return results
}

func scanVisible(t *testing.T, row pgx.Row) visible {
	t.Helper()
	var s, orgs string
	if err := row.Scan(&s, &orgs); err != nil {
		t.Fatal(err)
	}
	return parseVisible(s, orgs)
}

// pipelineVisible sends each statement in its own sync group, all in one
// pipeline, and returns what each visibleSQL statement saw. Statements that
// fail (1/0, and what follows it in the aborted transaction) are expected to.
func pipelineVisible(t *testing.T, conn *pgx.Conn, stmts []string) []visible {
	t.Helper()
	ctx := testpg.Context(t)
	p := conn.PgConn().StartPipeline(ctx)
	for _, s := range stmts {
		p.SendQueryParams(s, nil, nil, nil, nil)
		p.SendPipelineSync()
	}
	if err := p.Flush(); err != nil {
		t.Fatal(err)
	}
	var out []visible
	aborted := false
	check := func(stmt string, rows [][][]byte, err error) {
		switch {
		case stmt == "SELECT 1/0":
			if testpg.SQLState(err) != "22012" {
				t.Fatalf("SELECT 1/0: %v", err)
			}
			aborted = true
		case aborted && stmt != "ROLLBACK":
			if testpg.SQLState(err) != "25P02" {
				t.Fatalf("%s in an aborted transaction: %v", stmt, err)
			}
		case err != nil:
			t.Fatalf("%s: %v", stmt, err)
		case stmt == visibleSQL:
			out = append(out, parseVisible(string(rows[0][0]), string(rows[0][1])))
		}
		if stmt == "ROLLBACK" {
			aborted = false
		}
	}
	for i := 0; i < len(stmts); {
		res, err := p.GetResults()
		if err != nil {
			if testpg.SQLState(err) == "" {
				t.Fatal(err)
			}
			check(stmts[i], nil, err)
			i++
			continue
		}
		switch r := res.(type) {
		case *pgconn.ResultReader:
			rr := r.Read()
			check(stmts[i], rr.Rows, rr.Err)
			i++
		case *pgconn.PipelineSync:
		case nil:
			t.Fatal("pipeline ended early")
		}
	}
	if err := p.Close(); err != nil {
		t.Fatal(err)
	}
	return out
}

// assertNoSessionContext checks that the backend carries no tenant context
// of its own outside the proxy's transaction-local setting: with the local
// value reset inside a transaction, the setting is empty.
func assertNoSessionContext(t *testing.T, conn *pgx.Conn) {
	t.Helper()
	results := mustReadAll(t, conn.PgConn().Exec(testpg.Context(t),
		"BEGIN; RESET app.current_org; SELECT coalesce(current_setting('app.current_org', true), ''); COMMIT"))
	if got := string(results[2].Rows[0][0]); got != "" {
		t.Fatalf("the backend keeps a session-level tenant context %q after the transaction", got)
	}
}

func TestContextDoesNotSurviveIntoAnotherTransaction(t *testing.T) {
	e := startProxy(t, func(c *proxyConfig, _ *jwtConfig) { c.Pool.Size = 1 })
	acme, globex := e.connect(t, "acme"), e.connect(t, "globex")
	ctx := testpg.Context(t)
	for i := 0; i < 3; i++ {
		for _, c := range []struct {
			conn *pgx.Conn
			org  string
		}{{acme, "acme"}, {globex, "globex"}} {
			scanVisible(t, c.conn.QueryRow(ctx, visibleSQL)).check(t, c.org)
			// Statements that cannot run in a transaction block get the
			// context for the session; it must be gone afterwards.
			if _, err := c.conn.Exec(ctx, "VACUUM app_owned"); err != nil {
				t.Fatal(err)
			}
			assertNoSessionContext(t, c.conn)
		}
	}
}

func TestStatementsThatCannotRunInATransactionBlockWork(t *testing.T) {
	e := startProxy(t, nil)
	conn := e.connect(t, "acme")
	ctx := testpg.Context(t)
	simple := []string{
		"VACUUM app_owned",
		"CREATE INDEX CONCURRENTLY IF NOT EXISTS app_owned_id ON app_owned (id)",
		"REINDEX INDEX CONCURRENTLY app_owned_id",
		"DROP INDEX CONCURRENTLY IF EXISTS app_owned_id",
		"VACUUM (ANALYZE) app_owned",
	}
	for _, stmt := range simple {
		if _, err := conn.PgConn().Exec(ctx, stmt).ReadAll(); err != nil {
			t.Errorf("simple %q: %v", stmt, err)
		}
		if _, err := conn.Exec(ctx, stmt); err != nil { // extended protocol
			t.Errorf("extended %q: %v", stmt, err)
		}
	}
	// PostgreSQL's own answer where it refuses: inside a transaction block.
	_, err := conn.PgConn().Exec(ctx, "BEGIN; VACUUM app_owned; COMMIT").ReadAll()
	if testpg.SQLState(err) != "25001" {
		t.Errorf("VACUUM in a transaction block: got %v, want SQLSTATE 25001", err)
	}
	if _, err := conn.Exec(ctx, "ROLLBACK"); err != nil {
		t.Fatal(err)
	}
	scanVisible(t, conn.QueryRow(ctx, visibleSQL)).check(t, "acme")
}

func TestTwoTenantsNeverShareABackendConnection(t *testing.T) {
	e := startProxy(t, func(c *proxyConfig, _ *jwtConfig) { c.Pool.Size = 3 })
	pids := map[string]map[uint32]bool{"acme": {}, "globex": {}}
	var mu sync.Mutex
	var wg sync.WaitGroup
	for _, org := range []string{"acme", "globex"} {
		for i := 0; i < 4; i++ {
			conn := e.connect(t, org)
			wg.Add(1)
			go func() {
				defer wg.Done()
				for j := 0; j < 25; j++ {
					var pid uint32
					var s string
					if err := conn.QueryRow(context.Background(), "SELECT pg_backend_pid(), current_setting('app.current_org')").Scan(&pid, &s); err != nil {
						t.Error(err)
						return
					}
					if s != org {
						t.Errorf("%s ran with context %q", org, s)
					}
					mu.Lock()
					pids[org][pid] = true
					mu.Unlock()
				}
			}()
		}
	}
	wg.Wait()
	var shared []uint32
	for pid := range pids["acme"] {
		if pids["globex"][pid] {
			shared = append(shared, pid)
		}
	}
	if len(shared) > 0 {
		t.Fatalf("backend pids served both tenants: %v", shared)
	}
	if len(pids["acme"]) == 0 || len(pids["globex"]) == 0 || len(pids["acme"]) > 3 {
		t.Fatalf("unexpected backend usage: %v", pids)
	}
}

func TestInsertsGetTheTenantFromTheContext(t *testing.T) {
	e := startProxy(t, nil)
	acme := e.connect(t, "acme")
	ctx := testpg.Context(t)
	tx, err := acme.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback(ctx)
	var org string
	if err := tx.QueryRow(ctx, "INSERT INTO items (name) VALUES ('new') RETURNING org_id").Scan(&org); err != nil {
		t.Fatal(err)
	}
	if org != "acme" {
		t.Fatalf("inserted row got org_id %q", org)
	}
	_, err = tx.Exec(ctx, "INSERT INTO items (org_id, name) VALUES ('globex', 'smuggled')")
	if testpg.SQLState(err) != "42501" {
		t.Fatalf("insert claiming another tenant: got %v, want RLS violation 42501", err)
	}
}
