package policies

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// Verify check names, on top of the hardening Check* names it reports for
// the application role and the tenancy schema: stable labels for reports and
// for the admin UI.
const (
	CheckPolicySelect  = "policy_select"
	CheckPolicyInsert  = "policy_insert"
	CheckPolicyUpdate  = "policy_update"
	CheckPolicyDelete  = "policy_delete"
	CheckOtherPolicies = "other_policies"
	CheckOrgColumn     = "org_column"
	CheckTenantIndex   = "tenant_index"
	CheckUniqueKeys    = "unique_keys"
	CheckForeignKeys   = "foreign_keys"
	CheckDependentView = "views"
	CheckPartitions    = "partitions"
	CheckRegistry      = "registry"
	CheckProbe         = "probe"
)

// CheckResult statuses.
const (
	StatusOK   = "ok"
	StatusFail = "fail"
	StatusWarn = "warn"
)

// Probe orgs: synthetic tenants that no real tenant id should match. The
// uuid pair is for uuid org columns.
const (
	ProbeOrgA     = "pgtenant-probe-a"
	ProbeOrgB     = "pgtenant-probe-b"
	ProbeOrgUUIDA = "00000000-0000-4000-8000-00000000000a"
	ProbeOrgUUIDB = "00000000-0000-4000-8000-00000000000b"
)

// tenantPolicy is one of the four policies every tenant table has, one per
// command, as pgtenant policies apply creates them.
type tenantPolicy struct {
	name, cmd, check string
	polcmd           string // pg_policy.polcmd
	using, withCheck bool   // which expressions it has
}

var tenantPolicies = []tenantPolicy{
	{PolicyNames["SELECT"], "SELECT", CheckPolicySelect, "r", true, false},
	{PolicyNames["INSERT"], "INSERT", CheckPolicyInsert, "a", false, true},
	{PolicyNames["UPDATE"], "UPDATE", CheckPolicyUpdate, "w", true, true},
	{PolicyNames["DELETE"], "DELETE", CheckPolicyDelete, "d", true, false},
}

// roleChecks are the hardening checks Verify reports (as database-wide
// results). The hardening checks of RLS and views are left out: Verify
// checks those per table, on the selected tenant tables.
var roleChecks = []string{
	CheckSuperuser, CheckBypassRLS, CheckOwnsTenantTable, CheckPrivilegedMember, CheckTemp,
	CheckTablePrivileges, CheckSharedSequences, CheckCreateOnSchema, CheckTenancySchema, CheckTenancyGrants,
}

// VerifyOptions says what Verify checks.
type VerifyOptions struct {
	// Selection says which tables are tenant tables.
	Selection TableSelection
	// AppRole is the role pgtenant connects as. Required.
	AppRole string
	// OrgType is the org column's type, OrgTypeText or OrgTypeUUID; empty
	// accepts either.
	OrgType string
	// Citus expects the policy form Citus accepts (tenancy.current_org()
	// without a sub-select) and binds probe tokens to citus_backend_gpid().
	Citus bool
	// Probe runs the live probe: as AppRole, in a transaction that is rolled
	// back, a row inserted as one synthetic tenant must stay out of another's
	// reach.
	Probe bool
	// Keys sign the probe's context tokens; they must be installed in
	// tenancy.context_keys (usually Signer.Keys()).
	Keys []ContextKey
}

// CheckResult is the outcome of one check, on one table or (Table empty) on
// the database and the application role.
type CheckResult struct {
	// Table is schema.name, unquoted; empty for database-wide checks.
	Table string `json:"table,omitempty"`
	// Check is one of the Check* names.
	Check string `json:"check"`
	// Status is StatusOK, StatusFail or StatusWarn.
	Status  string `json:"status"`
	Message string `json:"message,omitempty"`
	// Fix is the SQL (or, for the tenancy schema, the command) that closes
	// the gap; empty when Status is StatusOK.
	Fix string `json:"fix,omitempty"`
}

// VerifyReport is what Verify found. OK is false when any result failed;
// warnings leave it true.
type VerifyReport struct {
	Results []CheckResult `json:"results"`
	OK      bool          `json:"ok"`
}

// Failed returns the results whose status is StatusFail.
func (r *VerifyReport) Failed() []CheckResult {
	var out []CheckResult
	for _, res := range r.Results {
		if res.Status == StatusFail {
			out = append(out, res)
		}
	}
	return out
}

