package policies

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/jackc/pgx/v5"
)

// Finding severities. An error leaves a way for one tenant to reach another
// tenant's rows or disrupt it; a warning is a gap to close.
const (
	SeverityError   = "error"
	SeverityWarning = "warning"
)

// Hardening check names: stable labels for reports.
const (
	CheckSuperuser        = "superuser"
	CheckBypassRLS        = "bypassrls"
	CheckOwnsTenantTable  = "owns_tenant_table"
	CheckPrivilegedMember = "member_of_privileged_role"
	CheckTemp             = "temp"
	CheckTablePrivileges  = "tenant_table_privileges"
	CheckSharedSequences  = "shared_sequence_update"
	CheckRLSEnabled       = "rls_enabled"
	CheckRLSForced        = "rls_forced"
	CheckCreateOnSchema   = "create_on_schema"
	CheckTenancySchema    = "tenancy_schema"
	CheckTenancyGrants    = "tenancy_privileges"
	CheckViews            = "view_bypasses_rls"
)

// Finding is one gap CheckHardening found.
type Finding struct {
	// Check is one of the Check* names.
	Check string
	// Severity is SeverityError or SeverityWarning.
	Severity string
	// Message says what is wrong, then "Fix: " and the SQL statements (or,
	// for the tenancy schema, the command) that fix it.
	Message string
}

func (f Finding) String() string { return f.Severity + " [" + f.Check + "] " + f.Message }

// tenantTablesCTE selects the tenant tables of the current database: tables
// and partitions outside the system schemas and tenancy with Row-Level
// Security enabled or an org_id column. Partitions count on their own, since
// querying a partition directly applies its policies, not its parent's.
const tenantTablesCTE = `
	WITH tenant AS (
		SELECT c.oid, c.relowner, c.relrowsecurity, c.relforcerowsecurity, n.nspname,
			pg_catalog.format('%I.%I', n.nspname, c.relname) AS name
		FROM pg_catalog.pg_class c
		JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
		WHERE c.relkind IN ('r', 'p')
			AND n.nspname NOT IN ('pg_catalog', 'information_schema', 'tenancy')
			AND n.nspname !~ '^pg_(toast|temp_|toast_temp_)'
			AND (c.relrowsecurity OR EXISTS (
				SELECT 1 FROM pg_catalog.pg_attribute a
				WHERE a.attrelid = c.oid AND a.attname = 'org_id' AND a.attnum > 0 AND NOT a.attisdropped)))`

// CheckHardening checks that appRole, the role pgtenant connects as, cannot
// get around Row-Level Security or the signed tenant context in the current
// database, and that the tenant tables and the tenancy schema are in place.
// Until the tables are declared, a tenant table is one with RLS enabled or an
// org_id column. It returns the findings ordered by check; none means
// nothing to fix. conn should be a privileged connection (the owner or a
// superuser) so that every catalog and the tenancy schema are readable.
func CheckHardening(ctx context.Context, conn *pgx.Conn, appRole string) ([]Finding, error) {
	h := &hardening{conn: conn}
	err := conn.QueryRow(ctx, `
		SELECT r.oid, pg_catalog.quote_ident(r.rolname), pg_catalog.quote_ident(pg_catalog.current_database()),
			r.rolsuper, r.rolbypassrls
		FROM pg_catalog.pg_roles r WHERE r.rolname = $1`, appRole).
		Scan(&h.oid, &h.role, &h.db, &h.super, &h.bypass)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, fmt.Errorf("hardening check: role %q does not exist", appRole)
	}
	if err != nil {
		return nil, fmt.Errorf("hardening check: %w", err)
	}
	h.name = appRole
	if h.super {
		h.add(CheckSuperuser, SeverityError, "%s is a superuser, which ignores Row-Level Security and every privilege. Fix: ALTER ROLE %s NOSUPERUSER;", h.role, h.role)
	}
	if h.bypass {
		h.add(CheckBypassRLS, SeverityError, "%s has BYPASSRLS, which ignores Row-Level Security. Fix: ALTER ROLE %s NOBYPASSRLS;", h.role, h.role)
	}
	for _, check := range []func(context.Context) error{
		h.ownedTables, h.privilegedMemberships, h.temp, h.tablePrivileges, h.sharedSequences,
		h.views, h.rls, h.createOnSchemas, h.tenancySchema,
	} {
		if err := check(ctx); err != nil {
			return nil, fmt.Errorf("hardening check: %w", err)
		}
	}
	return h.findings, nil
}

