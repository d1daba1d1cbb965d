package policies

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// tenancyState is what Install leaves in the catalogs: the schema's objects
// with their owners and privileges, the version and the stored keys.
const tenancyState = `
SELECT pg_catalog.string_agg(line, E'\n' ORDER BY line) FROM (
	SELECT 'schema ' || nspname || ' ' || nspowner::regrole || ' ' || coalesce(nspacl::text, '')
		FROM pg_namespace WHERE nspname = 'tenancy'
	UNION ALL
	SELECT 'rel ' || relname || ' ' || relowner::regrole || ' ' || coalesce(relacl::text, '')
		FROM pg_class WHERE relnamespace = 'tenancy'::regnamespace
	UNION ALL
	SELECT 'proc ' || oid::regprocedure || ' ' || proowner::regrole || ' ' || coalesce(proacl::text, '') || ' ' || md5(prosrc)
		FROM pg_proc WHERE pronamespace = 'tenancy'::regnamespace
	UNION ALL
	SELECT 'version ' || version FROM tenancy.schema_version
	UNION ALL
	SELECT 'key ' || key_id || ' ' || md5(inner_key) || ' ' || md5(outer_key) || ' ' || created_at
		FROM tenancy.context_keys
) s(line)`

func state(t testing.TB, conn *pgx.Conn) string {
	t.Helper()
	var s string
	if err := conn.QueryRow(ctxT(t), tenancyState).Scan(&s); err != nil {
		t.Fatal(err)
	}
	return s
}

func TestInstallTwiceChangesNothing(t *testing.T) {
	t.Parallel()
	d := newTenantDB(t)
	owner := d.connect(d.owner)
	d.install(owner, keyA, keyB)
	first := state(t, owner)
	d.install(owner, keyA, keyB)
	if second := state(t, owner); second != first {
		t.Errorf("a second install changed the tenancy schema:\nfirst:\n%s\nsecond:\n%s", first, second)
	}
	for _, want := range []string{fmt.Sprint("version ", SchemaVersion), "key primary", "key next-2", "tenancy.current_org()"} {
		if !strings.Contains(first, want) {
			t.Errorf("installed state lacks %q:\n%s", want, first)
		}
	}
	var version int
	if err := owner.QueryRow(ctxT(t), "SELECT version FROM tenancy.schema_version").Scan(&version); err != nil || version != SchemaVersion {
		t.Errorf("schema_version = %d (%v), want SchemaVersion %d", version, err, SchemaVersion)
	}
}

func TestInstallStoresPadsNotTheKey(t *testing.T) {
	t.Parallel()
	d := newTenantDB(t)
	owner := d.connect(d.owner)
	d.install(owner, keyA)
	var inner, outer []byte
	if err := owner.QueryRow(ctxT(t), "SELECT inner_key, outer_key FROM tenancy.context_keys WHERE key_id = $1", keyA.ID).Scan(&inner, &outer); err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(inner), string(keyA.Secret)) || strings.Contains(string(outer), string(keyA.Secret)) {
		t.Error("the secret is stored as it is")
	}
	for i := range inner {
		if inner[i]^0x36 != outer[i]^0x5c {
			t.Fatalf("byte %d: the pads are not the same key XOR ipad and opad", i)
		}
	}
}

func TestRotationAcceptsBothKeysUntilTheOldOneIsDropped(t *testing.T) {
	t.Parallel()
	d := newTenantDB(t)
	owner := d.withItems(keyA, keyB)
	app := d.connect(d.app)
	pid := identity(t, app)
	byNew, _ := mustSigner(t, 0, keyB, keyA).Sign("acme", pid, time.Now())
	byOld, _ := mustSigner(t, 0, keyA).Sign("acme", pid, time.Now())
	for _, tok := range []string{byNew, byOld} {
		if got, err := visible(t, app, tok, ""); err != nil || len(got) != 2 {
			t.Fatalf("during rotation: %q, %v", got, err)
		}
	}
	d.install(owner, keyB)
	if got, err := visible(t, app, byNew, ""); err != nil || len(got) != 2 {
		t.Fatalf("new key after rotation: %q, %v", got, err)
	}
	if _, err := visible(t, app, byOld, ""); sqlState(err) != SQLStateForged {
		t.Fatalf("dropped key after rotation: err = %v, want SQLSTATE %s", err, SQLStateForged)
	}
}