// Verify checks that the selected tenant tables are isolated by tenant and
// that AppRole cannot get around it, and returns one result per check and
// table (several when a check finds several gaps).
//
// Per table: Row-Level Security enabled and forced; the four policies
// pgtenant_select/insert/update/delete, permissive, applying to AppRole, on
// the expected expression; no other permissive policy that widens them; the
// org column NOT NULL and of OrgType; an index leading with the org column;
// unique keys, and foreign keys to other tenant tables, that include it; no
// view over it without security_invoker nor a materialized view AppRole can
// read; each partition protected or out of AppRole's reach; its row in
// tenancy.tables. Partitions are checked under their parent's "partitions"
// check, not as tables of their own. Database-wide: the hardening checks of
// AppRole (CheckHardening) and the tenancy schema's version.
//
// Policy expressions are compared as PostgreSQL prints them (pg_get_expr):
// the expected policy is created on a temporary table in a transaction that
// is rolled back, so that spelling, casts and parentheses do not matter.
// When that is not possible (no TEMP privilege, a standby) they are compared
// as text without whitespace, parentheses and the sub-select's alias.
//
// Verify changes nothing it keeps: everything it writes (the scratch table,
// the probe's rows) is rolled back. The probe does consume values of the
// sequences behind the probed tables' defaults. conn should be the tables'
// owner or a superuser, able to SET ROLE to AppRole for the probe, and must
// not be in a transaction.
func Verify(ctx context.Context, conn *pgx.Conn, opts VerifyOptions) (*VerifyReport, error) {
	if opts.AppRole == "" {
		return nil, errors.New("verify: no application role: name the role pgtenant connects as")
	}
	if opts.OrgType != "" && opts.OrgType != OrgTypeText && opts.OrgType != OrgTypeUUID {
		return nil, fmt.Errorf("verify: org type %q: must be text or uuid", opts.OrgType)
	}
	tables, err := TenantTables(ctx, conn, opts.Selection)
	if err != nil {
		return nil, fmt.Errorf("verify: listing tenant tables: %w", err)
	}
	v := &verifier{conn: conn, opts: opts, col: opts.Selection.orgColumn(), tenant: map[uint32]bool{}}
	selected := map[string]bool{}
	for _, t := range tables {
		v.tenant[t.OID] = true
		selected[t.Schema+"."+t.Name] = true
	}
	var top []Table
	for _, t := range tables {
		if t.Parent == "" || !selected[strings.ReplaceAll(t.Parent, `"`, "")] {
			top = append(top, t)
		}
	}
	if err := v.roleChecks(ctx); err != nil {
		return nil, fmt.Errorf("verify: %w", err)
	}
	if err := v.expectExpressions(ctx, top); err != nil {
		return nil, fmt.Errorf("verify: %w", err)
	}
	for _, t := range top {
		if err := v.table(ctx, t); err != nil {
			return nil, fmt.Errorf("verify %s: %w", t.QualifiedName(), err)
		}
	}
	if opts.Probe {
		if err := v.probe(ctx, top); err != nil {
			return nil, fmt.Errorf("verify: live probe: %w", err)
		}
	}
	report := &VerifyReport{Results: v.results, OK: true}
	for _, r := range v.results {
		if r.Status == StatusFail {
			report.OK = false
		}
	}
	return report, nil
}

// verifier is the state of one Verify run.
type verifier struct {
	conn *pgx.Conn
	opts VerifyOptions
	col  string // the org column
	// tenant holds the oids of every selected table, partitions included.
	tenant map[uint32]bool
	// expected maps an org column type to the policy expression as
	// PostgreSQL prints it; nil when it could not be computed.
	expected map[string]string
	results  []CheckResult
}

func (v *verifier) add(table, check, status, fix, format string, args ...any) {
	v.results = append(v.results, CheckResult{Table: table, Check: check, Status: status, Message: fmt.Sprintf(format, args...), Fix: fix})
}

func (v *verifier) ok(table, check, format string, args ...any) {
	v.add(table, check, StatusOK, "", format, args...)
}

// roleChecks reports CheckHardening's findings on the application role and
// the tenancy schema, and an ok result for each of roleChecks it did not
// flag.
func (v *verifier) roleChecks(ctx context.Context) error {
	findings, err := CheckHardening(ctx, v.conn, v.opts.AppRole)
	if err != nil {
		return err
	}
	flagged := map[string]bool{}
	for _, f := range findings {
		if !slices.Contains(roleChecks, f.Check) {
			continue
		}
		flagged[f.Check] = true
		status := StatusFail
		if f.Severity == SeverityWarning {
			status = StatusWarn
		}
		msg, fix, _ := strings.Cut(f.Message, " Fix: ")
		v.add("", f.Check, status, fix, "%s", msg)
	}
	for _, c := range roleChecks {
		if !flagged[c] {
			v.ok("", c, "%s: nothing found", c)
		}
	}
	return nil
}

// expectExpressions computes, for each org column type of tables, the
// expected policy expression as pg_get_expr prints it, by creating it on a
// temporary table in a transaction it rolls back. When that fails, expected
// stays nil and expressions are compared by normalizedExpr.
func (v *verifier) expectExpressions(ctx context.Context, tables []Table) error {
	var types []string
	for _, t := range tables {
		if t.OrgType != "" && !slices.Contains(types, t.OrgType) {
			types = append(types, t.OrgType)
		}
	}
	if len(types) == 0 {
		return nil
	}
	tx, err := v.conn.Begin(ctx)
	if err != nil {
		return err
	}
	defer tx.Rollback(context.WithoutCancel(ctx)) //nolint:errcheck // always rolled back
	expected := map[string]string{}
	for i, typ := range types {
		scratch := fmt.Sprintf("pgtenant_verify_scratch_%d", i)
		_, err := tx.Exec(ctx, "CREATE TEMPORARY TABLE "+scratch+" ("+pgx.Identifier{v.col}.Sanitize()+" "+typ+") ON COMMIT DROP;"+
			"CREATE POLICY expected ON pg_temp."+scratch+" USING "+PolicyExpression(v.col, typ, v.opts.Citus))
		if err != nil {
			return nil // fall back to normalizedExpr
		}
		var expr string
		err = tx.QueryRow(ctx, "SELECT pg_catalog.pg_get_expr(polqual, polrelid) FROM pg_catalog.pg_policy WHERE polrelid = $1::text::regclass",
			"pg_temp."+scratch).Scan(&expr)
		if err != nil {
			return nil
		}
		expected[typ] = expr
	}
	v.expected = expected
	return nil
}