// hardening is the state of one CheckHardening run.
type hardening struct {
	conn          *pgx.Conn
	oid           uint32 // the application role's
	name          string // the application role's name
	role, db      string // quoted identifiers, for the fixes
	super, bypass bool
	findings      []Finding
}

func (h *hardening) add(check, severity, format string, args ...any) {
	h.findings = append(h.findings, Finding{Check: check, Severity: severity, Message: fmt.Sprintf(format, args...)})
}

// each runs query with the application role's oid as $1 and calls fn for
// every row, scanned into dest.
func (h *hardening) each(ctx context.Context, query string, dest []any, fn func()) error {
	rows, err := h.conn.Query(ctx, query, h.oid)
	if err != nil {
		return err
	}
	_, err = pgx.ForEachRow(rows, dest, func() error { fn(); return nil })
	return err
}

// ownedTables: a table's owner is exempt from its policies without FORCE,
// and can always turn FORCE, RLS or the policies off.
func (h *hardening) ownedTables(ctx context.Context) error {
	var table string
	return h.each(ctx, tenantTablesCTE+`
		SELECT name FROM tenant WHERE relowner = $1::oid ORDER BY name`, []any{&table}, func() {
		h.add(CheckOwnsTenantTable, SeverityError,
			"%s owns the tenant table %s, so it can disable the table's Row-Level Security. Fix: ALTER TABLE %s OWNER TO <owner role>;",
			h.role, table, table)
	})
}

// privilegedMemberships: a member of a role can act as it (SET ROLE, or
// inherited privileges), even without INHERIT.
func (h *hardening) privilegedMemberships(ctx context.Context) error {
	if h.super {
		return nil // a superuser is a member of every role; reported above
	}
	var (
		parent, why, fix string
	)
	return h.each(ctx, tenantTablesCTE+`,
		tenancy_owner AS (SELECT nspowner FROM pg_catalog.pg_namespace WHERE nspname = 'tenancy')
		SELECT pg_catalog.quote_ident(r.rolname),
			pg_catalog.concat_ws(', ',
				CASE WHEN r.rolsuper THEN 'a superuser' END,
				CASE WHEN r.rolbypassrls THEN 'BYPASSRLS' END,
				CASE WHEN EXISTS (SELECT 1 FROM tenant t WHERE t.relowner = r.oid) THEN 'the owner of tenant tables' END,
				CASE WHEN r.oid = (SELECT nspowner FROM tenancy_owner) THEN 'the owner of the tenancy schema and its keys' END),
			coalesce((
				SELECT pg_catalog.string_agg(pg_catalog.format('REVOKE %I FROM %I;', p.rolname, pg_catalog.pg_get_userbyid($1::oid)), ' ' ORDER BY p.rolname)
				FROM pg_catalog.pg_auth_members m JOIN pg_catalog.pg_roles p ON p.oid = m.roleid
				WHERE m.member = $1::oid AND pg_catalog.pg_has_role(m.roleid, r.oid, 'MEMBER')), '')
		FROM pg_catalog.pg_roles r
		WHERE r.oid <> $1::oid
			AND pg_catalog.pg_has_role($1::oid, r.oid, 'MEMBER')
			AND (r.rolsuper OR r.rolbypassrls OR EXISTS (SELECT 1 FROM tenant t WHERE t.relowner = r.oid)
				OR r.oid = (SELECT nspowner FROM tenancy_owner))
		ORDER BY r.rolname`, []any{&parent, &why, &fix}, func() {
		h.add(CheckPrivilegedMember, SeverityError,
			"%s is a member (directly or through other roles) of %s, which is %s, so it can act as %s. Fix: %s",
			h.role, parent, why, parent, fix)
	})
}

