package tenants

import (
	"bytes"
	"context"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/pgtenant/pgtenant/policies"
	"github.com/pgtenant/pgtenant/test/testpg"
)

func TestMain(m *testing.M) { testpg.Main(m) }

// rolePassword is the password of every login role the tests create.
const rolePassword = "tenants-test-password"

// controlDB is a database of the test's own with the tenancy schema
// installed by its owner role (a plain login role), and an application role
// like pgtenant's. The roles and the database are dropped when the test
// ends.
type controlDB struct {
	t     testing.TB
	name  string
	owner string
	app   string
}

// newControlDB creates the roles and the database and installs the
// tenancy schema as the owner.
func newControlDB(t testing.TB) *controlDB {
	t.Helper()
	base := testpg.Name(t, "ten")
	d := &controlDB{t: t, name: base, owner: base + "_owner", app: base + "_app"}
	c := testpg.Cluster(t)
	ctx := testpg.Context(t)
	for _, role := range []string{d.owner, d.app} {
		if err := c.CreateRole(ctx, role, rolePassword); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() {
			ctx, cancel := context.WithTimeout(context.Background(), testpg.StepTimeout)
			defer cancel()
			if err := c.Exec(ctx, "DROP ROLE IF EXISTS "+ident(role)); err != nil {
				t.Errorf("dropping role %s: %v", role, err)
			}
		})
	}
	if err := c.Exec(ctx, "CREATE DATABASE "+ident(d.name)+" OWNER "+ident(d.owner)); err != nil {
		t.Fatal(err)
	}
	// Registered after the roles', so it runs before them.
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), testpg.StepTimeout)
		defer cancel()
		if err := c.Exec(ctx, "DROP DATABASE IF EXISTS "+ident(d.name)+" WITH (FORCE)"); err != nil {
			t.Errorf("dropping %s: %v", d.name, err)
		}
	})
	owner := d.connect(d.owner)
	err := policies.Install(ctx, owner, policies.InstallOptions{
		Keys:     []policies.ContextKey{{ID: "primary", Secret: bytes.Repeat([]byte("k"), 32)}},
		AppRoles: []string{d.app},
	})
	if err != nil {
		t.Fatalf("installing the tenancy schema: %v", err)
	}
	return d
}

// dsn returns the DSN of the database as role.
func (d *controlDB) dsn(role string) string {
	return testpg.Cluster(d.t).DSN(role, rolePassword, d.name)
}

// connect opens a connection as role, closed when the test ends.
func (d *controlDB) connect(role string) *pgx.Conn {
	d.t.Helper()
	conn, err := pgx.Connect(testpg.Context(d.t), d.dsn(role))
	if err != nil {
		d.t.Fatalf("connecting as %s: %v", role, err)
	}
	d.t.Cleanup(func() { conn.Close(context.Background()) })
	return conn
}

// superuser opens a superuser connection to the database, closed when the
// test ends.
func (d *controlDB) superuser() *pgx.Conn {
	d.t.Helper()
	conn, err := testpg.Cluster(d.t).Connect(testpg.Context(d.t), d.name)
	if err != nil {
		d.t.Fatal(err)
	}
	d.t.Cleanup(func() { conn.Close(context.Background()) })
	return conn
}

// store returns a Store on a pool of the owner's connections, closed when
// the test ends.
func (d *controlDB) store() *Store {
	d.t.Helper()
	pool, err := pgxpool.New(testpg.Context(d.t), d.dsn(d.owner))
	if err != nil {
		d.t.Fatal(err)
	}
	d.t.Cleanup(pool.Close)
	return NewStore(pool)
}

// exec runs sql on conn and fails the test on error.
func exec(t testing.TB, conn *pgx.Conn, sql string, args ...any) {
	t.Helper()
	if _, err := conn.Exec(testpg.Context(t), sql, args...); err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
}

// eventually polls cond until it holds, failing the test when it does not
// within 10 seconds.
func eventually(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within 10s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func ident(s string) string { return pgx.Identifier{s}.Sanitize() }