// normalizedExpr is an expression without whitespace, parentheses, the
// pg_catalog prefix and the alias pg_get_expr gives a sub-select's column.
func normalizedExpr(s string) string {
	s = strings.ToLower(s)
	s = strings.ReplaceAll(s, "pg_catalog.", "")
	s = strings.ReplaceAll(s, " as current_org", "")
	return strings.Map(func(r rune) rune {
		switch r {
		case ' ', '\t', '\n', '\r', '(', ')':
			return -1
		}
		return r
	}, s)
}

// matches reports whether a policy expression (as pg_get_expr prints it) is
// the expected one for an org column of type typ.
func (v *verifier) matches(expr *string, typ string) bool {
	if expr == nil {
		return false
	}
	if want, ok := v.expected[typ]; ok {
		return *expr == want
	}
	return normalizedExpr(*expr) == normalizedExpr(PolicyExpression(v.col, typ, v.opts.Citus))
}

// policy is a row of pg_policy as Verify reads it.
type policy struct {
	name, cmd        string
	permissive       bool
	qual, withCheck  *string
	appliesToAppRole bool
}

func (v *verifier) policies(ctx context.Context, oid uint32) ([]policy, error) {
	rows, err := v.conn.Query(ctx, `
		SELECT p.polname, p.polcmd::text, p.polpermissive,
			pg_catalog.pg_get_expr(p.polqual, p.polrelid), pg_catalog.pg_get_expr(p.polwithcheck, p.polrelid),
			0::oid = ANY (p.polroles) OR EXISTS (
				SELECT 1 FROM pg_catalog.unnest(p.polroles) r(oid) WHERE pg_catalog.pg_has_role($2, r.oid, 'MEMBER'))
		FROM pg_catalog.pg_policy p
		WHERE p.polrelid = $1
		ORDER BY p.polname`, oid, v.opts.AppRole)
	if err != nil {
		return nil, err
	}
	return pgx.CollectRows(rows, func(r pgx.CollectableRow) (policy, error) {
		var p policy
		err := r.Scan(&p.name, &p.cmd, &p.permissive, &p.qual, &p.withCheck, &p.appliesToAppRole)
		return p, err
	})
}

// policyProblem says what is wrong with the tenant policy want on a table
// whose org column is of type typ, given its policies; "" when nothing.
func (v *verifier) policyProblem(want tenantPolicy, have []policy, typ string) string {
	i := slices.IndexFunc(have, func(p policy) bool { return p.name == want.name })
	if i < 0 {
		return fmt.Sprintf("no policy %s for %s", want.name, want.cmd)
	}
	p := have[i]
	var bad []string
	if p.cmd != want.polcmd {
		bad = append(bad, "it is not FOR "+want.cmd+" alone")
	}
	if !p.permissive {
		bad = append(bad, "it is RESTRICTIVE, so it grants nothing")
	}
	if !p.appliesToAppRole {
		bad = append(bad, "it does not apply to "+v.opts.AppRole)
	}
	exp := PolicyExpression(v.col, typ, v.opts.Citus)
	if want.using && !v.matches(p.qual, typ) {
		bad = append(bad, fmt.Sprintf("its USING is %s, not %s", orNone(p.qual), exp))
	}
	if !want.using && p.qual != nil {
		bad = append(bad, "it has a USING clause ("+*p.qual+"), which "+want.cmd+" policies do not use")
	}
	if want.withCheck && !v.matches(p.withCheck, typ) {
		bad = append(bad, fmt.Sprintf("its WITH CHECK is %s, not %s", orNone(p.withCheck), exp))
	}
	if len(bad) == 0 {
		return ""
	}
	return fmt.Sprintf("policy %s: %s", want.name, strings.Join(bad, "; "))
}

func orNone(s *string) string {
	if s == nil {
		return "missing"
	}
	return *s
}

// createPolicySQL is the SQL that (re)creates the tenant policy p on table.
func (v *verifier) createPolicySQL(p tenantPolicy, table, typ string) string {
	exp := PolicyExpression(v.col, typ, v.opts.Citus)
	var clauses string
	if p.using {
		clauses += " USING " + exp
	}
	if p.withCheck {
		clauses += " WITH CHECK " + exp
	}
	return fmt.Sprintf("DROP POLICY IF EXISTS %s ON %s; CREATE POLICY %s ON %s AS PERMISSIVE FOR %s TO PUBLIC%s;",
		p.name, table, p.name, table, p.cmd, clauses)
}

// verifiedTable is what Verify reads of one table's pg_class and org column.
type verifiedTable struct {
	rls, forced, hasCol, notNull bool
	colType                      string
	colNum                       int16
}

func (v *verifier) state(ctx context.Context, oid uint32) (verifiedTable, error) {
	var s verifiedTable
	err := v.conn.QueryRow(ctx, `
		SELECT c.relrowsecurity, c.relforcerowsecurity, a.attnum IS NOT NULL, coalesce(a.attnotnull, false),
			coalesce(pg_catalog.format_type(a.atttypid, a.atttypmod), ''), coalesce(a.attnum, 0)
		FROM pg_catalog.pg_class c
		LEFT JOIN pg_catalog.pg_attribute a ON a.attrelid = c.oid AND a.attname = $2 AND a.attnum > 0 AND NOT a.attisdropped
		WHERE c.oid = $1`, oid, v.col).Scan(&s.rls, &s.forced, &s.hasCol, &s.notNull, &s.colType, &s.colNum)
	return s, err
}