// temp: temporary objects shadow tables and functions on the search_path,
// and temp tables do not survive transaction pooling.
func (h *hardening) temp(ctx context.Context) error {
	var temp bool
	err := h.conn.QueryRow(ctx, "SELECT pg_catalog.has_database_privilege($1::oid, pg_catalog.current_database(), 'TEMP')", h.oid).Scan(&temp)
	if err == nil && temp && !h.super {
		h.add(CheckTemp, SeverityError,
			"%s can create temporary tables in database %s (PostgreSQL grants TEMP to PUBLIC by default), which can shadow tables and functions. "+
				"Fix: REVOKE TEMPORARY ON DATABASE %s FROM PUBLIC; REVOKE TEMPORARY ON DATABASE %s FROM %s;",
			h.role, h.db, h.db, h.db, h.role)
	}
	return err
}

// tablePrivileges: TRUNCATE ignores Row-Level Security, REFERENCES lets a
// foreign key probe other tenants' keys, and TRIGGER runs a tenant's code in
// other tenants' transactions.
func (h *hardening) tablePrivileges(ctx context.Context) error {
	if h.super {
		return nil
	}
	var table, privs string
	return h.each(ctx, tenantTablesCTE+`
		SELECT name, pg_catalog.concat_ws(', ',
			CASE WHEN pg_catalog.has_table_privilege($1::oid, oid, 'TRUNCATE') THEN 'TRUNCATE' END,
			CASE WHEN pg_catalog.has_table_privilege($1::oid, oid, 'REFERENCES') THEN 'REFERENCES' END,
			CASE WHEN pg_catalog.has_table_privilege($1::oid, oid, 'TRIGGER') THEN 'TRIGGER' END)
		FROM tenant
		WHERE relowner <> $1::oid AND pg_catalog.has_table_privilege($1::oid, oid, 'TRUNCATE, REFERENCES, TRIGGER')
		ORDER BY name`, []any{&table, &privs}, func() {
		h.add(CheckTablePrivileges, SeverityError,
			"%s has %s on the tenant table %s (TRUNCATE ignores Row-Level Security, REFERENCES probes other tenants' keys, TRIGGER runs code in their transactions). "+
				"Fix: REVOKE %s ON %s FROM PUBLIC, %s;",
			h.role, privs, table, privs, table, h.role)
	})
}

// views: a view reads its tables with its owner's rights unless it is
// security_invoker, so an owner exempt from the policies (a superuser, or the
// table owner without FORCE) shows every tenant's rows; a materialized view
// has no policies at all. Either, readable by the application role over a
// tenant table, is reported.
func (h *hardening) views(ctx context.Context) error {
	var view, kind string
	return h.each(ctx, tenantTablesCTE+`
		SELECT DISTINCT pg_catalog.format('%I.%I', vn.nspname, v.relname), v.relkind::text
		FROM pg_catalog.pg_class v
		JOIN pg_catalog.pg_namespace vn ON vn.oid = v.relnamespace
		JOIN pg_catalog.pg_rewrite r ON r.ev_class = v.oid
		JOIN pg_catalog.pg_depend d ON d.classid = 'pg_catalog.pg_rewrite'::pg_catalog.regclass AND d.objid = r.oid
			AND d.refclassid = 'pg_catalog.pg_class'::pg_catalog.regclass
		JOIN tenant t ON t.oid = d.refobjid
		WHERE v.relkind IN ('v', 'm') AND t.oid <> v.oid
			AND pg_catalog.has_table_privilege($1::oid, v.oid, 'SELECT')
			AND (v.relkind = 'm' OR NOT EXISTS (
				SELECT 1 FROM pg_catalog.unnest(v.reloptions) o
				WHERE o ~* '^security_invoker=(true|on|yes|1)$'))
		ORDER BY 1`, []any{&view, &kind}, func() {
		if kind == "m" {
			h.add(CheckViews, SeverityError,
				"%s can read the materialized view %s over a tenant table; materialized views have no Row-Level Security and hold every tenant's rows. "+
					"Fix: REVOKE ALL ON %s FROM PUBLIC, %s;", h.role, view, view, h.role)
			return
		}
		h.add(CheckViews, SeverityError,
			"%s can read the view %s over a tenant table, which reads with its owner's rights and may show every tenant's rows. "+
				"Fix: ALTER VIEW %s SET (security_invoker = true);", h.role, view, view)
	})
}

