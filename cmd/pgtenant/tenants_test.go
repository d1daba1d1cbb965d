package main

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/pgtenant/pgtenant/auth"
	"github.com/pgtenant/pgtenant/config"
	"github.com/pgtenant/pgtenant/internal/pgcluster"
	"github.com/pgtenant/pgtenant/test/testpg"
)

// registryEnv is a PostgreSQL with the tenancy schema and a tenant table,
// and pgtenant instances in front of it following its registry.
type registryEnv struct {
	t       *testing.T
	c       *pgcluster.Cluster
	cfg     config.Config
	control string // superuser DSN of the app database, which holds the registry
}

const registrySchema = `
CREATE TABLE items (
	id     bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
	org_id text NOT NULL DEFAULT tenancy.current_org(),
	name   text NOT NULL
);
ALTER TABLE items ENABLE ROW LEVEL SECURITY;
ALTER TABLE items FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant ON items USING (org_id = (SELECT tenancy.current_org()))
	WITH CHECK (org_id = (SELECT tenancy.current_org()));
GRANT SELECT, INSERT, UPDATE, DELETE ON items TO shop_app;
`

func startRegistryEnv(ctx context.Context, t *testing.T) *registryEnv {
	t.Helper()
	c, cfgFile := installTenancy(ctx, t, "registry-test-context-secret-0123456789")
	if err := c.ExecIn(ctx, "app", registrySchema); err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Read(cfgFile, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	e := &registryEnv{t: t, c: c, control: c.SuperuserDSN("app")}
	cfg.Listen, cfg.Admin.Listen = "127.0.0.1:0", "127.0.0.1:0"
	cfg.Backend.DSN = c.DSN("shop_app", "pw", "app")
	cfg.Auth.JWT.Secret = testSecret
	cfg.Tenants.DSN = e.control
	cfg.Log.Level = "warn"
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	e.cfg = cfg
	t.Setenv(tenantsDSNEnv, e.control)
	return e
}

// serve runs one pgtenant instance until the test ends.
func (e *registryEnv) serve(ctx context.Context) listening {
	e.t.Helper()
	ctx, cancel := context.WithCancel(ctx)
	started := make(chan listening, 1)
	done := make(chan error, 1)
	go func() { done <- run(ctx, e.cfg, newLogger(e.cfg.Log), started, nil) }()
	e.t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			e.t.Errorf("pgtenant: %v", err)
		}
	})
	select {
	case addrs := <-started:
		return addrs
	case err := <-done:
		e.t.Fatalf("pgtenant did not start: %v", err)
		return listening{}
	}
}