// table runs the per-table checks on t.
func (v *verifier) table(ctx context.Context, t Table) error {
	name, q := t.Schema+"."+t.Name, t.QualifiedName()
	col := pgx.Identifier{v.col}.Sanitize()
	s, err := v.state(ctx, t.OID)
	if err != nil {
		return err
	}

	switch {
	case !s.rls:
		v.add(name, CheckRLSEnabled, StatusFail, "ALTER TABLE "+q+" ENABLE ROW LEVEL SECURITY;",
			"Row-Level Security is not enabled, so the policies are ignored and every tenant sees every row")
	default:
		v.ok(name, CheckRLSEnabled, "Row-Level Security is enabled")
	}
	if s.forced {
		v.ok(name, CheckRLSForced, "Row-Level Security is forced")
	} else {
		v.add(name, CheckRLSForced, StatusFail, "ALTER TABLE "+q+" FORCE ROW LEVEL SECURITY;",
			"Row-Level Security is not forced, so the table's owner (and whatever runs as it: migrations, definer views and functions) bypasses the policies")
	}

	typ := s.colType
	have, err := v.policies(ctx, t.OID)
	if err != nil {
		return err
	}
	for _, p := range tenantPolicies {
		if problem := v.policyProblem(p, have, typ); problem != "" {
			v.add(name, p.check, StatusFail, v.createPolicySQL(p, q, typ), "%s", problem)
		} else {
			v.ok(name, p.check, "policy %s for %s matches", p.name, p.cmd)
		}
	}
	v.otherPolicies(name, q, have, typ)

	switch {
	case !s.hasCol:
		v.add(name, CheckOrgColumn, StatusFail, "run pgtenant policies apply, which adds it",
			"the table has no %s column", v.col)
	case !s.notNull:
		v.add(name, CheckOrgColumn, StatusFail, fmt.Sprintf("ALTER TABLE %s ALTER COLUMN %s SET NOT NULL;", q, col),
			"%s is nullable: a row without an org belongs to no tenant and is invisible to all of them", v.col)
	case v.opts.OrgType != "" && s.colType != v.opts.OrgType:
		v.add(name, CheckOrgColumn, StatusFail, fmt.Sprintf("ALTER TABLE %s ALTER COLUMN %s TYPE %s USING %s::%s;", q, col, v.opts.OrgType, col, v.opts.OrgType),
			"%s is of type %s, not the configured %s", v.col, s.colType, v.opts.OrgType)
	case v.opts.OrgType == "" && s.colType != "text" && s.colType != "uuid":
		v.add(name, CheckOrgColumn, StatusFail, fmt.Sprintf("ALTER TABLE %s ALTER COLUMN %s TYPE text;", q, col),
			"%s is of type %s; tenant ids are text or uuid", v.col, s.colType)
	default:
		v.ok(name, CheckOrgColumn, "%s is NOT NULL %s", v.col, s.colType)
	}

	if !s.hasCol {
		return v.dependents(ctx, t, name, q)
	}
	for _, check := range []func(context.Context, Table, string, string, verifiedTable) error{v.tenantIndex, v.uniqueKeys, v.foreignKeys} {
		if err := check(ctx, t, name, q, s); err != nil {
			return err
		}
	}
	return v.dependents(ctx, t, name, q)
}

// dependents runs the checks of what depends on the table: views,
// partitions, and its registry row.
func (v *verifier) dependents(ctx context.Context, t Table, name, q string) error {
	if err := v.views(ctx, t, name); err != nil {
		return err
	}
	if err := v.partitions(ctx, t, name); err != nil {
		return err
	}
	return v.registry(ctx, t, name)
}

// otherPolicies: permissive policies are OR-ed, so any other permissive
// policy that applies to the application role widens the tenant policies.
// One on the expected expression is only redundant.
func (v *verifier) otherPolicies(name, q string, have []policy, typ string) {
	found := false
	for _, p := range have {
		if slices.ContainsFunc(tenantPolicies, func(tp tenantPolicy) bool { return tp.name == p.name }) {
			continue
		}
		if !p.permissive || !p.appliesToAppRole {
			continue // a restrictive policy only narrows
		}
		found = true
		fix := fmt.Sprintf("DROP POLICY %s ON %s;", pgx.Identifier{p.name}.Sanitize(), q)
		sameQual := p.qual == nil || v.matches(p.qual, typ)
		sameCheck := p.withCheck == nil || v.matches(p.withCheck, typ)
		if sameQual && sameCheck {
			v.add(name, CheckOtherPolicies, StatusWarn, fix,
				"policy %s repeats the tenant condition; it is redundant with the pgtenant_* policies", p.name)
			continue
		}
		v.add(name, CheckOtherPolicies, StatusFail, fix,
			"permissive policy %s (USING %s, WITH CHECK %s) is OR-ed with the tenant policies and widens them",
			p.name, orNone(p.qual), orNone(p.withCheck))
	}
	if !found {
		v.ok(name, CheckOtherPolicies, "no other permissive policy applies to %s", v.opts.AppRole)
	}
}

