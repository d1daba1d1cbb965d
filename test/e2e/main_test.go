// Package e2e runs pgtenant in-process in front of a real, throwaway
// PostgreSQL and talks to it with real clients (pgx, raw pgproto3, psql).
// Two tenants, acme and globex, share a table protected by Row-Level
// Security on the tenant context.
package e2e

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/rs/zerolog"

	"github.com/pgtenant/pgtenant/auth"
	"github.com/pgtenant/pgtenant/internal/pgcluster"
	"github.com/pgtenant/pgtenant/poolmgr"
	"github.com/pgtenant/pgtenant/proxy"
	"github.com/pgtenant/pgtenant/test/testpg"
	"github.com/pgtenant/pgtenant/test/testproxy"
)

const (
	database    = "e2e"
	appRole     = "e2e_app"
	appPassword = "e2e-app-password"
	setting     = "app.current_org"
)

// secret signs the test tokens.
var secret = []byte("e2e-secret-0123456789abcdef-0123456789")

// rows of the shared items table, by tenant.
var tenantRows = map[string][]string{
	"acme":   {"anvil", "rocket"},
	"globex": {"doomsday"},
}

const schema = `
CREATE TABLE items (
	id     bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
	org_id text NOT NULL DEFAULT current_setting('app.current_org', true),
	name   text NOT NULL
);
ALTER TABLE items ENABLE ROW LEVEL SECURITY;
ALTER TABLE items FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON items
	USING (org_id = current_setting('app.current_org', true))
	WITH CHECK (org_id = current_setting('app.current_org', true));
GRANT SELECT, INSERT, UPDATE, DELETE ON items TO e2e_app;
INSERT INTO items (org_id, name) VALUES ('acme', 'anvil'), ('acme', 'rocket'), ('globex', 'doomsday');

-- A PL/pgSQL function runs with the caller's context.
CREATE FUNCTION count_items() RETURNS bigint LANGUAGE plpgsql STABLE AS $$
BEGIN
	RETURN (SELECT count(*) FROM items);
END $$;

-- A table the application role owns, for VACUUM and CREATE INDEX CONCURRENTLY.
CREATE TABLE app_owned (id int, note text);
ALTER TABLE app_owned OWNER TO e2e_app;
GRANT CREATE ON SCHEMA public TO e2e_app;
`

func TestMain(m *testing.M) {
	settings, err := serverTLSSettings()
	if err != nil {
		fmt.Fprintln(os.Stderr, "e2e: server certificate:", err)
		os.Exit(1)
	}
	testpg.MainWith(m, testpg.Config{
		Cluster: pgcluster.Options{Settings: settings},
		Cleanup: func() { os.RemoveAll(backendTLS.dir) },
		Setup: func(ctx context.Context, c *pgcluster.Cluster) error {
			if err := c.CreateRole(ctx, appRole, appPassword); err != nil {
				return err
			}
			if err := c.CreateDatabase(ctx, database); err != nil {
				return err
			}
			return c.ExecIn(ctx, database, schema)
		}})
}

// env is one pgtenant server in front of the shared cluster.
type env struct {
	t       *testing.T
	cluster *pgcluster.Cluster
	srv     *proxy.Server
	addr    string
}

// startProxy starts pgtenant on a free loopback port; mutate may adjust the
// config first. The server is shut down when the test ends.
func startProxy(t *testing.T, mutate func(*proxy.Config, *auth.JWTConfig)) *env {
	t.Helper()
	return startProxyLogging(t, testLogger(t), mutate)
}

// startProxyLogging is startProxy with the proxy's log sent to log.
func startProxyLogging(t *testing.T, log zerolog.Logger, mutate func(*proxy.Config, *auth.JWTConfig)) *env {
	t.Helper()
	c := testpg.Cluster(t)
	backend, err := pgconn.ParseConfig(c.DSN(appRole, appPassword, database))
	if err != nil {
		t.Fatal(err)
	}
	cfg := proxy.Config{Backend: backend, Setting: setting}
	cfg.Pool.SetDefaults()
	cfg.Pool.WaitTimeout = 5 * time.Second
	jwtCfg := auth.JWTConfig{Secret: string(secret)}
	if mutate != nil {
		mutate(&cfg, &jwtCfg)
	}
	jwtCfg.SetDefaults()
	verifier, err := auth.NewVerifier(jwtCfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	srv, err := proxy.New(cfg, verifier, proxy.WithLogger(log))
	if err != nil {
		t.Fatal(err)
	}
	return &env{t: t, cluster: c, srv: srv, addr: testproxy.Serve(t, srv)}
}

// testLogger sends the proxy's log to the test's log, shown when it fails.
func testLogger(t *testing.T) zerolog.Logger {
	return zerolog.New(zerolog.ConsoleWriter{Out: zerolog.TestWriter{T: t}, NoColor: true}).Level(zerolog.DebugLevel)
}

// token mints a valid token for org.
func token(t testing.TB, org string) string {
	t.Helper()
	tok, err := auth.Mint(secret, auth.MintClaims{Org: org, Subject: "user-" + org, TTL: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

// dsn returns a URL that logs in through the proxy with password tok.
func (e *env) dsn(tok string) string {
	return "postgres://app:" + url.QueryEscape(tok) + "@" + e.addr + "/" + database + "?sslmode=disable"
}

// connect opens a pgx connection for org. pgx's default statement cache
// uses named prepared statements, and its describe modes reuse the unnamed
// statement in a second transaction; transaction pooling does not carry
// either across transactions yet. These tests use the exec mode: one round
// trip, unnamed statement, as with any transaction-pooling proxy.
func (e *env) connect(t testing.TB, org string) *pgx.Conn {
	t.Helper()
	cfg, err := pgx.ParseConfig(e.dsn(token(t, org)))
	if err != nil {
		t.Fatal(err)
	}
	cfg.DefaultQueryExecMode = pgx.QueryExecModeExec
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	conn, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		t.Fatalf("connect as %s: %v", org, err)
	}
	t.Cleanup(func() { conn.Close(context.Background()) })
	return conn
}

// superuser opens a direct superuser connection to the e2e database.
func superuser(t testing.TB) *pgx.Conn {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, testpg.Cluster(t).SuperuserDSN(database))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close(context.Background()) })
	return conn
}

// eventually polls cond every 50ms until it holds or 10s pass.
func eventually(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting until %s", what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// poolStat sums the pool manager's counters.
func (e *env) poolStat() poolmgr.Stat { return e.srv.Pools().Stat() }

// Short names for the config types mutate functions receive.
type (
	proxyConfig = proxy.Config
	jwtConfig   = auth.JWTConfig
)

func asPgError(err error, target **pgconn.PgError) bool { return errors.As(err, target) }

func containsString(s, sub string) bool { return strings.Contains(s, sub) }

func testpgCluster(t *testing.T) *pgcluster.Cluster { return testpg.Cluster(t) }

func writeFileString(path, content string) error { return os.WriteFile(path, []byte(content), 0o644) }
