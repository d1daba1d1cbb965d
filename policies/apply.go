package policies

import (
	"context"
	"errors"
	"fmt"
	"hash/crc32"
	"regexp"
	"slices"
	"strings"

	"github.com/jackc/pgx/v5"
)

// PolicyVersion is the version of the policies Apply writes, recorded per
// table in tenancy.tables. Raise it when the policies' text changes.
const PolicyVersion = 1

// Org column types (config policies.org_type).
const (
	OrgTypeText = "text"
	OrgTypeUUID = "uuid"
)

// PolicyNames are the names of the policies Apply creates on every tenant
// table, by command.
var PolicyNames = map[string]string{
	"SELECT": "pgtenant_select",
	"INSERT": "pgtenant_insert",
	"UPDATE": "pgtenant_update",
	"DELETE": "pgtenant_delete",
}

// policyCommands is PolicyNames' keys in the order Apply creates them.
var policyCommands = []string{"SELECT", "INSERT", "UPDATE", "DELETE"}

// PolicyExpression is the condition of every pgtenant policy: the org column
// equals the verified tenant context. Without Citus the call is a scalar
// subquery, evaluated once per statement (an InitPlan) and still usable as
// an index key; Citus rejects subqueries in policies on distributed tables,
// so there it is the bare STABLE call.
func PolicyExpression(orgColumn, orgType string, citus bool) string {
	if orgColumn == "" {
		orgColumn = DefaultOrgColumn
	}
	call := "tenancy.current_org()"
	if orgType == OrgTypeUUID {
		call += "::uuid"
	}
	if !citus {
		call = "(SELECT " + call + ")"
	}
	return "(" + quoteIdent(orgColumn) + " = " + call + ")"
}

// orgDefault is the org column's default: the verified tenant context.
func orgDefault(orgType string) string {
	if orgType == OrgTypeUUID {
		return "tenancy.current_org()::uuid"
	}
	return "tenancy.current_org()"
}

// ApplyOptions say which tables Apply makes tenant tables, and how.
type ApplyOptions struct {
	// Selection picks the tenant tables and names the org column.
	Selection TableSelection
	// OrgType is the org column's type when Apply adds it, and the type an
	// existing one must have: OrgTypeText (default) or OrgTypeUUID.
	OrgType string
	// Citus writes the policies with the bare tenancy.current_org() call.
	Citus bool
	// RewriteKeys rewrites unique keys and foreign keys between tenant
	// tables that do not include the org column; without it they are only
	// offered (ApplyPlan.Offered).
	RewriteKeys bool
	// Concurrently creates the tenant-leading indexes with CREATE INDEX
	// CONCURRENTLY after the transaction commits (not on partitioned
	// tables, where PostgreSQL does not support it).
	Concurrently bool
	// AppRoles are the roles pgtenant connects as: they lose TRUNCATE,
	// REFERENCES and TRIGGER on tenant tables and TEMPORARY on the database.
	// At least one is required.
	AppRoles []string
}

func (o ApplyOptions) orgType() string {
	if o.OrgType == "" {
		return OrgTypeText
	}
	return o.OrgType
}

func (o ApplyOptions) validate() error {
	if err := o.Selection.Validate(); err != nil {
		return err
	}
	if t := o.orgType(); t != OrgTypeText && t != OrgTypeUUID {
		return fmt.Errorf("policies.org_type: %q must be text or uuid", o.OrgType)
	}
	return checkAppRoles(o.AppRoles)
}

// Statement is one SQL statement of a plan and why it is there.
type Statement struct {
	// Table is the table (schema.name, quoted as in SQL) it changes, or ""
	// for the database.
	Table   string `json:"table,omitempty"`
	Comment string `json:"comment"`
	SQL     string `json:"sql"`
}

// Backfill is a table whose existing rows have no org yet: Apply gives it
// the org column (NULLable, with the default) and nothing else until the
// rows are backfilled.
type Backfill struct {
	Table string `json:"table"`
	// SQL is the template of the backfill, to complete with each row's org.
	SQL string `json:"sql"`
}

// ApplyPlan is what Apply runs, or would run.
type ApplyPlan struct {
	// Tables are the tenant tables.
	Tables []Table `json:"tables"`
	// Statements run in one transaction, in order.
	Statements []Statement `json:"statements"`
	// Concurrent run after the transaction commits, one at a time.
	Concurrent []Statement `json:"concurrent,omitempty"`
	// Offered are key rewrites not applied (without RewriteKeys).
	Offered []Statement `json:"offered,omitempty"`
	// Blocked are key rewrites neither applied nor offered: a foreign key
	// of a table that is not a tenant table references the key.
	Blocked []Statement `json:"blocked,omitempty"`
	// Backfill lists the tables left without Row-Level Security until their
	// rows have an org.
	Backfill []Backfill `json:"backfill,omitempty"`
}

// Empty reports whether the plan changes nothing.
func (p *ApplyPlan) Empty() bool { return len(p.Statements) == 0 && len(p.Concurrent) == 0 }

// SQL is the plan as a script: the transaction, then the concurrent
// statements, each statement after its comment.
func (p *ApplyPlan) SQL() string {
	var b strings.Builder
	if len(p.Statements) > 0 {
		b.WriteString("BEGIN;\n")
		for _, s := range p.Statements {
			fmt.Fprintf(&b, "-- %s\n%s;\n", s.Comment, s.SQL)
		}
		b.WriteString("COMMIT;\n")
	}
	for _, s := range p.Concurrent {
		fmt.Fprintf(&b, "-- %s (after the transaction)\n%s;\n", s.Comment, s.SQL)
	}
	return b.String()
}

