package e2e

import (
	"context"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/pgtenant/pgtenant/test/testpg"
)

func show(t *testing.T, conn *pgx.Conn, setting string) string {
	t.Helper()
	var v string
	if err := conn.QueryRow(testpg.Context(t), "SELECT current_setting($1)", setting).Scan(&v); err != nil {
		t.Fatal(err)
	}
	return v
}

func run(t *testing.T, conn *pgx.Conn, sql string) {
	t.Helper()
	if _, err := conn.Exec(testpg.Context(t), sql); err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
}

func TestSessionSettingsStayWithTheirClientOnASharedBackend(t *testing.T) {
	e := startProxy(t, func(c *proxyConfig, _ *jwtConfig) { c.Pool.Size = 1 })
	a, b := e.connect(t, "acme"), e.connect(t, "acme")
	defaults := map[string]string{}
	for _, s := range []string{"search_path", "TimeZone", "work_mem", "DateStyle", "xmloption"} {
		defaults[s] = show(t, b, s)
	}
	run(t, a, "SET search_path = pg_catalog, public")
	run(t, a, "SET TIME ZONE 'Asia/Tokyo'")
	run(t, a, "SET SESSION work_mem = '7MB'")
	run(t, a, "SELECT 1; SET DateStyle = 'German'")
	run(t, a, "SET XML OPTION DOCUMENT")
	want := map[string]string{"search_path": "pg_catalog, public", "TimeZone": "Asia/Tokyo", "work_mem": "7MB", "DateStyle": "German, DMY", "xmloption": "document"}
	for i := 0; i < 3; i++ { // the two clients alternate on the tenant's only backend
		for s, v := range want {
			if got := show(t, a, s); got != v {
				t.Errorf("round %d: a's %s = %q, want %q", i, s, got, v)
			}
			if got := show(t, b, s); got != defaults[s] {
				t.Errorf("round %d: b sees a's %s = %q (default %q)", i, s, got, defaults[s])
			}
		}
	}
	// A rolled-back SET changes nothing; RESET undoes.
	run(t, a, "BEGIN")
	run(t, a, "SET work_mem = '5MB'")
	run(t, a, "ROLLBACK")
	if got := show(t, a, "work_mem"); got != "7MB" {
		t.Errorf("after a rolled-back SET: work_mem = %q, want 7MB", got)
	}
	run(t, a, "RESET work_mem")
	if got := show(t, a, "work_mem"); got != defaults["work_mem"] {
		t.Errorf("after RESET: work_mem = %q, want %q", got, defaults["work_mem"])
	}
	run(t, a, "RESET ALL")
	if got := show(t, a, "search_path"); got != defaults["search_path"] {
		t.Errorf("after RESET ALL: search_path = %q", got)
	}
	// set_config with a literal name is followed like SET, in either
	// protocol; a transaction-local one changes nothing after the
	// transaction.
	run(t, a, "SELECT set_config('work_mem', '3MB', false)")
	if _, err := a.Exec(testpg.Context(t), "SELECT pg_catalog.set_config('myapp.user_id', $1, false)", "u-42"); err != nil {
		t.Fatal(err)
	}
	run(t, a, "SELECT set_config('search_path', 'pg_catalog', true)")
	for i := 0; i < 3; i++ {
		if got := show(t, a, "work_mem") + " " + show(t, a, "myapp.user_id") + " " + show(t, a, "search_path"); got != "3MB u-42 "+defaults["search_path"] {
			t.Errorf("round %d: a's set_config settings: %q", i, got)
		}
		if got := show(t, b, "work_mem"); got != defaults["work_mem"] {
			t.Errorf("round %d: b sees a's set_config: work_mem = %q", i, got)
		}
		var user *string
		if err := b.QueryRow(testpg.Context(t), "SELECT current_setting('myapp.user_id', true)").Scan(&user); err != nil || user != nil && *user != "" {
			t.Errorf("round %d: b sees a's myapp.user_id %v, %v", i, user, err)
		}
	}
}

// A DO block's body is not read: its backend connection is closed after
// it, so a SET inside reaches no other client. (These proxies have no
// statement guard, which refuses DO blocks unless do_block is allowed.)
func TestASetInsideADoBlockReachesNoOtherClient(t *testing.T) {
	e := startProxy(t, func(c *proxyConfig, _ *jwtConfig) { c.Pool.Size = 1 })
	a, b := e.connect(t, "acme"), e.connect(t, "acme")
	def := show(t, b, "work_mem")
	run(t, a, "DO $$BEGIN SET work_mem = '11MB'; END$$")
	if got := show(t, b, "work_mem"); got != def {
		t.Errorf("b sees the work_mem of a's DO block: %q, default %q", got, def)
	}
}