// tenantIndex: without an index leading with the org column, every tenant
// query scans the rows of all tenants.
func (v *verifier) tenantIndex(ctx context.Context, t Table, name, q string, s verifiedTable) error {
	var index *string
	err := v.conn.QueryRow(ctx, `
		SELECT min(ic.relname::text)
		FROM pg_catalog.pg_index i JOIN pg_catalog.pg_class ic ON ic.oid = i.indexrelid
		WHERE i.indrelid = $1 AND i.indkey[0] = $2 AND i.indpred IS NULL AND i.indisvalid`, t.OID, s.colNum).Scan(&index)
	if err != nil {
		return err
	}
	if index == nil {
		v.add(name, CheckTenantIndex, StatusFail, fmt.Sprintf("CREATE INDEX ON %s (%s);", q, pgx.Identifier{v.col}.Sanitize()),
			"no index leads with %s, so tenant queries scan every tenant's rows", v.col)
		return nil
	}
	v.ok(name, CheckTenantIndex, "index %s leads with %s", *index, v.col)
	return nil
}

// uniqueKeys: a unique key without the org column tells a tenant, through a
// unique violation, that another tenant has a row with that key.
func (v *verifier) uniqueKeys(ctx context.Context, t Table, name, q string, s verifiedTable) error {
	rows, err := v.conn.Query(ctx, `
		SELECT ic.relname::text, coalesce(con.conname::text, ''), coalesce(con.contype::text, ''),
			coalesce(ARRAY(SELECT pg_catalog.quote_ident(a.attname)
				FROM pg_catalog.unnest(i.indkey) WITH ORDINALITY k(n, ord)
				JOIN pg_catalog.pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.n
				WHERE k.ord <= i.indnkeyatts ORDER BY k.ord), '{}')
		FROM pg_catalog.pg_index i
		JOIN pg_catalog.pg_class ic ON ic.oid = i.indexrelid
		LEFT JOIN pg_catalog.pg_constraint con ON con.conindid = i.indexrelid AND con.conrelid = i.indrelid AND con.contype IN ('p', 'u')
		WHERE i.indrelid = $1 AND i.indisunique
			AND NOT EXISTS (SELECT 1 FROM pg_catalog.unnest(i.indkey) WITH ORDINALITY k(n, ord) WHERE k.ord <= i.indnkeyatts AND k.n = $2)
		ORDER BY 1`, t.OID, s.colNum)
	if err != nil {
		return err
	}
	var index, constraint, kind string
	var cols []string
	found := false
	_, err = pgx.ForEachRow(rows, []any{&index, &constraint, &kind, &cols}, func() error {
		found = true
		col := pgx.Identifier{v.col}.Sanitize()
		keyCols := strings.Join(append([]string{col}, cols...), ", ")
		what, fix := "unique index "+index, fmt.Sprintf("DROP INDEX %s; CREATE UNIQUE INDEX %s ON %s (%s);",
			pgx.Identifier{t.Schema, index}.Sanitize(), pgx.Identifier{index}.Sanitize(), q, keyCols)
		if constraint != "" {
			kw := "UNIQUE"
			if kind == "p" {
				kw = "PRIMARY KEY"
			}
			what = strings.ToLower(kw) + " " + constraint
			fix = fmt.Sprintf("ALTER TABLE %s DROP CONSTRAINT %s, ADD CONSTRAINT %s %s (%s);",
				q, pgx.Identifier{constraint}.Sanitize(), pgx.Identifier{constraint}.Sanitize(), kw, keyCols)
		}
		v.add(name, CheckUniqueKeys, StatusFail, fix,
			"%s on (%s) does not include %s, so a unique violation tells a tenant that another tenant has a row with that key",
			what, strings.Join(cols, ", "), v.col)
		return nil
	})
	if err == nil && !found {
		v.ok(name, CheckUniqueKeys, "every unique key includes %s", v.col)
	}
	return err
}

// foreignKeys: a foreign key to another tenant table without the org
// column lets a tenant reference, and so probe for, other tenants' rows.
// Foreign keys to tables that are not tenant tables (shared lookups) are
// fine.
func (v *verifier) foreignKeys(ctx context.Context, t Table, name, q string, _ verifiedTable) error {
	rows, err := v.conn.Query(ctx, `
		SELECT con.conname::text, con.confrelid, pg_catalog.format('%I.%I', rn.nspname, r.relname),
			ARRAY(SELECT a.attname::text FROM pg_catalog.unnest(con.conkey) WITH ORDINALITY k(n, ord)
				JOIN pg_catalog.pg_attribute a ON a.attrelid = con.conrelid AND a.attnum = k.n ORDER BY k.ord),
			ARRAY(SELECT a.attname::text FROM pg_catalog.unnest(con.confkey) WITH ORDINALITY k(n, ord)
				JOIN pg_catalog.pg_attribute a ON a.attrelid = con.confrelid AND a.attnum = k.n ORDER BY k.ord)
		FROM pg_catalog.pg_constraint con
		JOIN pg_catalog.pg_class r ON r.oid = con.confrelid
		JOIN pg_catalog.pg_namespace rn ON rn.oid = r.relnamespace
		WHERE con.conrelid = $1 AND con.contype = 'f'
		ORDER BY 1`, t.OID)
	if err != nil {
		return err
	}
	var (
		constraint, ref string
		refOID          uint32
		cols, refCols   []string
	)
	found := false
	_, err = pgx.ForEachRow(rows, []any{&constraint, &refOID, &ref, &cols, &refCols}, func() error {
		if !v.tenant[refOID] {
			return nil
		}
		for i := range cols {
			if cols[i] == v.col && i < len(refCols) && refCols[i] == v.col {
				return nil
			}
		}
		found = true
		quote := func(names []string) string {
			out := make([]string, len(names))
			for i, n := range names {
				out[i] = pgx.Identifier{n}.Sanitize()
			}
			return strings.Join(append([]string{pgx.Identifier{v.col}.Sanitize()}, out...), ", ")
		}
		v.add(name, CheckForeignKeys, StatusFail,
			fmt.Sprintf("ALTER TABLE %s DROP CONSTRAINT %s, ADD CONSTRAINT %s FOREIGN KEY (%s) REFERENCES %s (%s); -- needs a unique key on %s (%s)",
				q, pgx.Identifier{constraint}.Sanitize(), pgx.Identifier{constraint}.Sanitize(), quote(cols), ref, quote(refCols), ref, quote(refCols)),
			"foreign key %s (%s) references the tenant table %s without %s, so a tenant can reference (and probe for) another tenant's rows",
			constraint, strings.Join(cols, ", "), ref, v.col)
		return nil
	})
	if err == nil && !found {
		v.ok(name, CheckForeignKeys, "every foreign key to a tenant table includes %s", v.col)
	}
	return err
}