func (e *registryEnv) cli(args ...string) string {
	e.t.Helper()
	out, err := runCmd(e.t, append([]string{"tenants"}, args...)...)
	if err != nil {
		e.t.Fatalf("pgtenant tenants %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return out
}

func clientToken(t *testing.T, org, sub string) string {
	tok, err := auth.Mint([]byte(testSecret), auth.MintClaims{Org: org, Subject: sub, TTL: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

func connectAs(ctx context.Context, addr listening, tok string) (*pgx.Conn, error) {
	return pgx.Connect(ctx, "postgres://app:"+tok+"@"+addr.Client+"/app?sslmode=disable")
}

func (e *registryEnv) connect(ctx context.Context, addr listening, org string) *pgx.Conn {
	e.t.Helper()
	conn, err := connectAs(ctx, addr, clientToken(e.t, org, "alice"))
	if err != nil {
		e.t.Fatalf("connecting as %s: %v", org, err)
	}
	e.t.Cleanup(func() { conn.Close(context.Background()) })
	return conn
}

// within polls cond until it holds, failing after limit; it returns how long
// that took.
func within(t *testing.T, limit time.Duration, what string, cond func() bool) time.Duration {
	t.Helper()
	start := time.Now()
	for !cond() {
		if time.Since(start) > limit {
			t.Fatalf("%s: not within %s", what, limit)
		}
		time.Sleep(10 * time.Millisecond)
	}
	return time.Since(start)
}

func flags(ctx context.Context, conn *pgx.Conn) string {
	var s string
	if err := conn.QueryRow(ctx, "SELECT current_setting('app.org_flags')").Scan(&s); err != nil {
		return "error: " + err.Error()
	}
	return s
}

func TestTheRegistryAdmitsTenantsAndAppliesChangesOnEveryInstance(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	e := startRegistryEnv(ctx, t)
	e.cli("create", "acme", "--name", "Acme Corp", "--flags", `{"beta":true}`)
	e.cli("create", "globex")
	a, b := e.serve(ctx), e.serve(ctx)

	// Unknown orgs are refused at login.
	if _, err := connectAs(ctx, a, clientToken(t, "initech", "alice")); testpg.SQLState(err) != "28000" || !strings.Contains(err.Error(), "not registered") {
		t.Fatalf("login of an unregistered org: %v", err)
	}

	// Flags are a transaction-local setting; a change reaches both
	// instances through LISTEN/NOTIFY.
	acmeA, acmeB := e.connect(ctx, a, "acme"), e.connect(ctx, b, "acme")
	if got := flags(ctx, acmeB); got != `{"beta": true}` && got != `{"beta":true}` {
		t.Fatalf("app.org_flags = %s", got)
	}
	if _, err := acmeA.Exec(ctx, "SET app.org_flags = '{}'"); testpg.SQLState(err) != "42501" {
		t.Fatalf("a tenant set its own flags: %v", err)
	}
	e.cli("update", "acme", "--flags", `{"beta":false,"plan":"gold"}`)
	took := within(t, 5*time.Second, "the flag change on the second instance", func() bool {
		return strings.Contains(flags(ctx, acmeB), `"gold"`)
	})
	t.Logf("a flag change reached the second instance in %s", took)
	within(t, 5*time.Second, "the flag change on the first instance", func() bool {
		return strings.Contains(flags(ctx, acmeA), `"gold"`)
	})

	// Settings apply from the next transaction.
	e.cli("update", "acme", "--settings", `{"statement_timeout":"100ms","read_only":true}`)
	within(t, 5*time.Second, "read-only mode", func() bool {
		_, err := acmeA.Exec(ctx, "INSERT INTO items (name) VALUES ('x')")
		return testpg.SQLState(err) == "25006"
	})
	if _, err := acmeA.Exec(ctx, "SELECT pg_sleep(2)"); testpg.SQLState(err) != "57014" {
		t.Fatalf("statement_timeout of the tenant: %v", err)
	}
	tx, err := acmeA.BeginTx(ctx, pgx.TxOptions{AccessMode: pgx.ReadWrite})
	if err == nil {
		_, err = tx.Exec(ctx, "INSERT INTO items (name) VALUES ('x')")
		tx.Rollback(ctx)
	}
	if s := testpg.SQLState(err); s != "25001" && s != "25006" {
		t.Fatalf("BEGIN READ WRITE undid read-only mode: %v", err)
	}
	// A BEGIN of its own still chooses the isolation level.
	tx, err = acmeA.BeginTx(ctx, pgx.TxOptions{IsoLevel: pgx.Serializable})
	if err != nil {
		t.Fatal(err)
	}
	var level, readOnly string
	if err := tx.QueryRow(ctx, "SELECT current_setting('transaction_isolation'), current_setting('transaction_read_only')").Scan(&level, &readOnly); err != nil || level != "serializable" || readOnly != "on" {
		t.Fatalf("BEGIN ISOLATION LEVEL SERIALIZABLE of a read-only tenant: %s, read-only %s, %v", level, readOnly, err)
	}
	tx.Rollback(ctx)
	e.cli("update", "acme", "--settings", `{}`)
	within(t, 5*time.Second, "read-write again", func() bool {
		_, err := acmeA.Exec(ctx, "INSERT INTO items (name) VALUES ('x')")
		return err == nil
	})

	// Suspension ends live sessions, idle or in a transaction, with 57P01,
	// rolls back what was in flight, and refuses new logins.
	globex := e.connect(ctx, b, "globex")
	tx, err = globex.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tx.Exec(ctx, "INSERT INTO items (name) VALUES ('uncommitted')"); err != nil {
		t.Fatal(err)
	}
	idle := e.connect(ctx, a, "globex")
	start := time.Now()
	e.cli("suspend", "globex", "--reason", "unpaid")
	// Each instance follows the registry on its own, so a and b end their
	// sessions at slightly different moments.
	within(t, 5*time.Second, "the idle session's end", func() bool {
		return idle.Ping(ctx) != nil
	})
	var txErr error
	within(t, 5*time.Second, "the end of the session in a transaction", func() bool {
		_, txErr = tx.Exec(ctx, "SELECT 1")
		return txErr != nil
	})
	if !strings.Contains(txErr.Error(), "57P01") && !strings.Contains(txErr.Error(), "suspended") {
		t.Logf("in-transaction session ended with: %v", txErr)
	}
	t.Logf("the sessions of a suspended tenant ended %s after the suspend command", time.Since(start))
	var n int
	if err := e.superuser(ctx).QueryRow(ctx, "SELECT count(*) FROM items WHERE name = 'uncommitted'").Scan(&n); err != nil || n != 0 {
		t.Fatalf("the suspended tenant's transaction was not rolled back: %d rows, %v", n, err)
	}
	if _, err := connectAs(ctx, a, clientToken(t, "globex", "alice")); testpg.SQLState(err) != "28000" || !strings.Contains(err.Error(), "suspended") {
		t.Fatalf("login of a suspended org: %v", err)
	}
	e.cli("resume", "globex")
	within(t, 5*time.Second, "login after resume", func() bool {
		c, err := connectAs(ctx, a, clientToken(t, "globex", "alice"))
		if err == nil {
			c.Close(ctx)
		}
		return err == nil
	})
	e.cli("deprovision", "globex")
	if _, err := runCmd(t, "tenants", "resume", "globex"); err == nil {
		t.Fatal("resumed a deprovisioned org")
	}
	within(t, 5*time.Second, "deprovisioned login refused", func() bool {
		_, err := connectAs(ctx, a, clientToken(t, "globex", "alice"))
		return err != nil && strings.Contains(err.Error(), "deprovisioned")
	})

	// Purge deletes a deprovisioned org's rows, in batches, and only its.
	su := e.superuser(ctx)
	if _, err := su.Exec(ctx, "INSERT INTO items (org_id, name) SELECT 'globex', 'g' || i FROM generate_series(1, 25) i"); err != nil {
		t.Fatal(err)
	}
	if _, err := runCmd(t, "tenants", "purge", "globex", "--data-dsn", e.control); err == nil {
		t.Fatal("purge without --confirm")
	}
	if _, err := runCmd(t, "tenants", "purge", "acme", "--confirm", "--data-dsn", e.control); err == nil || !strings.Contains(err.Error(), "deprovision it first") {
		t.Fatalf("purge of an active org: %v", err)
	}
	out := e.cli("purge", "globex", "--confirm", "--batch", "10", "--data-dsn", e.control)
	if !strings.Contains(out, "purged globex: 25 rows") {
		t.Fatalf("purge output:\n%s", out)
	}
	var left, acme int
	if err := su.QueryRow(ctx, "SELECT count(*) FILTER (WHERE org_id = 'globex'), count(*) FILTER (WHERE org_id = 'acme') FROM items").Scan(&left, &acme); err != nil || left != 0 || acme == 0 {
		t.Fatalf("after the purge: %d globex rows, %d acme rows, %v", left, acme, err)
	}
	if out := e.cli("get", "globex", "--history"); !strings.Contains(out, `"purge"`) {
		t.Fatalf("the purge is not in the history:\n%s", out)
	}
}

func TestTenantLimitsMembershipAndPoolOverridesApplyWithoutRestart(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	e := startRegistryEnv(ctx, t)
	e.cli("create", "acme", "--settings", `{"max_connections":1,"idle_in_transaction_timeout":"300ms"}`)
	e.cli("create", "legacy", "--pool", `{"mode":"session"}`)
	a := e.serve(ctx)

	// A session-mode client holds its backend connection between
	// transactions; suspension ends it all the same.
	legacy := e.connect(ctx, a, "legacy")
	if _, err := legacy.Exec(ctx, "SELECT 1"); err != nil {
		t.Fatal(err)
	}
	e.cli("suspend", "legacy")
	within(t, 5*time.Second, "the session-mode session's end", func() bool {
		_, err := legacy.Exec(ctx, "SELECT 1")
		return err != nil && strings.Contains(err.Error(), "tenant legacy was suspended")
	})

	first := e.connect(ctx, a, "acme")
	if _, err := connectAs(ctx, a, clientToken(t, "acme", "bob")); testpg.SQLState(err) != "53300" {
		t.Fatalf("a second connection over max_connections 1: %v", err)
	}
	// Idle in a transaction past the tenant's limit: ended with 25P03.
	if _, err := first.Exec(ctx, "BEGIN"); err != nil {
		t.Fatal(err)
	}
	time.Sleep(time.Second)
	if _, err := first.Exec(ctx, "SELECT 1"); err == nil || !strings.Contains(err.Error(), "25P03") && !strings.Contains(err.Error(), "idle-in-transaction") {
		t.Fatalf("a session idle in a transaction past the limit: %v", err)
	}
	first.Close(ctx)

	// A pool override resizes the live pool.
	e.connect(ctx, a, "acme").Exec(ctx, "SELECT 1")
	e.cli("update", "acme", "--pool", `{"size":3}`)
	within(t, 5*time.Second, "the pool resized", func() bool {
		return poolSize(t, e, a, "acme") == 3
	})
	// Membership: only active members may connect once it is required.
	e.cli("update", "acme", "--settings", `{"require_membership":true}`)
	within(t, 5*time.Second, "a non-member refused", func() bool {
		_, err := connectAs(ctx, a, clientToken(t, "acme", "mallory"))
		return testpg.SQLState(err) == "28000"
	})
	e.cli("members", "put", "acme", "mallory", "--role", "member")
	within(t, 5*time.Second, "a member admitted", func() bool {
		c, err := connectAs(ctx, a, clientToken(t, "acme", "mallory"))
		if err == nil {
			c.Close(ctx)
		}
		return err == nil
	})

}

func poolSize(t *testing.T, e *registryEnv, a listening, org string) int {
	tok, err := auth.Mint([]byte(testSecret), auth.MintClaims{Subject: "ops", Roles: []string{"platform_admin"}, TTL: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	req, _ := http.NewRequest("GET", "http://"+a.Admin+"/api/v1/pools", nil)
	req.Header.Set("Authorization", "Bearer "+tok)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	var pools struct {
		Pools []struct {
			Tenant string `json:"tenant"`
			Size   int    `json:"size"`
		} `json:"pools"`
	}
	if err := json.Unmarshal(body, &pools); err != nil {
		t.Fatalf("GET /api/v1/pools: %v\n%s", err, body)
	}
	for _, p := range pools.Pools {
		if p.Tenant == org {
			return p.Size
		}
	}
	return 0
}

func (e *registryEnv) superuser(ctx context.Context) *pgx.Conn {
	e.t.Helper()
	conn, err := pgx.Connect(ctx, e.control)
	if err != nil {
		e.t.Fatal(err)
	}
	e.t.Cleanup(func() { conn.Close(context.Background()) })
	return conn
}
