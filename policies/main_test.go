package policies

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/pgtenant/pgtenant/test/testpg"
)

func TestMain(m *testing.M) { testpg.Main(m) }

// rolePassword is the password of every login role the tests create.
const rolePassword = "policies-test-password"

// testName derives an identifier of the test's own (see testpg.Name).
func testName(t testing.TB) string { return testpg.Name(t, "pol") }

func ctxT(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// tenantDB is a database of the test's own, owned by an owner role (a plain
// login role, not a superuser), with an application role like pgtenant's.
// Both roles and the database are dropped when the test ends.
type tenantDB struct {
	t     testing.TB
	name  string
	owner string
	app   string
	// created is set once the database exists: roles created from then on
	// are dropped before it.
	created bool
}

// newTenantDB creates the database and the two roles. PUBLIC loses TEMP on
// the database, as hardening requires.
func newTenantDB(t testing.TB) *tenantDB {
	t.Helper()
	base := testName(t)
	d := &tenantDB{t: t, name: base, owner: base + "_owner", app: base + "_app"}
	d.createRole(d.owner, "LOGIN")
	d.createRole(d.app, "LOGIN")
	ctx := ctxT(t)
	c := testpg.Cluster(t)
	if err := c.Exec(ctx, "CREATE DATABASE "+ident(d.name)+" OWNER "+ident(d.owner)); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		// Runs before the roles' cleanups, which were registered earlier.
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if err := c.Exec(ctx, "DROP DATABASE IF EXISTS "+ident(d.name)+" WITH (FORCE)"); err != nil {
			t.Errorf("dropping %s: %v", d.name, err)
		}
	})
	d.created = true
	d.exec(d.superuser(), "REVOKE TEMPORARY ON DATABASE "+ident(d.name)+" FROM PUBLIC")
	return d
}

// createRole creates a role with the test password and the given options
// (CREATE ROLE syntax), dropped when the test ends.
func (d *tenantDB) createRole(name, options string) {
	d.t.Helper()
	c := testpg.Cluster(d.t)
	afterDB := d.created
	err := c.Exec(ctxT(d.t), "CREATE ROLE "+ident(name)+" "+options+" PASSWORD '"+rolePassword+"'")
	if err != nil {
		d.t.Fatal(err)
	}
	d.t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		// Roles made after the database still hold privileges in it; the
		// database's own cleanup has not run yet for them, so it exists.
		if afterDB {
			_ = c.ExecIn(ctx, d.name, "DROP OWNED BY "+ident(name))
		}
		if err := c.Exec(ctx, "DROP ROLE IF EXISTS "+ident(name)); err != nil {
			d.t.Errorf("dropping role %s: %v", name, err)
		}
	})
}

// connect opens a connection to the database as role, closed when the test
// ends.
func (d *tenantDB) connect(role string) *pgx.Conn {
	d.t.Helper()
	ctx := ctxT(d.t)
	conn, err := pgx.Connect(ctx, testpg.Cluster(d.t).DSN(role, rolePassword, d.name))
	if err != nil {
		d.t.Fatalf("connect as %s: %v", role, err)
	}
	d.t.Cleanup(func() { conn.Close(context.Background()) })
	return conn
}

// superuser opens a superuser connection to the database.
func (d *tenantDB) superuser() *pgx.Conn {
	d.t.Helper()
	ctx := ctxT(d.t)
	conn, err := testpg.Cluster(d.t).Connect(ctx, d.name)
	if err != nil {
		d.t.Fatal(err)
	}
	d.t.Cleanup(func() { conn.Close(context.Background()) })
	return conn
}

// exec runs sql (several statements allowed) on conn and fails the test on
// error.
func (d *tenantDB) exec(conn *pgx.Conn, sql string) {
	d.t.Helper()
	if _, err := conn.Exec(ctxT(d.t), sql); err != nil {
		d.t.Fatalf("%s: %v", sql, err)
	}
}

// install runs Install as the owner with keys, granting to the app role.
func (d *tenantDB) install(owner *pgx.Conn, keys ...ContextKey) {
	d.t.Helper()
	if err := Install(ctxT(d.t), owner, InstallOptions{Keys: keys, AppRoles: []string{d.app}}); err != nil {
		d.t.Fatalf("Install: %v", err)
	}
}

// itemsDDL is a tenant table protected by the signed context, as the
// policies toolkit will create them.
// The rows go in first: once RLS is forced, the owner is held to the
// policy too.
const itemsDDL = `
CREATE TABLE items (org_id text NOT NULL, v text NOT NULL);
INSERT INTO items VALUES ('acme', 'anvil'), ('acme', 'rocket'), ('globex', 'doomsday');
ALTER TABLE items ENABLE ROW LEVEL SECURITY;
ALTER TABLE items FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON items
	USING (org_id = tenancy.current_org())
	WITH CHECK (org_id = tenancy.current_org());
`

// withItems installs the tenancy schema with keys and creates the items
// table, readable and writable by the app role.
func (d *tenantDB) withItems(keys ...ContextKey) (owner *pgx.Conn) {
	d.t.Helper()
	owner = d.connect(d.owner)
	d.install(owner, keys...)
	d.exec(owner, itemsDDL+"GRANT SELECT, INSERT, UPDATE, DELETE ON items TO "+ident(d.app))
	return owner
}

// identity returns the backend identity of conn as the proxy reads it.
func identity(t testing.TB, conn *pgx.Conn) int64 {
	t.Helper()
	ctx := ctxT(t)
	var citus bool
	if err := conn.QueryRow(ctx, DetectCitusQuery).Scan(&citus); err != nil {
		t.Fatal(err)
	}
	var id int64
	if err := conn.QueryRow(ctx, BackendIdentityQuery(citus)).Scan(&id); err != nil {
		t.Fatal(err)
	}
	return id
}

// visible runs one transaction on conn that sets the context as the proxy
// does (SET LOCAL of the token and, when not empty, app.current_org) and
// returns the items it sees.
func visible(t testing.TB, conn *pgx.Conn, token, currentOrg string) ([]string, error) {
	t.Helper()
	var got []string
	err := pgx.BeginFunc(ctxT(t), conn, func(tx pgx.Tx) error {
		ctx := ctxT(t)
		if token != "" {
			if _, err := tx.Exec(ctx, "SET LOCAL "+TokenSetting+" TO '"+token+"'"); err != nil {
				return err
			}
		}
		if currentOrg != "" {
			if _, err := tx.Exec(ctx, "SET LOCAL app.current_org TO '"+currentOrg+"'"); err != nil {
				return err
			}
		}
		rows, err := tx.Query(ctx, "SELECT v FROM items ORDER BY v")
		if err != nil {
			return err
		}
		got, err = pgx.CollectRows(rows, pgx.RowTo[string])
		return err
	})
	return got, err
}

// sqlState returns the SQLSTATE of err, or "" when it carries none.
func sqlState(err error) string {
	var pe *pgconn.PgError
	if errors.As(err, &pe) {
		return pe.Code
	}
	return ""
}

func ident(s string) string { return pgx.Identifier{s}.Sanitize() }