// views: a view reads its tables with its owner's rights unless it is
// security_invoker, and a materialized view has no policies at all. Views
// over the table or any of its partitions count, and views over those views:
// an invoker view read through a definer view runs with the definer's
// rights.
func (v *verifier) views(ctx context.Context, t Table, name string) error {
	rows, err := v.conn.Query(ctx, `
		WITH RECURSIVE rel AS (
			SELECT relid FROM pg_catalog.pg_partition_tree($1::oid::regclass) UNION SELECT $1::oid::regclass
		), over(oid) AS (
			SELECT rw.ev_class
			FROM pg_catalog.pg_depend d JOIN pg_catalog.pg_rewrite rw ON rw.oid = d.objid
			WHERE d.classid = 'pg_catalog.pg_rewrite'::regclass AND d.refclassid = 'pg_catalog.pg_class'::regclass
				AND d.refobjid IN (SELECT relid FROM rel) AND rw.ev_class NOT IN (SELECT relid FROM rel)
			UNION
			SELECT rw.ev_class
			FROM over
			JOIN pg_catalog.pg_depend d ON d.refobjid = over.oid
				AND d.classid = 'pg_catalog.pg_rewrite'::regclass AND d.refclassid = 'pg_catalog.pg_class'::regclass
			JOIN pg_catalog.pg_rewrite rw ON rw.oid = d.objid
			WHERE rw.ev_class <> over.oid
		)
		SELECT DISTINCT pg_catalog.format('%I.%I', vn.nspname, vc.relname), vc.relkind = 'm',
			coalesce((SELECT o.option_value::bool FROM pg_catalog.pg_options_to_table(vc.reloptions) o
				WHERE o.option_name = 'security_invoker'), false),
			pg_catalog.has_table_privilege($2, vc.oid, 'SELECT')
		FROM over
		JOIN pg_catalog.pg_class vc ON vc.oid = over.oid
		JOIN pg_catalog.pg_namespace vn ON vn.oid = vc.relnamespace
		WHERE vc.relkind IN ('v', 'm')
		ORDER BY 1`, t.OID, v.opts.AppRole)
	if err != nil {
		return err
	}
	var view string
	var mat, invoker, readable bool
	var n, bad int
	_, err = pgx.ForEachRow(rows, []any{&view, &mat, &invoker, &readable}, func() error {
		n++
		switch {
		case mat && readable:
			bad++
			v.add(name, CheckDependentView, StatusFail, fmt.Sprintf("REVOKE ALL ON %s FROM PUBLIC, %s;", view, pgx.Identifier{v.opts.AppRole}.Sanitize()),
				"%s can read the materialized view %s, which holds rows of every tenant without Row-Level Security", v.opts.AppRole, view)
		case !mat && !invoker:
			bad++
			v.add(name, CheckDependentView, StatusFail, fmt.Sprintf("ALTER VIEW %s SET (security_invoker = true);", view),
				"the view %s is not security_invoker, so it reads the table with its owner's rights and may show every tenant's rows", view)
		}
		return nil
	})
	if err == nil && bad == 0 {
		v.ok(name, CheckDependentView, "%d view(s) over it, none bypassing Row-Level Security", n)
	}
	return err
}