// sharedSequences: setval on a sequence other tenants draw from disrupts
// their inserts; nextval (USAGE) is enough for defaults.
func (h *hardening) sharedSequences(ctx context.Context) error {
	if h.super {
		return nil
	}
	var seq string
	return h.each(ctx, `
		SELECT pg_catalog.format('%I.%I', n.nspname, c.relname)
		FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
		WHERE c.relkind = 'S' AND c.relowner <> $1::oid
			AND n.nspname NOT IN ('pg_catalog', 'information_schema')
			AND n.nspname !~ '^pg_(toast|temp_|toast_temp_)'
			AND CASE WHEN c.relkind = 'S' THEN pg_catalog.has_sequence_privilege($1::oid, c.oid, 'UPDATE') END
		ORDER BY 1`, []any{&seq}, func() {
		h.add(CheckSharedSequences, SeverityError,
			"%s has UPDATE on the sequence %s, which it does not own, so a tenant can setval() it and disrupt other tenants' inserts. "+
				"Fix: REVOKE UPDATE ON SEQUENCE %s FROM PUBLIC, %s; GRANT USAGE ON SEQUENCE %s TO %s;",
			h.role, seq, seq, h.role, seq, h.role)
	})
}

// rls: every tenant table needs Row-Level Security enabled and forced. A
// table the application role cannot touch yet is a warning.
func (h *hardening) rls(ctx context.Context) error {
	var (
		table            string
		enabled, forced  bool
		reachable, owned bool
	)
	return h.each(ctx, tenantTablesCTE+`
		SELECT name, relrowsecurity, relforcerowsecurity,
			pg_catalog.has_table_privilege($1::oid, oid, 'SELECT, INSERT, UPDATE, DELETE'),
			relowner = $1::oid
		FROM tenant
		WHERE NOT relrowsecurity OR NOT relforcerowsecurity
		ORDER BY name`, []any{&table, &enabled, &forced, &reachable, &owned}, func() {
		severity := SeverityError
		reach := fmt.Sprintf("%s can read or write it", h.role)
		if !reachable {
			severity, reach = SeverityWarning, fmt.Sprintf("%s has no privilege on it yet", h.role)
		}
		if !enabled {
			h.add(CheckRLSEnabled, severity,
				"the tenant table %s does not have Row-Level Security enabled, so every tenant sees all its rows (%s); "+
					"it also needs a policy on org_id = tenancy.current_org(). Fix: ALTER TABLE %s ENABLE ROW LEVEL SECURITY; ALTER TABLE %s FORCE ROW LEVEL SECURITY;",
				table, reach, table, table)
			return
		}
		if !owned {
			// Without FORCE only the owner is exempt; that role is not the
			// application role (else owns_tenant_table), so this is a gap for
			// migrations run as the owner, not a tenant path.
			severity = SeverityWarning
		}
		h.add(CheckRLSForced, severity,
			"the tenant table %s has Row-Level Security enabled but not forced, so its owner bypasses the policies. Fix: ALTER TABLE %s FORCE ROW LEVEL SECURITY;",
			table, table)
	})
}

// createOnSchemas: whatever a tenant creates (a table, a function) is
// shared with every other tenant, since they all use the same role.
func (h *hardening) createOnSchemas(ctx context.Context) error {
	if h.super {
		return nil
	}
	var schema string
	return h.each(ctx, `
		SELECT pg_catalog.quote_ident(n.nspname)
		FROM pg_catalog.pg_namespace n
		WHERE n.nspname NOT IN ('pg_catalog', 'information_schema', 'tenancy')
			AND n.nspname !~ '^pg_(toast|temp_|toast_temp_)'
			AND pg_catalog.has_schema_privilege($1::oid, n.oid, 'CREATE')
		ORDER BY 1`, []any{&schema}, func() {
		h.add(CheckCreateOnSchema, SeverityWarning,
			"%s can create objects in schema %s; a table or function one tenant creates there is visible to all the others, without Row-Level Security. "+
				"Fix: REVOKE CREATE ON SCHEMA %s FROM PUBLIC, %s;",
			h.role, schema, schema, h.role)
	})
}

