package policies

import (
	"context"
	"fmt"
	"path"
	"strings"

	"github.com/jackc/pgx/v5"
)

// DefaultOrgColumn is the column that holds a tenant table's org.
const DefaultOrgColumn = "org_id"

// TableSelection says which tables are tenant tables (config policies.tables).
// With no Include patterns, tables are discovered: every ordinary or
// partitioned table with the org column. Patterns are "schema.table" globs
// (path.Match syntax: "public.*", "billing.invoice_*"); Exclude wins over
// Include and over discovery.
type TableSelection struct {
	Include   []string
	Exclude   []string
	OrgColumn string // DefaultOrgColumn when empty
}

// Validate checks the patterns.
func (s TableSelection) Validate() error {
	for _, p := range append(append([]string(nil), s.Include...), s.Exclude...) {
		if !strings.Contains(p, ".") {
			return fmt.Errorf("policies.tables: pattern %q must be schema.table (globs allowed, e.g. public.*)", p)
		}
		if _, err := path.Match(p, ""); err != nil {
			return fmt.Errorf("policies.tables: pattern %q: %v", p, err)
		}
	}
	return nil
}

func (s TableSelection) orgColumn() string {
	if s.OrgColumn == "" {
		return DefaultOrgColumn
	}
	return s.OrgColumn
}

// Table is one table of the database as the selection sees it.
type Table struct {
	Schema string `json:"schema"`
	Name   string `json:"name"`
	OID    uint32 `json:"oid"`
	// Kind is "table" or "partitioned"; Parent is set for a partition.
	Kind   string `json:"kind"`
	Parent string `json:"parent,omitempty"`
	// OrgType is the org column's type, or "" when the table has none.
	OrgType string `json:"org_type,omitempty"`
	// Tenant reports whether it is a tenant table, and Reason why or why not.
	Tenant bool   `json:"tenant"`
	Reason string `json:"reason"`
}

// QualifiedName is schema.name, quoted where needed for SQL.
func (t Table) QualifiedName() string {
	return pgx.Identifier{t.Schema, t.Name}.Sanitize()
}

// ListTables returns every ordinary and partitioned table outside the
// system schemas and tenancy, each with the selection's decision and its
// reason, ordered by schema and name. A partition follows its parent's
// decision unless a pattern names it.
func ListTables(ctx context.Context, conn *pgx.Conn, sel TableSelection) ([]Table, error) {
	if err := sel.Validate(); err != nil {
		return nil, err
	}
	rows, err := conn.Query(ctx, `
		SELECT n.nspname, c.relname, c.oid,
			CASE c.relkind WHEN 'p' THEN 'partitioned' ELSE 'table' END,
			coalesce((SELECT pg_catalog.format('%I.%I', pn.nspname, p.relname)
				FROM pg_catalog.pg_inherits i
				JOIN pg_catalog.pg_class p ON p.oid = i.inhparent
				JOIN pg_catalog.pg_namespace pn ON pn.oid = p.relnamespace
				WHERE i.inhrelid = c.oid AND c.relispartition), ''),
			coalesce((SELECT pg_catalog.format_type(a.atttypid, a.atttypmod)
				FROM pg_catalog.pg_attribute a
				WHERE a.attrelid = c.oid AND a.attname = $1 AND a.attnum > 0 AND NOT a.attisdropped), '')
		FROM pg_catalog.pg_class c
		JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
		WHERE c.relkind IN ('r', 'p')
			AND n.nspname NOT IN ('pg_catalog', 'information_schema', 'tenancy')
			AND n.nspname !~ '^pg_(toast|temp_|toast_temp_)'
		ORDER BY n.nspname, c.relname`, sel.orgColumn())
	if err != nil {
		return nil, err
	}
	tables, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (Table, error) {
		var t Table
		err := r.Scan(&t.Schema, &t.Name, &t.OID, &t.Kind, &t.Parent, &t.OrgType)
		return t, err
	})
	if err != nil {
		return nil, err
	}
	decided := map[string]*Table{}
	for i := range tables {
		t := &tables[i]
		t.Tenant, t.Reason = sel.decide(*t)
		decided[t.Schema+"."+t.Name] = t
	}
	// Partitions follow their parent unless a pattern names them.
	for i := range tables {
		t := &tables[i]
		if t.Parent == "" || sel.named(*t) {
			continue
		}
		if p := decided[strings.ReplaceAll(t.Parent, `"`, "")]; p != nil {
			t.Tenant, t.Reason = p.Tenant, "partition of "+t.Parent+": "+p.Reason
		}
	}
	return tables, nil
}

// TenantTables is ListTables without the tables that are not tenant tables.
func TenantTables(ctx context.Context, conn *pgx.Conn, sel TableSelection) ([]Table, error) {
	all, err := ListTables(ctx, conn, sel)
	if err != nil {
		return nil, err
	}
	var out []Table
	for _, t := range all {
		if t.Tenant {
			out = append(out, t)
		}
	}
	return out, nil
}

// decide is the selection's decision for one table, and why.
func (s TableSelection) decide(t Table) (bool, string) {
	name := t.Schema + "." + t.Name
	if p, ok := matchAny(s.Exclude, name); ok {
		return false, "excluded by policies.tables.exclude " + p
	}
	if len(s.Include) > 0 {
		if p, ok := matchAny(s.Include, name); ok {
			return true, "included by policies.tables.include " + p
		}
		return false, "not matched by policies.tables.include"
	}
	if t.OrgType != "" {
		return true, "discovered: has a " + s.orgColumn() + " column"
	}
	return false, "no " + s.orgColumn() + " column (and no policies.tables.include)"
}

// named reports whether a pattern names the table.
func (s TableSelection) named(t Table) bool {
	name := t.Schema + "." + t.Name
	_, in := matchAny(s.Include, name)
	_, ex := matchAny(s.Exclude, name)
	return in || ex
}

func matchAny(patterns []string, name string) (string, bool) {
	for _, p := range patterns {
		if ok, _ := path.Match(p, name); ok {
			return p, true
		}
	}
	return "", false
}