// BackfillError is Apply's error when tables need a backfill: everything
// else was applied.
type BackfillError struct{ Backfill []Backfill }

func (e *BackfillError) Error() string {
	var b strings.Builder
	b.WriteString("Row-Level Security is not enabled on ")
	for i, f := range e.Backfill {
		if i > 0 {
			b.WriteString(", ")
		}
		b.WriteString(f.Table)
	}
	b.WriteString(": rows have no org yet. As the table owner, set each row's org (")
	for i, f := range e.Backfill {
		if i > 0 {
			b.WriteString("; ")
		}
		b.WriteString(f.SQL)
	}
	b.WriteString("), then run pgtenant policies apply again (docs/rls.md, \"Backfilling org_id\")")
	return b.String()
}

// applyLockKey serializes Apply with Install and other Applies.
const applyLockKey = installLockKey

// Plan returns what Apply would run, without changing anything: it reads
// the catalogs in a transaction that it rolls back. conn must be connected
// as the owner of the tenant tables (or a superuser) and not be in a
// transaction; the tenancy schema must be installed.
func Plan(ctx context.Context, conn *pgx.Conn, opts ApplyOptions) (*ApplyPlan, error) {
	if err := opts.validate(); err != nil {
		return nil, err
	}
	tx, err := conn.Begin(ctx)
	if err != nil {
		return nil, err
	}
	defer tx.Rollback(context.WithoutCancel(ctx)) //nolint:errcheck // read-only
	return plan(ctx, tx, opts)
}