// tenancySchema: the schema is installed at SchemaVersion, and the
// application role may call current_org() but not read the keys or the
// audit events.
func (h *hardening) tenancySchema(ctx context.Context) error {
	const install = "Fix: run pgtenant policies install --app-role " // + role
	var (
		installed, readable, self bool
		version                   *int
	)
	err := h.conn.QueryRow(ctx, `
		SELECT pg_catalog.to_regclass('tenancy.schema_version') IS NOT NULL
				AND pg_catalog.to_regprocedure('tenancy.current_org()') IS NOT NULL
				AND pg_catalog.to_regclass('tenancy.context_keys') IS NOT NULL
				AND pg_catalog.to_regclass('tenancy.audit_events') IS NOT NULL,
			pg_catalog.to_regclass('tenancy.schema_version') IS NOT NULL
				AND pg_catalog.has_table_privilege('tenancy.schema_version', 'SELECT'),
			current_user = $1`, h.name).Scan(&installed, &readable, &self)
	if err != nil {
		return err
	}
	if !installed {
		h.add(CheckTenancySchema, SeverityError, "the tenancy schema is not installed, so policies cannot verify the tenant context. %s%s", install, h.name)
		return nil
	}
	switch {
	case !readable && self:
		// pgtenant serve checks as the application role, which must not
		// read the schema: its version is the installer's concern.
	case !readable:
		h.add(CheckTenancySchema, SeverityWarning, "cannot read tenancy.schema_version as the current role, so its version is unknown. Fix: run this check as the schema's owner")
	default:
		if err := h.conn.QueryRow(ctx, "SELECT max(version) FROM tenancy.schema_version").Scan(&version); err != nil {
			return err
		}
		switch {
		case version == nil || *version < SchemaVersion:
			h.add(CheckTenancySchema, SeverityError, "the tenancy schema is older than version %d. %s%s", SchemaVersion, install, h.name)
		case *version > SchemaVersion:
			h.add(CheckTenancySchema, SeverityWarning, "the tenancy schema is at version %d, newer than this pgtenant's %d. Fix: upgrade pgtenant", *version, SchemaVersion)
		}
	}
	if h.super {
		return nil
	}
	var keys, audit, create, usage, execute bool
	err = h.conn.QueryRow(ctx, `
		SELECT pg_catalog.has_table_privilege($1::oid, 'tenancy.context_keys', 'SELECT, INSERT, UPDATE, DELETE, TRUNCATE, REFERENCES, TRIGGER'),
			pg_catalog.has_table_privilege($1::oid, 'tenancy.audit_events', 'SELECT, UPDATE, DELETE, TRUNCATE, REFERENCES, TRIGGER'),
			pg_catalog.has_schema_privilege($1::oid, 'tenancy', 'CREATE'),
			pg_catalog.has_schema_privilege($1::oid, 'tenancy', 'USAGE'),
			pg_catalog.has_function_privilege($1::oid, 'tenancy.current_org()', 'EXECUTE')`, h.oid).
		Scan(&keys, &audit, &create, &usage, &execute)
	if err != nil {
		return err
	}
	var bad []string
	if keys {
		bad = append(bad, "can read or change tenancy.context_keys, so it can forge any tenant's context")
	}
	if audit {
		bad = append(bad, "can read or change tenancy.audit_events, which hold every tenant's events")
	}
	if create {
		bad = append(bad, "can create objects in the tenancy schema")
	}
	if len(bad) > 0 {
		h.add(CheckTenancyGrants, SeverityError, "%s %s; it must not own the tenancy schema nor be a member of its owner. "+
			"Fix: REVOKE ALL ON ALL TABLES IN SCHEMA tenancy FROM %s; REVOKE CREATE ON SCHEMA tenancy FROM %s;",
			h.role, strings.Join(bad, "; "), h.role, h.role)
	}
	if !usage || !execute {
		h.add(CheckTenancyGrants, SeverityError, "%s cannot call tenancy.current_org(), so policies that use it fail. %s%s",
			h.role, install, h.name)
	}
	return nil
}
