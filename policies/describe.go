package policies

import (
	"context"
	"fmt"
	"strings"

	"github.com/jackc/pgx/v5"
)

// TableInfo is the Row-Level Security state of one tenant table, as the
// policy viewer shows it next to the table's Verify results.
type TableInfo struct {
	// Table is schema.name, unquoted, as in CheckResult.
	Table      string       `json:"table"`
	RLSEnabled bool         `json:"rls_enabled"`
	RLSForced  bool         `json:"rls_forced"`
	Policies   []PolicyInfo `json:"policies"`
	// TenantIndexes are the definitions of the indexes whose first column
	// is the org column.
	TenantIndexes []string `json:"tenant_indexes"`
}

// PolicyInfo is one policy of a table, as pg_policies shows it.
type PolicyInfo struct {
	Name      string   `json:"name"`
	Command   string   `json:"command"` // ALL, SELECT, INSERT, UPDATE or DELETE
	Roles     []string `json:"roles"`
	Using     string   `json:"using,omitempty"`
	WithCheck string   `json:"with_check,omitempty"`
}

const describeSQL = `
SELECT c.relrowsecurity, c.relforcerowsecurity,
	coalesce((SELECT pg_catalog.array_agg(ARRAY[p.policyname::text, p.cmd, pg_catalog.array_to_string(p.roles, ','),
			coalesce(p.qual, ''), coalesce(p.with_check, '')] ORDER BY p.policyname)
		FROM pg_catalog.pg_policies p WHERE p.schemaname = $2 AND p.tablename = $3), '{}'),
	coalesce((SELECT pg_catalog.array_agg(pg_catalog.pg_get_indexdef(i.indexrelid) ORDER BY i.indexrelid)
		FROM pg_catalog.pg_index i
		JOIN pg_catalog.pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = i.indkey[0]
		WHERE i.indrelid = c.oid AND a.attname = $4), '{}')
FROM pg_catalog.pg_class c WHERE c.oid = $1`

// Describe returns the RLS state of every tenant table of sel: whether RLS
// is enabled and forced, the policies and the tenant-leading indexes. It
// only reads the catalogs.
func Describe(ctx context.Context, conn *pgx.Conn, sel TableSelection) ([]TableInfo, error) {
	tables, err := TenantTables(ctx, conn, sel)
	if err != nil {
		return nil, fmt.Errorf("describe: listing tenant tables: %w", err)
	}
	out := make([]TableInfo, 0, len(tables))
	for _, t := range tables {
		info := TableInfo{Table: t.Schema + "." + t.Name}
		var policies [][]string
		err := conn.QueryRow(ctx, describeSQL, t.OID, t.Schema, t.Name, sel.orgColumn()).
			Scan(&info.RLSEnabled, &info.RLSForced, &policies, &info.TenantIndexes)
		if err != nil {
			return nil, fmt.Errorf("describe: %s: %w", info.Table, err)
		}
		info.Policies = make([]PolicyInfo, len(policies))
		for i, p := range policies {
			info.Policies[i] = PolicyInfo{Name: p[0], Command: p[1], Roles: splitRoles(p[2]), Using: p[3], WithCheck: p[4]}
		}
		out = append(out, info)
	}
	return out, nil
}

func splitRoles(s string) []string {
	if s == "" {
		return []string{}
	}
	return strings.Split(s, ",")
}

// CheckExplanations says in plain words what each Verify and hardening
// check makes sure of, and why it matters; the policy viewer shows them.
var CheckExplanations = map[string]string{
	CheckRLSEnabled:       "Row-Level Security is enabled on the table, so PostgreSQL applies its policies at all. Without it every tenant sees every row.",
	CheckRLSForced:        "RLS is forced, so the policies also hold for the table's owner. Without it, a session running as the owner sees every tenant's rows.",
	CheckPolicySelect:     "A SELECT policy limits reads to the rows of the transaction's tenant (org column = tenancy.current_org()).",
	CheckPolicyInsert:     "An INSERT policy refuses rows that claim another tenant's org.",
	CheckPolicyUpdate:     "An UPDATE policy limits changes to the tenant's rows and refuses moving a row to another tenant.",
	CheckPolicyDelete:     "A DELETE policy limits deletes to the tenant's rows.",
	CheckOtherPolicies:    "No other permissive policy widens access: policies are OR-ed, so one loose policy opens the table.",
	CheckOrgColumn:        "The table has the org column, NOT NULL and of the configured type, filled from the tenant context by default.",
	CheckTenantIndex:      "An index leads with the org column, so tenant queries stay fast under the policy and do not scan other tenants' rows.",
	CheckUniqueKeys:       "Unique keys include the org column; otherwise a tenant learns that another tenant's value exists when its insert fails.",
	CheckForeignKeys:      "Foreign keys include the org column, so a row cannot reference another tenant's row, and the check does not reveal it exists.",
	CheckDependentView:    "Views over the table use security_invoker, so the caller's policies apply instead of the view owner's.",
	CheckPartitions:       "Every partition has the same RLS settings and policies as its parent: a partition queried directly must not bypass them.",
	CheckRegistry:         "The table is recorded in tenancy.tables with the current policy version, so pgtenant knows what it applied.",
	CheckProbe:            "A live test as the application role, rolled back: a row inserted for one tenant stays invisible and untouchable for another.",
	CheckSuperuser:        "The application role is not a superuser: superusers ignore Row-Level Security.",
	CheckBypassRLS:        "The application role does not have BYPASSRLS, which ignores every policy.",
	CheckOwnsTenantTable:  "The application role does not own tenant tables: owners can disable RLS or drop the policies.",
	CheckPrivilegedMember: "The application role is not a member of a role that is a superuser, has BYPASSRLS or owns tenant tables.",
	CheckTemp:             "The application role cannot create temporary tables, which could shadow tables and functions the policies rely on.",
	CheckTablePrivileges:  "The application role has no privilege that RLS does not cover on tenant tables, such as TRUNCATE or REFERENCES.",
	CheckSharedSequences:  "The application role cannot reset sequences shared between tenants, which would disturb other tenants' inserts.",
	CheckCreateOnSchema:   "The application role cannot create objects in schemas on the search path, where they could shadow the real ones.",
	CheckTenancySchema:    "The tenancy schema, which verifies the signed tenant context, is installed at the version this pgtenant expects.",
	CheckTenancyGrants:    "The application role may only call tenancy.current_org(): it must not read the context keys or change the registry.",
	CheckViews:            "No view owned by a role that bypasses RLS exposes a tenant table to the application role.",
}