// Apply makes the selected tables tenant tables in one transaction (see
// docs/rls.md): the org column, Row-Level Security enabled and forced with
// the pgtenant_* policies, tenant-leading indexes, views made
// security_invoker, the application roles' hardening revokes, a
// tenancy.tables row per table and, with RewriteKeys, keys that include the
// org column. With Concurrently, the indexes are created after the commit.
// Running it again changes nothing: the plan holds only what is missing.
//
// It returns the plan it ran. When tables need a backfill, the rest is
// committed and the error is a *BackfillError.
func Apply(ctx context.Context, conn *pgx.Conn, opts ApplyOptions) (*ApplyPlan, error) {
	if err := opts.validate(); err != nil {
		return nil, err
	}
	var p *ApplyPlan
	err := pgx.BeginFunc(ctx, conn, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, "SELECT pg_catalog.pg_advisory_xact_lock($1)", int64(applyLockKey)); err != nil {
			return err
		}
		var err error
		if p, err = plan(ctx, tx, opts); err != nil {
			return err
		}
		for _, s := range p.Statements {
			if _, err := tx.Exec(ctx, s.SQL); err != nil {
				return fmt.Errorf("%s: %s: %w", s.Comment, s.SQL, err)
			}
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	for _, s := range p.Concurrent {
		if _, err := conn.Exec(ctx, s.SQL); err != nil {
			return p, fmt.Errorf("%s: %s: %w (the transaction was committed; a failed CREATE INDEX CONCURRENTLY leaves an INVALID index: drop it and run apply again)", s.Comment, s.SQL, err)
		}
	}
	if len(p.Backfill) > 0 {
		return p, &BackfillError{Backfill: p.Backfill}
	}
	return p, nil
}

// Remove undoes Apply for one table (a name as in SQL, resolved with the
// search_path): it drops the pgtenant_* policies, disables FORCE and, when
// the table has no other policy, Row-Level Security, and deletes its
// tenancy.tables row, in one transaction. It leaves the org column, the
// indexes, rewritten keys, views' security_invoker and the revoked
// privileges, and does not touch the table's partitions (remove each).
func Remove(ctx context.Context, conn *pgx.Conn, table string) error {
	return pgx.BeginFunc(ctx, conn, func(tx pgx.Tx) error {
		var (
			oid    *uint32
			qname  string
			others bool
		)
		err := tx.QueryRow(ctx, `
			SELECT c.oid, pg_catalog.format('%I.%I', n.nspname, c.relname),
				EXISTS (SELECT 1 FROM pg_catalog.pg_policy p WHERE p.polrelid = c.oid AND p.polname <> ALL($2::text[]))
			FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
			WHERE c.oid = pg_catalog.to_regclass($1) AND c.relkind IN ('r', 'p')`,
			table, policyNameList()).Scan(&oid, &qname, &others)
		if errors.Is(err, pgx.ErrNoRows) {
			return fmt.Errorf("remove: no table %s", table)
		}
		if err != nil {
			return fmt.Errorf("remove %s: %w", table, err)
		}
		var sql []string
		for _, cmd := range policyCommands {
			sql = append(sql, "DROP POLICY IF EXISTS "+PolicyNames[cmd]+" ON "+qname)
		}
		sql = append(sql, "ALTER TABLE "+qname+" NO FORCE ROW LEVEL SECURITY")
		if !others {
			sql = append(sql, "ALTER TABLE "+qname+" DISABLE ROW LEVEL SECURITY")
		}
		for _, s := range sql {
			if _, err := tx.Exec(ctx, s); err != nil {
				return fmt.Errorf("remove %s: %s: %w", table, s, err)
			}
		}
		var registry bool
		if err := tx.QueryRow(ctx, "SELECT pg_catalog.to_regclass('tenancy.tables') IS NOT NULL").Scan(&registry); err != nil {
			return err
		}
		if !registry {
			return nil
		}
		if _, err := tx.Exec(ctx, "DELETE FROM tenancy.tables WHERE table_name = $1", qname); err != nil {
			return fmt.Errorf("remove %s: deleting its tenancy.tables row: %w", table, err)
		}
		return nil
	})
}

func policyNameList() []string {
	names := make([]string, 0, len(policyCommands))
	for _, c := range policyCommands {
		names = append(names, PolicyNames[c])
	}
	return names
}

// reservedWords are the SQL key words quote_ident quotes (reserved,
// type/function name and column name key words).
var reservedWords = strings.Fields(`all analyse analyze and any array as asc asymmetric both case cast check
	collate column constraint create current_catalog current_date current_role current_time current_timestamp
	current_user default deferrable desc distinct do else end except false fetch for foreign from grant group
	having in initially intersect into lateral leading limit localtime localtimestamp not null offset on only or
	order placing primary references returning select session_user some symmetric system_user table then to
	trailing true union unique user using variadic when where window with authorization binary collation
	concurrently cross current_schema freeze full ilike inner is isnull join left like natural notnull outer
	overlaps right similar tablesample verbose between bigint bit boolean char character coalesce dec decimal
	exists extract float greatest grouping inout int integer interval least national nchar none normalize
	nullif numeric out overlay position precision real row setof smallint substring time timestamp treat trim
	values varchar xmlattributes xmlconcat xmlelement xmlexists xmlforest xmlnamespaces xmlparse xmlpi xmlroot
	xmlserialize xmltable`)

var plainIdent = regexp.MustCompile(`^[a-z_][a-z0-9_$]*$`)

// quoteIdent quotes s for SQL when it needs it, as quote_ident does.
func quoteIdent(s string) string {
	if plainIdent.MatchString(s) && !slices.Contains(reservedWords, s) {
		return s
	}
	return pgx.Identifier{s}.Sanitize()
}

// indexName is <table>_<cols>_org_idx, shortened with a hash of the full
// name to PostgreSQL's 63 bytes.
func indexName(table string, cols []string) string {
	const suffix = "_org_idx"
	name := table + "_" + strings.Join(cols, "_")
	if len(name)+len(suffix) <= 63 {
		return name + suffix
	}
	h := fmt.Sprintf("_%08x", crc32.ChecksumIEEE([]byte(name)))
	cut := 63 - len(suffix) - len(h)
	for cut > 0 && !utf8Start(name[cut]) {
		cut--
	}
	return name[:cut] + h + suffix
}

func utf8Start(b byte) bool { return b&0xC0 != 0x80 }

// tableState is one tenant table as the catalogs show it.
type tableState struct {
	Table
	q           string // schema.name quoted as in SQL
	inherited   bool   // a partition of a tenant table: columns, keys and indexes come from the parent
	partitioned bool
	hasCol      bool
	notNull     bool
	hasDefault  bool
	colType     string
	rls, force  bool
	registered  *int
	ready       bool // will have a NOT NULL org column when the plan has run
	policies    map[string]policyState
	indexes     []indexState
	keys        []keyState
}

type policyState struct {
	cmd, qual, check string
	permissive, all  bool
}

type indexState struct {
	name string
	cols []string // "" for an expression
}

type keyState struct {
	name, kind string // kind p, u or f
	cols       []string
	refOID     uint32
	refCols    []string
	onUpdate   string
	onDelete   string
	deferrable bool
	deferred   bool
}

// planner builds one ApplyPlan.
type planner struct {
	tx       pgx.Tx
	opts     ApplyOptions
	col      string // the org column
	qcol     string // quoted
	expected string // PolicyExpression as pg_get_expr prints it
	tables   []*tableState
	byOID    map[uint32]*tableState
	byName   map[string]*tableState // by q
	p        *ApplyPlan
}

func plan(ctx context.Context, tx pgx.Tx, opts ApplyOptions) (*ApplyPlan, error) {
	pl := &planner{tx: tx, opts: opts, col: opts.Selection.orgColumn(), p: &ApplyPlan{},
		byOID: map[uint32]*tableState{}, byName: map[string]*tableState{}}
	pl.qcol = quoteIdent(pl.col)
	var installed bool
	err := tx.QueryRow(ctx, `SELECT pg_catalog.to_regprocedure('tenancy.current_org()') IS NOT NULL
		AND pg_catalog.to_regclass('tenancy.tables') IS NOT NULL`).Scan(&installed)
	if err != nil {
		return nil, err
	}
	if !installed {
		return nil, errors.New("the tenancy schema (with tenancy.tables) is not installed: run pgtenant policies install first")
	}
	if err := pl.checkRoles(ctx); err != nil {
		return nil, err
	}
	tables, err := TenantTables(ctx, tx.Conn(), opts.Selection)
	if err != nil {
		return nil, err
	}
	pl.p.Tables = tables
	if pl.expected, err = pl.normalizedExpression(ctx); err != nil {
		return nil, err
	}
	for _, t := range tables {
		ts, err := pl.load(ctx, t)
		if err != nil {
			return nil, fmt.Errorf("reading %s: %w", t.QualifiedName(), err)
		}
		pl.tables = append(pl.tables, ts)
		pl.byOID[t.OID] = ts
		pl.byName[ts.q] = ts
	}
	for _, ts := range pl.tables {
		ts.inherited = ts.Parent != "" && pl.byName[ts.Parent] != nil
	}
	for _, step := range []func(context.Context) error{
		pl.columns, pl.rewriteKeys, pl.indexes, pl.rowSecurity, pl.views, pl.revokes, pl.registry,
	} {
		if err := step(ctx); err != nil {
			return nil, err
		}
	}
	return pl.p, nil
}

func (pl *planner) add(table, comment, sql string) {
	pl.p.Statements = append(pl.p.Statements, Statement{Table: table, Comment: comment, SQL: sql})
}

// checkRoles refuses application roles that do not exist or that are the
// connected role.
func (pl *planner) checkRoles(ctx context.Context) error {
	for _, r := range pl.opts.AppRoles {
		var exists, self bool
		err := pl.tx.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM pg_catalog.pg_roles WHERE rolname = $1), $1 = current_user`, r).Scan(&exists, &self)
		if err != nil {
			return err
		}
		if !exists {
			return fmt.Errorf("application role %q does not exist", r)
		}
		if self {
			return fmt.Errorf("connected as the application role %s: apply as the owner of the tenant tables", r)
		}
	}
	return nil
}

// normalizedExpression creates a policy with PolicyExpression on a scratch
// table in a savepoint it rolls back, and returns it as pg_get_expr prints
// it: the form to compare existing policies with.
func (pl *planner) normalizedExpression(ctx context.Context) (string, error) {
	expr := PolicyExpression(pl.col, pl.opts.orgType(), pl.opts.Citus)
	// A temporary table first; the tenancy schema when the role may not
	// create temporary tables (its owner may create tables there).
	var err error
	for _, schema := range []string{"pg_temp", "tenancy"} {
		var got string
		if got, err = pl.probe(ctx, schema+".pgtenant_policy_probe", expr); err == nil {
			return got, nil
		}
	}
	return "", fmt.Errorf("checking the policy expression %s: %w", expr, err)
}

func (pl *planner) probe(ctx context.Context, table, expr string) (string, error) {
	sp, err := pl.tx.Begin(ctx)
	if err != nil {
		return "", err
	}
	defer sp.Rollback(ctx) //nolint:errcheck // the probe is never kept
	_, err = sp.Exec(ctx, "CREATE TABLE "+table+" ("+pl.qcol+" "+pl.opts.orgType()+"); "+
		"CREATE POLICY probe ON "+table+" USING "+expr)
	if err != nil {
		return "", err
	}
	var got string
	err = sp.QueryRow(ctx, "SELECT pg_catalog.pg_get_expr(polqual, polrelid) FROM pg_catalog.pg_policy WHERE polrelid = $1::regclass", table).Scan(&got)
	return got, err
}

func (pl *planner) load(ctx context.Context, t Table) (*tableState, error) {
	ts := &tableState{Table: t, policies: map[string]policyState{}}
	err := pl.tx.QueryRow(ctx, `
		SELECT pg_catalog.format('%I.%I', n.nspname, c.relname), c.relkind = 'p', c.relrowsecurity, c.relforcerowsecurity,
			a.attnum IS NOT NULL, coalesce(a.attnotnull, false), coalesce(a.atthasdef, false),
			coalesce(pg_catalog.format_type(a.atttypid, a.atttypmod), ''),
			(SELECT policy_version FROM tenancy.tables WHERE table_name = pg_catalog.format('%I.%I', n.nspname, c.relname))
		FROM pg_catalog.pg_class c
		JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
		LEFT JOIN pg_catalog.pg_attribute a ON a.attrelid = c.oid AND a.attname = $2 AND a.attnum > 0 AND NOT a.attisdropped
		WHERE c.oid = $1`, t.OID, pl.col).Scan(&ts.q, &ts.partitioned, &ts.rls, &ts.force,
		&ts.hasCol, &ts.notNull, &ts.hasDefault, &ts.colType, &ts.registered)
	if err != nil {
		return nil, err
	}
	rows, err := pl.tx.Query(ctx, `
		SELECT polname, polcmd::text, polpermissive, polroles = '{0}'::oid[],
			coalesce(pg_catalog.pg_get_expr(polqual, polrelid), ''), coalesce(pg_catalog.pg_get_expr(polwithcheck, polrelid), '')
		FROM pg_catalog.pg_policy WHERE polrelid = $1 AND polname = ANY($2)`, t.OID, policyNameList())
	if err != nil {
		return nil, err
	}
	var (
		name string
		ps   policyState
	)
	if _, err := pgx.ForEachRow(rows, []any{&name, &ps.cmd, &ps.permissive, &ps.all, &ps.qual, &ps.check}, func() error {
		ts.policies[name] = ps
		return nil
	}); err != nil {
		return nil, err
	}
	rows, err = pl.tx.Query(ctx, `
		SELECT ci.relname, ARRAY(
			SELECT coalesce(a.attname, '')
			FROM pg_catalog.unnest(x.indkey::int2[]) WITH ORDINALITY k(attnum, i)
			LEFT JOIN pg_catalog.pg_attribute a ON a.attrelid = x.indrelid AND a.attnum = k.attnum AND k.attnum > 0
			WHERE k.i <= x.indnkeyatts ORDER BY k.i)
		FROM pg_catalog.pg_index x JOIN pg_catalog.pg_class ci ON ci.oid = x.indexrelid
		WHERE x.indrelid = $1 ORDER BY ci.relname`, t.OID)
	if err != nil {
		return nil, err
	}
	var ix indexState
	if _, err := pgx.ForEachRow(rows, []any{&ix.name, &ix.cols}, func() error {
		ts.indexes = append(ts.indexes, ix)
		return nil
	}); err != nil {
		return nil, err
	}
	rows, err = pl.tx.Query(ctx, `
		SELECT co.conname, co.contype::text,
			ARRAY(SELECT a.attname FROM pg_catalog.unnest(co.conkey) WITH ORDINALITY k(n, i)
				JOIN pg_catalog.pg_attribute a ON a.attrelid = co.conrelid AND a.attnum = k.n ORDER BY k.i),
			co.confrelid,
			ARRAY(SELECT a.attname FROM pg_catalog.unnest(co.confkey) WITH ORDINALITY k(n, i)
				JOIN pg_catalog.pg_attribute a ON a.attrelid = co.confrelid AND a.attnum = k.n ORDER BY k.i),
			co.confupdtype::text, co.confdeltype::text, co.condeferrable, co.condeferred
		FROM pg_catalog.pg_constraint co
		WHERE co.conrelid = $1 AND co.contype IN ('p', 'u', 'f') AND co.conparentid = 0
		ORDER BY co.conname`, t.OID)
	if err != nil {
		return nil, err
	}
	var k keyState
	if _, err := pgx.ForEachRow(rows, []any{&k.name, &k.kind, &k.cols, &k.refOID, &k.refCols, &k.onUpdate, &k.onDelete, &k.deferrable, &k.deferred}, func() error {
		ts.keys = append(ts.keys, k)
		return nil
	}); err != nil {
		return nil, err
	}
	return ts, nil
}

// columns adds the org column where missing, NOT NULL and with its default,
// and marks each table ready or in need of a backfill.
func (pl *planner) columns(ctx context.Context) error {
	typ := pl.opts.orgType()
	def := orgDefault(typ)
	for _, ts := range pl.tables {
		if ts.inherited {
			continue
		}
		if ts.Parent != "" && !ts.hasCol {
			return fmt.Errorf("%s is a partition of %s, which is not a tenant table: a partition gets its columns from its parent, so include %s in policies.tables too",
				ts.q, ts.Parent, ts.Parent)
		}
		if ts.hasCol && ts.colType != typ {
			return fmt.Errorf("%s.%s is %s, but policies.org_type is %s: change the setting, or the column (ALTER TABLE %s ALTER COLUMN %s TYPE %s USING %s::%s)",
				ts.q, pl.qcol, ts.colType, typ, ts.q, pl.qcol, typ, pl.qcol, typ)
		}
		if ts.hasCol && ts.notNull {
			ts.ready = true
			if !ts.hasDefault {
				pl.add(ts.q, "the org column defaults to the tenant context, so INSERTs need not name it",
					"ALTER TABLE "+ts.q+" ALTER COLUMN "+pl.qcol+" SET DEFAULT "+def)
			}
			continue
		}
		// Missing or NULLable: are there rows without an org?
		cond := ""
		if ts.hasCol {
			cond = " WHERE " + pl.qcol + " IS NULL"
		}
		var rows bool
		if err := pl.tx.QueryRow(ctx, "SELECT EXISTS (SELECT 1 FROM "+ts.q+cond+")").Scan(&rows); err != nil {
			return fmt.Errorf("checking %s for rows without an org: %w", ts.q, err)
		}
		switch {
		case !ts.hasCol && !rows:
			ts.ready = true
			pl.add(ts.q, "add the org column; the table is empty, so NOT NULL holds",
				"ALTER TABLE "+ts.q+" ADD COLUMN "+pl.qcol+" "+typ+" NOT NULL DEFAULT "+def)
		case !ts.hasCol:
			pl.add(ts.q, "add the org column, NULLable until the existing rows are backfilled",
				"ALTER TABLE "+ts.q+" ADD COLUMN "+pl.qcol+" "+typ+" DEFAULT "+def)
			pl.backfill(ts)
		case rows:
			pl.backfill(ts)
		default:
			ts.ready = true
			if !ts.hasDefault {
				pl.add(ts.q, "the org column defaults to the tenant context, so INSERTs need not name it",
					"ALTER TABLE "+ts.q+" ALTER COLUMN "+pl.qcol+" SET DEFAULT "+def)
			}
			pl.add(ts.q, "every row has an org: make the org column NOT NULL",
				"ALTER TABLE "+ts.q+" ALTER COLUMN "+pl.qcol+" SET NOT NULL")
		}
	}
	for _, ts := range pl.tables {
		if ts.inherited {
			ts.ready = pl.byName[ts.Parent].ready
		}
	}
	return nil
}

func (pl *planner) backfill(ts *tableState) {
	pl.p.Backfill = append(pl.p.Backfill, Backfill{Table: ts.q,
		SQL: "UPDATE " + ts.q + " SET " + pl.qcol + " = <the row's org> WHERE " + pl.qcol + " IS NULL"})
}

// withOrg is cols with the org column first (and not repeated).
func (pl *planner) withOrg(cols []string) []string {
	out := []string{pl.col}
	for _, c := range cols {
		if c != pl.col {
			out = append(out, c)
		}
	}
	return out
}

func quoteList(cols []string) string {
	q := make([]string, len(cols))
	for i, c := range cols {
		q[i] = quoteIdent(c)
	}
	return strings.Join(q, ", ")
}

// rewriteKeys offers (or, with RewriteKeys, plans) unique keys and foreign
// keys between tenant tables that include the org column: a key unique
// across tenants tells one tenant that another's row exists. Foreign keys
// are dropped first, the keys rewritten, then the foreign keys added back
// on (org, cols).
func (pl *planner) rewriteKeys(ctx context.Context) error {
	var drops, keys, fks []Statement
	blocked := map[string]bool{} // keyID of the keys that cannot be dropped
	for _, ts := range pl.tables {
		if ts.inherited || !ts.ready {
			continue
		}
		for _, k := range ts.keys {
			if k.kind == "f" || slices.Contains(k.cols, pl.col) {
				continue
			}
			what := "UNIQUE"
			if k.kind == "p" {
				what = "PRIMARY KEY"
			}
			st := Statement{Table: ts.q,
				Comment: fmt.Sprintf("%s %s (%s) is unique across tenants (an existence oracle): make it unique per tenant", ts.q, what, strings.Join(k.cols, ", ")),
				SQL: "ALTER TABLE " + ts.q + " DROP CONSTRAINT " + quoteIdent(k.name) + ", ADD CONSTRAINT " + quoteIdent(k.name) +
					" " + what + " (" + quoteList(pl.withOrg(k.cols)) + ")"}
			outside, err := pl.foreignReferences(ctx, ts, k.name)
			if err != nil {
				return err
			}
			if len(outside) > 0 {
				st.Comment += fmt.Sprintf("; blocked: referenced by %s, which apply does not rewrite (not a tenant table, or one waiting for a backfill). "+
					"Include %s in those foreign keys, or make their tables tenant tables, then apply again", strings.Join(outside, ", "), pl.col)
				pl.p.Blocked = append(pl.p.Blocked, st)
				blocked[keyID(ts.OID, k.cols)] = true
				continue
			}
			keys = append(keys, st)
			// The new key's index leads with the org column.
			if pl.opts.RewriteKeys {
				ts.indexes = append(ts.indexes, indexState{name: k.name, cols: pl.withOrg(k.cols)})
			}
		}
	}
	for _, ts := range pl.tables {
		if ts.inherited || !ts.ready {
			continue
		}
		for _, k := range ts.keys {
			ref := pl.byOID[k.refOID]
			if k.kind != "f" || slices.Contains(k.cols, pl.col) || ref == nil || !ref.ready {
				continue // a shared table, or one not ready: nothing to include
			}
			drop := Statement{Table: ts.q,
				Comment: fmt.Sprintf("foreign key %s of %s probes other tenants' keys: drop it, to add it back on (%s, ...)", k.name, ts.q, pl.col),
				SQL:     "ALTER TABLE " + ts.q + " DROP CONSTRAINT " + quoteIdent(k.name)}
			if blocked[keyID(ref.OID, k.refCols)] {
				drop.Comment += "; blocked with the key it references, " + ref.q + " (" + strings.Join(k.refCols, ", ") + ")"
				pl.p.Blocked = append(pl.p.Blocked, drop)
				continue
			}
			drops = append(drops, drop)
			fks = append(fks, Statement{Table: ts.q,
				Comment: fmt.Sprintf("foreign key %s of %s within the tenant", k.name, ts.q),
				SQL: "ALTER TABLE " + ts.q + " ADD CONSTRAINT " + quoteIdent(k.name) + " FOREIGN KEY (" + quoteList(pl.withOrg(k.cols)) +
					") REFERENCES " + ref.q + " (" + quoteList(pl.withOrg(k.refCols)) + ")" + fkActions(k)})
		}
	}
	all := append(append(drops, keys...), fks...)
	if pl.opts.RewriteKeys {
		pl.p.Statements = append(pl.p.Statements, all...)
	} else {
		pl.p.Offered = append(pl.p.Offered, all...)
	}
	return nil
}

// keyID names a key by its table and its set of columns.
func keyID(table uint32, cols []string) string {
	return fmt.Sprint(table, slices.Sorted(slices.Values(cols)))
}

// foreignReferences returns the foreign keys ("name of table") that
// reference key of ts from tables whose keys apply does not rewrite: the key
// cannot be dropped while they exist.
func (pl *planner) foreignReferences(ctx context.Context, ts *tableState, key string) ([]string, error) {
	rows, err := pl.tx.Query(ctx, `
		SELECT fk.conrelid, pg_catalog.format('%I of %s', fk.conname, fk.conrelid::pg_catalog.regclass)
		FROM pg_catalog.pg_constraint k
		JOIN pg_catalog.pg_constraint fk ON fk.contype = 'f' AND fk.conindid = k.conindid AND fk.conparentid = 0
		WHERE k.conrelid = $1 AND k.conname = $2
		ORDER BY 2`, ts.OID, key)
	if err != nil {
		return nil, err
	}
	var out []string
	var oid uint32
	var what string
	_, err = pgx.ForEachRow(rows, []any{&oid, &what}, func() error {
		if ref := pl.byOID[oid]; ref == nil || ref.inherited || !ref.ready {
			out = append(out, what)
		}
		return nil
	})
	return out, err
}

// fkActions is the ON UPDATE / ON DELETE / DEFERRABLE clause of a foreign
// key; SET NULL and SET DEFAULT on delete leave the org column alone.
func fkActions(k keyState) string {
	action := map[string]string{"a": "", "r": "RESTRICT", "c": "CASCADE", "n": "SET NULL", "d": "SET DEFAULT"}
	var b strings.Builder
	if a := action[k.onUpdate]; a != "" {
		b.WriteString(" ON UPDATE " + a)
	}
	if a := action[k.onDelete]; a != "" {
		b.WriteString(" ON DELETE " + a)
		if k.onDelete == "n" || k.onDelete == "d" {
			b.WriteString(" (" + quoteList(k.cols) + ")")
		}
	}
	if k.deferrable {
		b.WriteString(" DEFERRABLE")
		if k.deferred {
			b.WriteString(" INITIALLY DEFERRED")
		}
	}
	return b.String()
}

// indexes plans an index leading with the org column for every index that
// does not, and for every foreign key's columns, unless one exists; and one
// on the org column alone for a table that would otherwise have none.
func (pl *planner) indexes(ctx context.Context) error {
	for _, ts := range pl.tables {
		if ts.inherited || !ts.ready {
			continue
		}
		wants := [][]string{nil} // nil: the org column alone, if nothing else leads with it
		for _, ix := range ts.indexes {
			if len(ix.cols) == 0 || ix.cols[0] == pl.col || slices.Contains(ix.cols, "") {
				continue
			}
			wants = append(wants, ix.cols)
		}
		for _, k := range ts.keys {
			if k.kind == "f" {
				wants = append(wants, k.cols)
			}
		}
		for _, cols := range wants {
			orgOnly := cols == nil
			if orgOnly && len(wants) > 1 {
				continue // the other indexes lead with the org column
			}
			cols = pl.withOrg(cols)[1:]
			if len(cols) == 0 && !orgOnly || pl.covered(ts, cols) {
				continue
			}
			name := indexName(ts.Name, cols)
			if orgOnly {
				name = indexName(ts.Name, []string{pl.col})
			}
			var exists bool
			if err := pl.tx.QueryRow(ctx, "SELECT pg_catalog.to_regclass(pg_catalog.format('%I.%I', $1::text, $2::text)) IS NOT NULL",
				ts.Schema, name).Scan(&exists); err != nil {
				return err
			}
			if exists {
				continue
			}
			ts.indexes = append(ts.indexes, indexState{name: name, cols: pl.withOrg(cols)})
			comment := fmt.Sprintf("tenant-leading index for (%s) of %s", strings.Join(cols, ", "), ts.q)
			if orgOnly {
				comment = "index on the org column of " + ts.q + ", which has no index leading with it"
			}
			s := Statement{Table: ts.q,
				Comment: comment,
				SQL:     "CREATE INDEX IF NOT EXISTS " + quoteIdent(name) + " ON " + ts.q + " (" + quoteList(pl.withOrg(cols)) + ")"}
			if pl.opts.Concurrently && !ts.partitioned {
				s.SQL = strings.Replace(s.SQL, "CREATE INDEX", "CREATE INDEX CONCURRENTLY", 1)
				pl.p.Concurrent = append(pl.p.Concurrent, s)
				continue
			}
			pl.p.Statements = append(pl.p.Statements, s)
		}
	}
	return nil
}

// covered reports whether an index of ts leads with the org column and then
// cols.
func (pl *planner) covered(ts *tableState, cols []string) bool {
	want := pl.withOrg(cols)
	for _, ix := range ts.indexes {
		if len(ix.cols) >= len(want) && slices.Equal(ix.cols[:len(want)], want) {
			return true
		}
	}
	return false
}

// rowSecurity plans the pgtenant_* policies and ENABLE and FORCE ROW LEVEL
// SECURITY.
func (pl *planner) rowSecurity(context.Context) error {
	expr := PolicyExpression(pl.col, pl.opts.orgType(), pl.opts.Citus)
	polcmd := map[string]string{"SELECT": "r", "INSERT": "a", "UPDATE": "w", "DELETE": "d"}
	for _, ts := range pl.tables {
		if !ts.ready {
			continue
		}
		for _, cmd := range policyCommands {
			name := PolicyNames[cmd]
			using, check := pl.expected, pl.expected
			clause := " USING " + expr + " WITH CHECK " + expr
			switch cmd {
			case "SELECT", "DELETE":
				check, clause = "", " USING "+expr
			case "INSERT":
				using, clause = "", " WITH CHECK "+expr
			}
			have, ok := ts.policies[name]
			if ok && have.cmd == polcmd[cmd] && have.permissive && have.all && have.qual == using && have.check == check {
				continue
			}
			if ok {
				pl.add(ts.q, fmt.Sprintf("policy %s on %s differs from pgtenant's: replace it", name, ts.q),
					"DROP POLICY "+name+" ON "+ts.q)
			}
			pl.add(ts.q, fmt.Sprintf("%s on %s: only the tenant's rows", cmd, ts.q),
				"CREATE POLICY "+name+" ON "+ts.q+" AS PERMISSIVE FOR "+cmd+" TO PUBLIC"+clause)
		}
		if !ts.rls {
			pl.add(ts.q, "turn the policies on", "ALTER TABLE "+ts.q+" ENABLE ROW LEVEL SECURITY")
		}
		if !ts.force {
			pl.add(ts.q, "hold the table owner to the policies too", "ALTER TABLE "+ts.q+" FORCE ROW LEVEL SECURITY")
		}
	}
	return nil
}

// views plans security_invoker for views over tenant tables: otherwise a
// view reads with its owner's rights.
func (pl *planner) views(ctx context.Context) error {
	var oids []uint32
	for _, ts := range pl.tables {
		if ts.ready {
			oids = append(oids, ts.OID)
		}
	}
	// Views over views over tenant tables count too: an inner view runs
	// with the rights of the outer view's owner unless the outer one is
	// security_invoker as well.
	rows, err := pl.tx.Query(ctx, `
		WITH RECURSIVE reads(view, base) AS (
			SELECT r.ev_class, d.refobjid
			FROM pg_catalog.pg_rewrite r
			JOIN pg_catalog.pg_depend d ON d.classid = 'pg_catalog.pg_rewrite'::pg_catalog.regclass AND d.objid = r.oid
				AND d.refclassid = 'pg_catalog.pg_class'::pg_catalog.regclass
			WHERE d.refobjid <> r.ev_class),
		over(oid) AS (
			SELECT view FROM reads WHERE base = ANY($1::oid[])
			UNION
			SELECT reads.view FROM reads JOIN over ON reads.base = over.oid)
		SELECT pg_catalog.format('%I.%I', vn.nspname, v.relname)
		FROM over
		JOIN pg_catalog.pg_class v ON v.oid = over.oid
		JOIN pg_catalog.pg_namespace vn ON vn.oid = v.relnamespace
		WHERE v.relkind = 'v'
			AND NOT EXISTS (SELECT 1 FROM pg_catalog.unnest(v.reloptions) o WHERE o ~* '^security_invoker=(true|on|yes|1)$')
		ORDER BY 1`, oids)
	if err != nil {
		return err
	}
	views, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return err
	}
	for _, v := range views {
		pl.add(v, "the view "+v+" reads tenant tables: apply their policies as the querying role",
			"ALTER VIEW "+v+" SET (security_invoker = true)")
	}
	return nil
}

// revokes plans the application roles' hardening: no TRUNCATE (ignores
// RLS), REFERENCES (probes keys) or TRIGGER on tenant tables, no TEMPORARY
// (shadowing) on the database, granted to them or to PUBLIC.
func (pl *planner) revokes(ctx context.Context) error {
	for _, role := range pl.opts.AppRoles {
		qrole := quoteIdent(role)
		for _, ts := range pl.tables {
			var granted bool
			err := pl.tx.QueryRow(ctx, `
				SELECT EXISTS (SELECT 1 FROM pg_catalog.pg_class c, pg_catalog.aclexplode(c.relacl) a
					WHERE c.oid = $1 AND a.privilege_type IN ('TRUNCATE', 'REFERENCES', 'TRIGGER')
						AND a.grantee IN (0, (SELECT oid FROM pg_catalog.pg_roles WHERE rolname = $2)))`,
				ts.OID, role).Scan(&granted)
			if err != nil {
				return err
			}
			if granted {
				pl.add(ts.q, "TRUNCATE ignores RLS, REFERENCES probes other tenants' keys, TRIGGER runs code in their transactions",
					"REVOKE TRUNCATE, REFERENCES, TRIGGER ON "+ts.q+" FROM PUBLIC, "+qrole)
			}
		}
		var temp bool
		var db string
		err := pl.tx.QueryRow(ctx, `
			SELECT pg_catalog.quote_ident(d.datname), d.datacl IS NULL OR EXISTS (
				SELECT 1 FROM pg_catalog.aclexplode(d.datacl) a
				WHERE a.privilege_type = 'TEMPORARY'
					AND a.grantee IN (0, (SELECT oid FROM pg_catalog.pg_roles WHERE rolname = $1)))
			FROM pg_catalog.pg_database d WHERE d.datname = pg_catalog.current_database()`, role).Scan(&db, &temp)
		if err != nil {
			return err
		}
		if temp {
			pl.add("", "temporary objects can shadow tables and functions",
				"REVOKE TEMPORARY ON DATABASE "+db+" FROM PUBLIC, "+qrole)
		}
	}
	return nil
}

// registry plans the tenancy.tables row of every table made a tenant
// table.
func (pl *planner) registry(context.Context) error {
	for _, ts := range pl.tables {
		if !ts.ready || (ts.registered != nil && *ts.registered == PolicyVersion) {
			continue
		}
		pl.add(ts.q, fmt.Sprintf("record policy version %d for %s", PolicyVersion, ts.q),
			fmt.Sprintf("INSERT INTO tenancy.tables (table_name, policy_version) VALUES (%s, %d) "+
				"ON CONFLICT (table_name) DO UPDATE SET policy_version = EXCLUDED.policy_version, applied_at = pg_catalog.now()",
				quoteLiteral(ts.q), PolicyVersion))
	}
	return nil
}

func quoteLiteral(s string) string { return "'" + strings.ReplaceAll(s, "'", "''") + "'" }
