package policies

import (
	"context"
	_ "embed"
	"errors"
	"fmt"
	"slices"

	"github.com/jackc/pgx/v5"
)

// SchemaVersion is the version of the tenancy schema Install leaves, that
// of the last of its migrations, recorded in tenancy.schema_version.
const SchemaVersion = 2

// tenancySQL is the DDL of version 1 of the tenancy schema: the context keys,
// current_org() and the audit table. It stores no key and grants nothing to
// application roles.
//
//go:embed tenancy.sql
var tenancySQL string

// registrySQL is the DDL of version 2: the tenant registry (orgs, members,
// history). It grants nothing to application roles.
//
//go:embed registry.sql
var registrySQL string

// migration is the DDL that brings the tenancy schema to version.
type migration struct {
	version int
	sql     string
}

// migrations are the versions of the tenancy schema, oldest first, the last
// at SchemaVersion. Every statement in them is idempotent, so Install runs
// them all, every time, whatever version the database is at: a new version
// is a new file appended here, never an edit that assumes an older one ran.
var migrations = []migration{
	{version: 1, sql: tenancySQL},
	{version: 2, sql: registrySQL},
}

// installLockKey serializes concurrent installs in one database
// (pg_advisory_xact_lock); the value is arbitrary but fixed.
const installLockKey = 0x7067746e_616e6379 // "pgtnancy"

// InstallOptions says what Install stores and whom it grants the context
// function to.
type InstallOptions struct {
	// Keys are the context keys the database accepts, usually Signer.Keys().
	// Keys in tenancy.context_keys that are not listed are removed, which
	// ends a rotation window. At least one is required.
	Keys []ContextKey
	// AppRoles are the roles pgtenant connects as. Each gets USAGE on the
	// tenancy schema and EXECUTE on tenancy.current_org(), and loses any
	// other privilege on the schema's objects. At least one is required.
	AppRoles []string
}

func (o InstallOptions) validate() error {
	if len(o.Keys) == 0 {
		return errors.New("no context key to install: configure at least one")
	}
	ids := make([]string, 0, len(o.Keys))
	for _, k := range o.Keys {
		if err := k.Validate(); err != nil {
			return err
		}
		if slices.Contains(ids, k.ID) {
			return fmt.Errorf("context key id %s is configured twice", k.ID)
		}
		ids = append(ids, k.ID)
	}
	return checkAppRoles(o.AppRoles)
}

// checkAppRoles requires at least one application role, none empty.
func checkAppRoles(roles []string) error {
	if len(roles) == 0 {
		return errors.New("no application role: name the role(s) pgtenant connects as")
	}
	if slices.Contains(roles, "") {
		return errors.New("an application role name is empty")
	}
	return nil
}

// Install makes the connected database ready for signed tenant contexts and
// the tenant registry, in one transaction: it runs the migrations up to
// SchemaVersion and records that version, stores opts.Keys (and removes the
// keys no longer listed), and grants opts.AppRoles exactly what they need.
// Running it again with the same options changes nothing. It refuses, before
// changing anything, a schema at a version newer than SchemaVersion, which
// a newer pgtenant installed.
//
// conn must be connected as the role that owns the tenancy schema (or will,
// when it does not exist yet) or as a superuser, and that role must be
// neither an application role nor one an application role is a member of,
// or the tenants could read the keys. Install checks both before changing
// anything. conn must not be in a transaction.
func Install(ctx context.Context, conn *pgx.Conn, opts InstallOptions) error {
	if err := opts.validate(); err != nil {
		return err
	}
	return pgx.BeginFunc(ctx, conn, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, "SELECT pg_catalog.pg_advisory_xact_lock($1)", int64(installLockKey)); err != nil {
			return err
		}
		if err := checkInstaller(ctx, tx, opts.AppRoles); err != nil {
			return err
		}
		if err := migrate(ctx, tx); err != nil {
			return err
		}
		if err := storeKeys(ctx, tx, opts.Keys); err != nil {
			return err
		}
		return grantAppRoles(ctx, tx, opts.AppRoles)
	})
}

// migrate brings the tenancy schema to SchemaVersion: it checks the
// installed version is not newer, runs every migration in order and records
// the version.
func migrate(ctx context.Context, tx pgx.Tx) error {
	installed, err := installedVersion(ctx, tx)
	if err != nil {
		return err
	}
	if installed > SchemaVersion {
		return fmt.Errorf("the tenancy schema is at version %d, newer than this pgtenant's (%d): "+
			"run pgtenant policies install from the pgtenant release that installed it, or a later one", installed, SchemaVersion)
	}
	for _, m := range migrations {
		if _, err := tx.Exec(ctx, m.sql); err != nil {
			return fmt.Errorf("installing version %d of the tenancy schema: %w", m.version, err)
		}
	}
	_, err = tx.Exec(ctx, `
		INSERT INTO tenancy.schema_version AS v (version) VALUES ($1)
		ON CONFLICT (singleton) DO UPDATE SET version = EXCLUDED.version, installed_at = EXCLUDED.installed_at
			WHERE v.version IS DISTINCT FROM EXCLUDED.version`, SchemaVersion)
	if err != nil {
		return fmt.Errorf("recording version %d of the tenancy schema: %w", SchemaVersion, err)
	}
	return nil
}

// installedVersion returns the version recorded in tenancy.schema_version,
// 0 when the schema or the table does not exist yet.
func installedVersion(ctx context.Context, tx pgx.Tx) (int, error) {
	var exists bool
	err := tx.QueryRow(ctx, "SELECT pg_catalog.to_regclass('tenancy.schema_version') IS NOT NULL").Scan(&exists)
	if err != nil {
		return 0, fmt.Errorf("looking for tenancy.schema_version: %w", err)
	}
	if !exists {
		return 0, nil
	}
	var version int
	if err := tx.QueryRow(ctx, "SELECT coalesce(max(version), 0) FROM tenancy.schema_version").Scan(&version); err != nil {
		return 0, fmt.Errorf("reading the installed version of the tenancy schema: %w", err)
	}
	return version, nil
}