// partitions: querying a partition directly applies its own policies, not
// its parent's, so each partition the application role may touch needs
// them too.
func (v *verifier) partitions(ctx context.Context, t Table, name string) error {
	if t.Kind != "partitioned" {
		return nil
	}
	rows, err := v.conn.Query(ctx, `
		SELECT p.relid::oid, pg_catalog.format('%I.%I', n.nspname, c.relname), c.relrowsecurity,
			coalesce(pg_catalog.format_type(a.atttypid, a.atttypmod), ''),
			pg_catalog.has_table_privilege($2, p.relid, 'SELECT, INSERT, UPDATE, DELETE')
		FROM pg_catalog.pg_partition_tree($1::oid::regclass) p
		JOIN pg_catalog.pg_class c ON c.oid = p.relid
		JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
		LEFT JOIN pg_catalog.pg_attribute a ON a.attrelid = c.oid AND a.attname = $3 AND a.attnum > 0 AND NOT a.attisdropped
		WHERE p.relid <> $1::oid::regclass
		ORDER BY 2`, t.OID, v.opts.AppRole, v.col)
	if err != nil {
		return err
	}
	type part struct {
		oid       uint32
		name, typ string
		rls       bool
		reachable bool
	}
	parts, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (part, error) {
		var p part
		err := r.Scan(&p.oid, &p.name, &p.rls, &p.typ, &p.reachable)
		return p, err
	})
	if err != nil {
		return err
	}
	bad := 0
	for _, p := range parts {
		if !p.reachable {
			continue
		}
		var problems []string
		if !p.rls {
			problems = append(problems, "Row-Level Security is not enabled")
		}
		have, err := v.policies(ctx, p.oid)
		if err != nil {
			return err
		}
		for _, tp := range tenantPolicies {
			if problem := v.policyProblem(tp, have, p.typ); problem != "" {
				problems = append(problems, problem)
			}
		}
		if len(problems) == 0 {
			continue
		}
		bad++
		v.add(name, CheckPartitions, StatusFail, fmt.Sprintf("REVOKE ALL ON %s FROM PUBLIC, %s;", p.name, pgx.Identifier{v.opts.AppRole}.Sanitize()),
			"%s can query the partition %s directly, where the parent's policies do not apply, and it is not protected: %s "+
				"(or run pgtenant policies apply, which gives partitions the policies)",
			v.opts.AppRole, p.name, strings.Join(problems, "; "))
	}
	if bad == 0 {
		v.ok(name, CheckPartitions, "%d partition(s), each protected or out of %s's reach", len(parts), v.opts.AppRole)
	}
	return nil
}

// registry: pgtenant policies apply records each table it made tenant-safe
// in tenancy.tables. A missing row is a warning: the checks above look at
// the table itself.
func (v *verifier) registry(ctx context.Context, t Table, name string) error {
	const fix = "run pgtenant policies apply"
	var exists bool
	if err := v.conn.QueryRow(ctx, "SELECT pg_catalog.to_regclass('tenancy.tables') IS NOT NULL").Scan(&exists); err != nil {
		return err
	}
	if !exists {
		v.add(name, CheckRegistry, StatusWarn, fix, "tenancy.tables does not exist: pgtenant policies apply has not run")
		return nil
	}
	var version *int32
	err := v.conn.QueryRow(ctx, `
		SELECT policy_version FROM tenancy.tables
		WHERE pg_catalog.to_regclass(table_name) = $1::oid::regclass LIMIT 1`, t.OID).Scan(&version)
	switch {
	case errors.Is(err, pgx.ErrNoRows):
		v.add(name, CheckRegistry, StatusWarn, fix, "no row in tenancy.tables: pgtenant policies apply has not run on this table")
	case err != nil:
		return err
	case version == nil || *version < PolicyVersion:
		v.add(name, CheckRegistry, StatusWarn, fix, "tenancy.tables records policies older than version %d", PolicyVersion)
	default:
		v.ok(name, CheckRegistry, "registered in tenancy.tables, policy version %d", *version)
	}
	return nil
}

// probe runs the live probe on tables, as the application role, in one
// transaction that it rolls back, each table in a savepoint of its own.
func (v *verifier) probe(ctx context.Context, tables []Table) error {
	if len(tables) == 0 {
		return nil
	}
	skip := func(format string, args ...any) {
		v.add("", CheckProbe, StatusWarn, "", "live probe not run: "+format, args...)
	}
	if len(v.opts.Keys) == 0 {
		skip("no context key to sign the probe's tokens: configure tenancy.context_keys")
		return nil
	}
	signer, err := NewSigner(v.opts.Keys, 0)
	if err != nil {
		return err
	}
	tx, err := v.conn.Begin(ctx)
	if err != nil {
		return err
	}
	defer tx.Rollback(context.WithoutCancel(ctx)) //nolint:errcheck // always rolled back
	var identity int64
	if err := tx.QueryRow(ctx, BackendIdentityQuery(v.opts.Citus)).Scan(&identity); err != nil {
		return err
	}
	if _, err := tx.Exec(ctx, "SET LOCAL ROLE "+pgx.Identifier{v.opts.AppRole}.Sanitize()); err != nil {
		skip("cannot SET ROLE %s (%v): verify as a superuser, or as a role that is a member of it", v.opts.AppRole, err)
		return nil
	}
	now := time.Now()
	for _, t := range tables {
		if err := v.probeTable(ctx, tx, t, signer, identity, now); err != nil {
			return fmt.Errorf("%s: %w", t.QualifiedName(), err)
		}
	}
	return nil
}