func TestAppRoleCanOnlyCallCurrentOrg(t *testing.T) {
	t.Parallel()
	d := newTenantDB(t)
	d.withItems(keyA)
	app := d.connect(d.app)
	ctx := ctxT(t)
	for _, sql := range []string{
		"SELECT * FROM tenancy.context_keys",
		"SELECT * FROM tenancy.audit_events",
		"INSERT INTO tenancy.audit_events (at, reason) VALUES (now(), 'forged')",
		"INSERT INTO tenancy.context_keys VALUES ('x', '\\x00', '\\x00')",
		"UPDATE tenancy.context_keys SET key_id = key_id",
		"SELECT * FROM tenancy.schema_version",
		"SELECT tenancy.backend_identity()",
		"SELECT nextval('tenancy.audit_events_id_seq')",
		"CREATE TABLE tenancy.shadow (x int)",
	} {
		if _, err := app.Exec(ctx, sql); sqlState(err) != "42501" {
			t.Errorf("%s: err = %v, want SQLSTATE 42501", sql, err)
		}
	}
	var org *string
	if err := app.QueryRow(ctx, "SELECT tenancy.current_org()").Scan(&org); err != nil || org != nil {
		t.Errorf("current_org() without a token = %v, %v; want NULL", org, err)
	}
}

func TestInstallRefusesRolesTenantsCouldActAs(t *testing.T) {
	t.Parallel()
	d := newTenantDB(t)
	member, outsider, super := d.name+"_member", d.name+"_outsider", d.name+"_super"
	d.createRole(member, "LOGIN")
	d.createRole(outsider, "LOGIN")
	d.createRole(super, "LOGIN SUPERUSER")
	su := d.superuser()
	d.exec(su, "GRANT "+ident(d.owner)+" TO "+ident(member))
	ctx := ctxT(t)
	fresh := func(role string, roles ...string) error {
		return Install(ctx, d.connect(role), InstallOptions{Keys: []ContextKey{keyA}, AppRoles: roles})
	}
	for _, tc := range []struct {
		name string
		err  error
		want string
	}{
		{"as the app role", fresh(d.app, d.app), "connected as the application role"},
		{"app role is a member of the installer", fresh(d.owner, member), "is a member of"},
		{"superuser app role", fresh(d.owner, super), "is a superuser"},
		{"installer cannot create schemas", fresh(outsider, d.app), "cannot create schemas"},
		{"unknown app role", fresh(d.owner, "no_such_role_xyz"), `"no_such_role_xyz" does not exist`},
		{"no app role", fresh(d.owner), "no application role"},
		{"no key", Install(ctx, d.connect(d.owner), InstallOptions{AppRoles: []string{d.app}}), "no context key"},
	} {
		if tc.err == nil || !strings.Contains(tc.err.Error(), tc.want) {
			t.Errorf("%s: err = %v, want one containing %q", tc.name, tc.err, tc.want)
		}
	}
	var exists bool
	if err := su.QueryRow(ctx, "SELECT to_regnamespace('tenancy') IS NOT NULL").Scan(&exists); err != nil || exists {
		t.Fatalf("a refused install left the tenancy schema behind (%v)", err)
	}

	// Once the owner installed, another role (here one that may create
	// schemas) cannot take over.
	d.install(d.connect(d.owner), keyA)
	d.exec(su, "GRANT CREATE ON DATABASE "+ident(d.name)+" TO "+ident(outsider))
	if err := fresh(outsider, d.app); err == nil || !strings.Contains(err.Error(), "is owned by "+d.owner) {
		t.Errorf("install by a non-owner: err = %v, want one naming the owner", err)
	}
	// A superuser may install, but not for a member of the schema's owner.
	if err := fresh(super, member); err == nil || !strings.Contains(err.Error(), "is a member of "+d.owner) {
		t.Errorf("superuser install for a member of the owner: err = %v", err)
	}
}

func TestInstallRefusesANewerSchema(t *testing.T) {
	t.Parallel()
	d := newTenantDB(t)
	owner := d.connect(d.owner)
	d.install(owner, keyA)
	d.exec(owner, "UPDATE tenancy.schema_version SET version = version + 1")
	err := Install(ctxT(t), owner, InstallOptions{Keys: []ContextKey{keyA}, AppRoles: []string{d.app}})
	if err == nil || !strings.Contains(err.Error(), "newer than this pgtenant") {
		t.Fatalf("err = %v, want a refusal to downgrade", err)
	}
}