// checkInstaller refuses to install as a role that cannot own the schema or
// that an application role could act as.
func checkInstaller(ctx context.Context, tx pgx.Tx, appRoles []string) error {
	var (
		user                 string
		superuser, canCreate bool
		owner                *string
		ownerOK              *bool
	)
	err := tx.QueryRow(ctx, `
		SELECT current_user, r.rolsuper,
			pg_catalog.has_database_privilege(pg_catalog.current_database(), 'CREATE'),
			n.nspowner::regrole::text,
			pg_catalog.pg_has_role(n.nspowner, 'USAGE')
		FROM pg_catalog.pg_roles r
		LEFT JOIN pg_catalog.pg_namespace n ON n.nspname = 'tenancy'
		WHERE r.rolname = current_user`).Scan(&user, &superuser, &canCreate, &owner, &ownerOK)
	if err != nil {
		return fmt.Errorf("checking the installing role: %w", err)
	}
	// The keys' future owner: the schema's owner, or the installing role.
	keyOwner := user
	if owner != nil {
		keyOwner = *owner
	}
	rows, err := tx.Query(ctx, `
		SELECT a.name, r.rolname IS NOT NULL, coalesce(r.rolsuper, false),
			r.rolname IS NOT NULL AND pg_catalog.pg_has_role(r.oid, coalesce(
				(SELECT nspowner FROM pg_catalog.pg_namespace WHERE nspname = 'tenancy'),
				(SELECT oid FROM pg_catalog.pg_roles WHERE rolname = current_user)), 'MEMBER')
		FROM pg_catalog.unnest($1::text[]) AS a(name)
		LEFT JOIN pg_catalog.pg_roles r ON r.rolname = a.name`, appRoles)
	if err != nil {
		return fmt.Errorf("checking the application roles: %w", err)
	}
	var name string
	var exists, super, member bool
	_, err = pgx.ForEachRow(rows, []any{&name, &exists, &super, &member}, func() error {
		switch {
		case !exists:
			return fmt.Errorf("application role %q does not exist", name)
		case name == user:
			return fmt.Errorf("connected as the application role %s: install as the owner role, which the tenants must not be able to act as", user)
		case super:
			return fmt.Errorf("application role %s is a superuser, so tenants could read the context keys and ignore Row-Level Security; "+
				"ALTER ROLE %s NOSUPERUSER first", name, name)
		case member:
			return fmt.Errorf("application role %s is a member of %s, which owns the tenancy schema, so tenants could read the context keys; "+
				"REVOKE %s FROM %s (or install as a role it is not a member of)", name, keyOwner, keyOwner, name)
		}
		return nil
	})
	if err != nil {
		return err
	}
	switch {
	case superuser:
	case owner != nil && !*ownerOK:
		return fmt.Errorf("the tenancy schema is owned by %s; connect as %s or a superuser to install (connected as %s)", *owner, *owner, user)
	case owner == nil && !canCreate:
		return fmt.Errorf("role %s cannot create schemas in this database; connect as the database owner or a superuser to install, "+
			"or GRANT CREATE ON DATABASE to the role that should own the tenancy schema", user)
	}
	return nil
}

// storeKeys upserts keys as HMAC pads and deletes the others.
func storeKeys(ctx context.Context, tx pgx.Tx, keys []ContextKey) error {
	ids := make([]string, len(keys))
	for i, k := range keys {
		ids[i] = k.ID
		inner, outer := k.pads()
		_, err := tx.Exec(ctx, `
			INSERT INTO tenancy.context_keys AS k (key_id, inner_key, outer_key) VALUES ($1, $2, $3)
			ON CONFLICT (key_id) DO UPDATE
				SET inner_key = EXCLUDED.inner_key, outer_key = EXCLUDED.outer_key, created_at = EXCLUDED.created_at
				WHERE (k.inner_key, k.outer_key) IS DISTINCT FROM (EXCLUDED.inner_key, EXCLUDED.outer_key)`,
			k.ID, inner, outer)
		if err != nil {
			return fmt.Errorf("storing context key %s: %w", k.ID, err)
		}
	}
	if _, err := tx.Exec(ctx, "DELETE FROM tenancy.context_keys WHERE key_id <> ALL($1::text[])", ids); err != nil {
		return fmt.Errorf("removing context keys no longer configured: %w", err)
	}
	return nil
}

// grantAppRoles leaves each application role with USAGE on the schema and
// EXECUTE on current_org() and nothing else there that the installing role
// granted.
func grantAppRoles(ctx context.Context, tx pgx.Tx, roles []string) error {
	for _, r := range roles {
		id := pgx.Identifier{r}.Sanitize()
		_, err := tx.Exec(ctx, ""+
			"REVOKE ALL ON ALL TABLES IN SCHEMA tenancy FROM "+id+";"+
			"REVOKE ALL ON ALL SEQUENCES IN SCHEMA tenancy FROM "+id+";"+
			"REVOKE ALL ON ALL FUNCTIONS IN SCHEMA tenancy FROM "+id+";"+
			"REVOKE ALL ON SCHEMA tenancy FROM "+id+";"+
			"GRANT USAGE ON SCHEMA tenancy TO "+id+";"+
			"GRANT EXECUTE ON FUNCTION tenancy.current_org() TO "+id)
		if err != nil {
			return fmt.Errorf("granting the tenancy schema to %s: %w", r, err)
		}
	}
	return nil
}