// JDBC's setTransactionIsolation and setReadOnly send SET SESSION
// CHARACTERISTICS, which changes the session's transaction defaults.
func TestSessionCharacteristicsStayWithTheirClient(t *testing.T) {
	e := startProxy(t, func(c *proxyConfig, _ *jwtConfig) { c.Pool.Size = 1 })
	a, b := e.connect(t, "acme"), e.connect(t, "acme")
	run(t, a, "SET SESSION CHARACTERISTICS AS TRANSACTION ISOLATION LEVEL SERIALIZABLE, READ ONLY")
	for i := 0; i < 3; i++ { // the two clients alternate on the tenant's only backend
		if got := show(t, a, "transaction_isolation"); got != "serializable" {
			t.Errorf("round %d: a's isolation = %q", i, got)
		}
		if got := show(t, a, "transaction_read_only"); got != "on" {
			t.Errorf("round %d: a's transaction_read_only = %q", i, got)
		}
		if got := show(t, b, "transaction_isolation"); got != "read committed" {
			t.Errorf("round %d: b sees a's isolation %q", i, got)
		}
		if got := show(t, b, "transaction_read_only"); got != "off" {
			t.Errorf("round %d: b sees a's transaction_read_only %q", i, got)
		}
	}
	run(t, a, "SET SESSION CHARACTERISTICS AS TRANSACTION READ WRITE")
	if got := show(t, a, "transaction_read_only"); got != "off" {
		t.Errorf("after READ WRITE: transaction_read_only = %q", got)
	}
}

func TestStartupParametersAndOptionsApplyToEveryTransaction(t *testing.T) {
	e := startProxy(t, func(c *proxyConfig, _ *jwtConfig) { c.Pool.Size = 1 })
	plain := e.connect(t, "acme")
	cfg, err := pgx.ParseConfig(e.dsn(token(t, "acme")))
	if err != nil {
		t.Fatal(err)
	}
	cfg.DefaultQueryExecMode = pgx.QueryExecModeExec
	cfg.RuntimeParams["application_name"] = "billing-worker"
	cfg.RuntimeParams["TimeZone"] = "America/New_York"
	cfg.RuntimeParams["search_path"] = "pg_catalog, public"
	cfg.RuntimeParams["options"] = "-c work_mem=9MB --statement-timeout=123s"
	conn, err := pgx.ConnectConfig(testpg.Context(t), cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())
	if got := conn.PgConn().ParameterStatus("application_name"); got != "billing-worker" {
		t.Errorf("ParameterStatus application_name = %q", got)
	}
	for i := 0; i < 2; i++ {
		for s, v := range map[string]string{"application_name": "billing-worker", "TimeZone": "America/New_York",
			"search_path": "pg_catalog, public", "work_mem": "9MB", "statement_timeout": "123s"} {
			if got := show(t, conn, s); got != v {
				t.Errorf("%s = %q, want %q", s, got, v)
			}
		}
		if got := show(t, plain, "application_name"); got == "billing-worker" {
			t.Error("another client sees the application_name")
		}
	}
}

func TestReservedSettingsCannotBeSetAtStartup(t *testing.T) {
	e := startProxy(t, nil)
	for _, opt := range []string{"-c app.current_org=globex", "-c role=postgres", "-c row_security=off", "-c session_authorization=postgres"} {
		cfg, err := pgconn.ParseConfig(e.dsn(token(t, "acme")))
		if err != nil {
			t.Fatal(err)
		}
		cfg.RuntimeParams["options"] = opt
		_, err = pgconn.ConnectConfig(testpg.Context(t), cfg)
		if testpg.SQLState(err) != "42501" {
			t.Errorf("options %q: got %v, want SQLSTATE 42501", opt, err)
		}
	}
}

func TestBadStartupSettingsFailTheLoginWithPostgreSQLsError(t *testing.T) {
	e := startProxy(t, nil)
	for _, tc := range []struct {
		param, value, code string
	}{
		{"options", "-c work_mem=banana", "22023"},
		{"TimeZone", "Not/AZone", "22023"},
		{"options", "-c no_such_setting=1", "42704"},
	} {
		cfg, err := pgconn.ParseConfig(e.dsn(token(t, "acme")))
		if err != nil {
			t.Fatal(err)
		}
		cfg.RuntimeParams[tc.param] = tc.value
		_, err = pgconn.ConnectConfig(testpg.Context(t), cfg)
		if testpg.SQLState(err) != tc.code {
			t.Errorf("%s=%s: got %v, want SQLSTATE %s", tc.param, tc.value, err, tc.code)
		}
	}
}