// probeTable inserts a row as tenant A and checks that tenant B cannot see,
// update or delete it nor insert a row of A's org.
//
// B's UPDATE and DELETE name the row by (tableoid, ctid), so PostgreSQL
// applies the SELECT policy to them too: an UPDATE or DELETE policy that is
// too wide is caught here only when the SELECT policy is as well (the policy
// checks catch it either way). An unqualified UPDATE or DELETE would catch
// it alone, but would lock and rewrite every row of the table.
func (v *verifier) probeTable(ctx context.Context, tx pgx.Tx, t Table, signer *Signer, identity int64, now time.Time) error {
	name, q := t.Schema+"."+t.Name, t.QualifiedName()
	col := pgx.Identifier{v.col}.Sanitize()
	warn := func(format string, args ...any) {
		v.add(name, CheckProbe, StatusWarn, "", "probe skipped: "+format, args...)
	}
	orgA, orgB := ProbeOrgA, ProbeOrgB
	switch t.OrgType {
	case "text":
	case "uuid":
		orgA, orgB = ProbeOrgUUIDA, ProbeOrgUUIDB
	default:
		warn("the probe supports text and uuid %s columns, not %q", v.col, t.OrgType)
		return nil
	}
	var canWrite bool
	if err := tx.QueryRow(ctx, "SELECT pg_catalog.has_table_privilege($1::oid, 'SELECT') AND pg_catalog.has_table_privilege($1::oid, 'INSERT')",
		t.OID).Scan(&canWrite); err != nil {
		return err
	}
	if !canWrite {
		warn("%s has no SELECT and INSERT privileges on it", v.opts.AppRole)
		return nil
	}
	sp, err := tx.Begin(ctx)
	if err != nil {
		return err
	}
	defer sp.Rollback(context.WithoutCancel(ctx)) //nolint:errcheck // always rolled back
	as := func(org string) error {
		token, _ := signer.Sign(org, identity, now)
		_, err := sp.Exec(ctx, "SELECT pg_catalog.set_config($1, $2, true), pg_catalog.set_config('app.current_org', $3, true)",
			TokenSetting, token, org)
		return err
	}
	// attempt runs sql in a savepoint of its own and returns the rows it
	// affected, or the error PostgreSQL raised.
	attempt := func(sql string, args ...any) (int64, error) {
		inner, err := sp.Begin(ctx)
		if err != nil {
			return 0, err
		}
		tag, err := inner.Exec(ctx, sql, args...)
		if err != nil {
			_ = inner.Rollback(ctx)
			return 0, err
		}
		return tag.RowsAffected(), inner.Commit(ctx)
	}
	insert := fmt.Sprintf("INSERT INTO %s (%s) VALUES ($1::text::%s)", q, col, t.OrgType)
	where := " WHERE tableoid = $1 AND ctid = $2::tid"
	if err := as(orgA); err != nil {
		warn("the database rejected the probe's context for tenant A (%v): are the keys the ones installed?", err)
		return nil
	}
	inner, err := sp.Begin(ctx)
	if err != nil {
		return err
	}
	var tableOID uint32
	var ctid string
	err = inner.QueryRow(ctx, insert+" RETURNING tableoid, ctid::text", orgA).Scan(&tableOID, &ctid)
	if err != nil {
		_ = inner.Rollback(ctx)
		switch code := sqlStateOf(err); {
		case code == "42501":
			v.add(name, CheckProbe, StatusFail, "", "tenant A cannot insert (or read back) a row of its own org: %v", err)
			return nil
		case IsContextSQLState(code):
			warn("the database rejected the probe's context token (%v): are the keys given the ones installed in tenancy.context_keys?", err)
			return nil
		}
		warn("cannot insert a row with only %s set as tenant A (%v); give the other required columns defaults to probe this table", v.col, err)
		return nil
	}
	if err := inner.Commit(ctx); err != nil {
		return err
	}
	var seen int
	if err := sp.QueryRow(ctx, "SELECT count(*) FROM "+q+where, tableOID, ctid).Scan(&seen); err != nil {
		return err
	}
	if seen != 1 {
		v.add(name, CheckProbe, StatusFail, "", "tenant A cannot see the row it inserted")
		return nil
	}

	if err := as(orgB); err != nil {
		return err
	}
	// Each of B's attempts must affect nothing or be refused with 42501;
	// any other error leaves that attempt unproven.
	var leaks, unproven []string
	for _, a := range []struct {
		sql, leak string
		args      []any
	}{
		{"SELECT FROM " + q + where, "can see it", []any{tableOID, ctid}},
		{"UPDATE " + q + " SET " + col + " = " + col + where, "can update it", []any{tableOID, ctid}},
		{"DELETE FROM " + q + where, "can delete it", []any{tableOID, ctid}},
		{insert, "can insert a row claiming tenant A's org", []any{orgA}},
	} {
		n, err := attempt(a.sql, a.args...)
		switch {
		case err == nil && n > 0:
			leaks = append(leaks, a.leak)
		case err != nil && sqlStateOf(err) != "42501":
			unproven = append(unproven, fmt.Sprintf("whether it %s (%v)", a.leak, err))
		}
	}
	if len(leaks) > 0 {
		v.add(name, CheckProbe, StatusFail, "run pgtenant policies apply, then verify again",
			"tenant B, given a row tenant A inserted, %s", strings.Join(leaks, ", "))
		return nil
	}
	if len(unproven) > 0 {
		warn("tenant B's attempts failed before showing %s", strings.Join(unproven, "; "))
		return nil
	}
	v.ok(name, CheckProbe, "tenant B cannot see, update or delete tenant A's row, nor insert a row of A's org")
	return nil
}

// sqlStateOf returns the SQLSTATE of err, or "" when it carries none.
func sqlStateOf(err error) string {
	var pe *pgconn.PgError
	if errors.As(err, &pe) {
		return pe.Code
	}
	return ""
}
