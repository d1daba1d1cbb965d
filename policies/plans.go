package policies

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
)

// DefaultPlansOrg is the tenant Plans plans as when PlansOptions.Org is
// empty: a synthetic one, so no real tenant's rows are needed. The planner
// does not look at the org's value, only at the table's statistics.
const DefaultPlansOrg = "pgtenant-plans-probe"

// SeqScanMinRows is the estimated table size from which Plans flags a
// sequential scan of a tenant table: below it a Seq Scan is the cheapest
// plan even with the right index, and the planner is right to choose it.
const SeqScanMinRows = 1000

// MaxStatStatements is how many of pg_stat_statements' statements, by total
// execution time, Plans explains.
const MaxStatStatements = 20

// plansStatement is the name of the prepared statement Plans explains.
const plansStatement = "pgtenant_plans"

// PlansOptions says what Plans explains and as whom.
type PlansOptions struct {
	// Selection says which tables are tenant tables.
	Selection TableSelection
	// AppRole is the role pgtenant connects as; Plans runs EXPLAIN as it
	// (SET LOCAL ROLE), so the connected role must be a member of it or a
	// superuser.
	AppRole string
	// Keys are the context keys the database accepts (tenancy.context_keys
	// from the config); the first signs the tenant context Plans runs in.
	Keys []ContextKey
	// Org is the tenant to plan as; DefaultPlansOrg when empty.
	Org string
	// Statements are more statements to explain (from a file), with or
	// without $n parameters.
	Statements []string
	// UseStatStatements adds pg_stat_statements' top statements (by total
	// execution time) that name a tenant table, when the extension is
	// installed and its query texts are readable.
	UseStatStatements bool
}

// PlanFinding is one plan that reads a tenant table without a
// tenant-leading index, or an explained statement that failed.
type PlanFinding struct {
	// Table is the tenant table, schema.name ("" when a statement failed to
	// plan before any table was seen).
	Table string `json:"table"`
	// Query is the statement explained.
	Query string `json:"query"`
	// Problem says what is wrong with the plan; Suggestion what to do.
	Problem    string `json:"problem"`
	Suggestion string `json:"suggestion,omitempty"`
	// Plan is the generic plan, EXPLAIN (VERBOSE, FORMAT JSON).
	Plan string `json:"plan,omitempty"`
}

func (f PlanFinding) String() string {
	s := f.Table + ": " + f.Problem
	if f.Suggestion != "" {
		s += "; " + f.Suggestion
	}
	return s
}

// planTable is what Plans knows of one tenant table.
type planTable struct {
	Table
	rows    float64           // pg_class.reltuples; -1 when never analyzed
	pk      []string          // primary key columns
	indexed []string          // columns of any index, in index order, once each
	leading map[string]string // index name -> its first column ("" for an expression)
}

// Plans explains, for each tenant table, a lookup by primary key and one
// by each indexed column, then opts.Statements and (see
// PlansOptions.UseStatStatements) pg_stat_statements' top statements, as
// opts.AppRole with a signed context for opts.Org, in a transaction it rolls
// back. It returns the plans that read a tenant table without a
// tenant-leading index: a Seq Scan of a table of at least SeqScanMinRows
// rows, an index that does not lead with the org column (the org check is
// then a Filter), a function called per row in a scan's Filter (a policy
// without the (SELECT ...) wrapper, or a non-leakproof operator that RLS
// keeps out of the index condition). Each says what index to add.
//
// Every plan is generic (plan_cache_mode = force_generic_plan): what a
// prepared statement runs with any parameter value. conn must not be in a
// transaction.
func Plans(ctx context.Context, conn *pgx.Conn, opts PlansOptions) ([]PlanFinding, error) {
	if opts.AppRole == "" {
		return nil, errors.New("no application role: name the role pgtenant connects as")
	}
	signer, err := NewSigner(opts.Keys, 0)
	if err != nil {
		return nil, err
	}
	org := opts.Org
	if org == "" {
		org = DefaultPlansOrg
	}
	tables, pts, err := loadPlanTables(ctx, conn, opts.Selection)
	if err != nil {
		return nil, err
	}
	orgCol := opts.Selection.orgColumn()
	var fromStats []string
	if opts.UseStatStatements {
		if fromStats, err = statStatements(ctx, conn, tables); err != nil {
			return nil, err
		}
	}

	tx, err := conn.Begin(ctx)
	if err != nil {
		return nil, err
	}
	defer tx.Rollback(context.WithoutCancel(ctx))
	if err := enterTenant(ctx, tx, signer, org, opts.AppRole); err != nil {
		return nil, err
	}

	var findings []PlanFinding
	byName := map[string]*planTable{}
	for _, pt := range pts {
		byName[pt.Schema+"."+pt.Name] = pt
	}
	// explain adds the findings of q's plan; when q does not plan, a finding
	// on table says so if reportErr.
	explain := func(table, q string, reportErr bool) {
		plan, err := explainGeneric(ctx, tx, q)
		switch {
		case err == nil:
			findings = append(findings, judgePlan(q, plan, byName, orgCol)...)
		case reportErr:
			findings = append(findings, PlanFinding{Table: table, Query: q, Problem: "EXPLAIN as " + opts.AppRole + " failed: " + err.Error()})
		}
	}
	for _, pt := range pts {
		if pt.Parent != "" && byName[strings.ReplaceAll(pt.Parent, `"`, "")] != nil {
			// The parent's lookups plan the partitions too.
			continue
		}
		for _, q := range probes(pt, orgCol) {
			explain(pt.Schema+"."+pt.Name, q, true)
		}
	}
	for _, q := range opts.Statements {
		explain("", q, true)
	}
	for _, q := range fromStats {
		// A statement pg_stat_statements normalized may not plan on its own
		// (an untyped parameter); it is not the user's to fix, so skip it.
		explain("", q, false)
	}
	return findings, nil
}

// loadPlanTables reads the tenant tables of sel with their sizes and
// indexes.
func loadPlanTables(ctx context.Context, conn *pgx.Conn, sel TableSelection) ([]Table, []*planTable, error) {
	tables, err := TenantTables(ctx, conn, sel)
	if err != nil {
		return nil, nil, err
	}
	pts := make([]*planTable, 0, len(tables))
	for _, t := range tables {
		pt, err := describeForPlans(ctx, conn, t)
		if err != nil {
			return nil, nil, err
		}
		pts = append(pts, pt)
	}
	return tables, pts, nil
}

// enterTenant makes tx run as appRole (unless connected as it) in org's
// signed context (none without a signer), with generic plans, as
// pgtenant's transactions would.
func enterTenant(ctx context.Context, tx pgx.Tx, signer *Signer, org, appRole string) error {
	var citus, isApp bool
	if err := tx.QueryRow(ctx, DetectCitusQuery+", current_user = $1", appRole).Scan(&citus, &isApp); err != nil {
		return err
	}
	var id int64
	if err := tx.QueryRow(ctx, BackendIdentityQuery(citus)).Scan(&id); err != nil {
		return err
	}
	if !isApp {
		if _, err := tx.Exec(ctx, "SET LOCAL ROLE "+pgx.Identifier{appRole}.Sanitize()); err != nil {
			return fmt.Errorf("switching to the application role %s (connect as a superuser or a member of it): %w", appRole, err)
		}
	}
	tok := ""
	if signer != nil {
		tok, _ = signer.Sign(org, id, time.Now())
	}
	_, err := tx.Exec(ctx, "SELECT pg_catalog.set_config($1, $2, true), pg_catalog.set_config('plan_cache_mode', 'force_generic_plan', true)",
		TokenSetting, tok)
	return err
}

// describeForPlans reads t's size, primary key and indexed columns.
func describeForPlans(ctx context.Context, conn *pgx.Conn, t Table) (*planTable, error) {
	pt := &planTable{Table: t, leading: map[string]string{}}
	if err := conn.QueryRow(ctx, "SELECT reltuples FROM pg_catalog.pg_class WHERE oid = $1", t.OID).Scan(&pt.rows); err != nil {
		return nil, fmt.Errorf("reading %s: %w", t.QualifiedName(), err)
	}
	rows, err := conn.Query(ctx, `
		SELECT c.relname, i.indisprimary,
			ARRAY(SELECT coalesce(a.attname, '')
				FROM pg_catalog.unnest(i.indkey[0:i.indnkeyatts - 1]) WITH ORDINALITY AS k(attnum, n)
				LEFT JOIN pg_catalog.pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum AND k.attnum > 0
				ORDER BY k.n)
		FROM pg_catalog.pg_index i
		JOIN pg_catalog.pg_class c ON c.oid = i.indexrelid
		WHERE i.indrelid = $1
		ORDER BY i.indisprimary DESC, c.relname`, t.OID)
	if err != nil {
		return nil, fmt.Errorf("reading the indexes of %s: %w", t.QualifiedName(), err)
	}
	var (
		name    string
		primary bool
		cols    []string
	)
	_, err = pgx.ForEachRow(rows, []any{&name, &primary, &cols}, func() error {
		if len(cols) > 0 {
			pt.leading[name] = cols[0]
		}
		if primary {
			pt.pk = slices.Clone(cols)
		}
		for _, c := range cols {
			if c != "" && !slices.Contains(pt.indexed, c) {
				pt.indexed = append(pt.indexed, c)
			}
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("reading the indexes of %s: %w", t.QualifiedName(), err)
	}
	return pt, nil
}

// probes are the lookups Plans explains on t: by primary key, and by each
// indexed column other than the org column, each value a parameter.
func probes(t *planTable, orgCol string) []string {
	var out []string
	lookup := func(cols []string) string {
		var conds []string
		for i, c := range cols {
			conds = append(conds, fmt.Sprintf("%s = $%d", quoteIdent(c), i+1))
		}
		return "SELECT * FROM " + quoteIdent(t.Schema) + "." + quoteIdent(t.Name) + " WHERE " + strings.Join(conds, " AND ")
	}
	var pk []string
	for _, c := range t.pk {
		if c != "" && c != orgCol {
			pk = append(pk, c)
		}
	}
	if len(pk) > 0 {
		out = append(out, lookup(pk))
	}
	for _, c := range t.indexed {
		if c == orgCol || (len(pk) == 1 && pk[0] == c) {
			continue
		}
		out = append(out, lookup([]string{c}))
	}
	return out
}

// explainGeneric returns the generic plan of query, EXPLAIN (VERBOSE,
// FORMAT JSON), in a savepoint that it rolls back: PostgreSQL 15 has no
// EXPLAIN (GENERIC_PLAN), so it prepares query and explains an EXECUTE with
// every parameter NULL under force_generic_plan. It deallocates the
// statement whatever happens: a rollback does not.
func explainGeneric(ctx context.Context, tx pgx.Tx, query string) (plan string, err error) {
	query = strings.TrimSpace(strings.TrimRight(strings.TrimSpace(query), ";"))
	sp, err := tx.Begin(ctx)
	if err != nil {
		return "", err
	}
	if _, err := sp.Exec(ctx, "PREPARE "+plansStatement+" AS "+query); err != nil {
		_ = sp.Rollback(ctx)
		return "", err
	}
	plan, err = explainPrepared(ctx, sp)
	if rbErr := sp.Rollback(ctx); err == nil {
		err = rbErr
	}
	if _, dErr := tx.Exec(ctx, "DEALLOCATE "+plansStatement); err == nil {
		err = dErr
	}
	return plan, err
}

// explainPrepared explains the generic plan of plansStatement.
func explainPrepared(ctx context.Context, sp pgx.Tx) (string, error) {
	var params int
	if err := sp.QueryRow(ctx, "SELECT pg_catalog.cardinality(parameter_types) FROM pg_catalog.pg_prepared_statements WHERE name = $1",
		plansStatement).Scan(&params); err != nil {
		return "", err
	}
	args := ""
	if params > 0 {
		args = "(" + strings.Repeat("NULL, ", params-1) + "NULL)"
	}
	var plan string
	err := sp.QueryRow(ctx, "EXPLAIN (VERBOSE, FORMAT JSON) EXECUTE "+plansStatement+args).Scan(&plan)
	return plan, err
}

// statStatements returns pg_stat_statements' top statements that name one of
// tables, or nothing when the extension is missing or its texts unreadable.
func statStatements(ctx context.Context, conn *pgx.Conn, tables []Table) ([]string, error) {
	var schema *string
	if err := conn.QueryRow(ctx, "SELECT extnamespace::regnamespace::text FROM pg_catalog.pg_extension WHERE extname = 'pg_stat_statements'").
		Scan(&schema); errors.Is(err, pgx.ErrNoRows) {
		return nil, nil
	} else if err != nil {
		return nil, err
	}
	names := make([]string, len(tables))
	for i, t := range tables {
		names[i] = regexp.QuoteMeta(t.Name)
	}
	if len(names) == 0 {
		return nil, nil
	}
	rows, err := conn.Query(ctx, `
		SELECT query FROM `+*schema+`.pg_stat_statements
		WHERE dbid = (SELECT oid FROM pg_catalog.pg_database WHERE datname = pg_catalog.current_database())
			AND query ~* '^\s*(SELECT|WITH|UPDATE|DELETE)\M'
			AND query ~* $1
		ORDER BY total_exec_time DESC
		LIMIT $2`, `\m(`+strings.Join(names, "|")+`)\M`, MaxStatStatements)
	if err != nil {
		return nil, nil
	}
	queries, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		// Installed in the database but not loaded (shared_preload_libraries),
		// or not readable: not a finding about the plans.
		return nil, nil
	}
	return queries, nil
}

// planNode is the part of an EXPLAIN (FORMAT JSON) node Plans reads.
type planNode struct {
	NodeType  string     `json:"Node Type"`
	Relation  string     `json:"Relation Name"`
	Schema    string     `json:"Schema"`
	Alias     string     `json:"Alias"`
	IndexName string     `json:"Index Name"`
	IndexCond string     `json:"Index Cond"`
	Filter    string     `json:"Filter"`
	Recheck   string     `json:"Recheck Cond"`
	PlanRows  float64    `json:"Plan Rows"`
	Plans     []planNode `json:"Plans"`
}

// funcCall finds a function call in an expression as EXPLAIN prints it.
var funcCall = regexp.MustCompile(`\b([A-Za-z_][A-Za-z0-9_$]*(?:\.[A-Za-z_][A-Za-z0-9_$]*)?)\(`)

// notFunctions are the constructs EXPLAIN prints like function calls.
var notFunctions = []string{"COALESCE", "NULLIF", "GREATEST", "LEAST", "ROW", "ARRAY"}

// judgePlan returns the findings of one plan.
func judgePlan(query, plan string, tables map[string]*planTable, orgCol string) []PlanFinding {
	var top []struct {
		Plan planNode `json:"Plan"`
	}
	if err := json.Unmarshal([]byte(plan), &top); err != nil || len(top) == 0 {
		return []PlanFinding{{Query: query, Problem: "unreadable EXPLAIN output: " + fmt.Sprint(err), Plan: plan}}
	}
	var out []PlanFinding
	seen := map[string]bool{}
	add := func(f PlanFinding) {
		if k := f.Table + "\x00" + f.Problem; !seen[k] {
			seen[k] = true
			f.Query, f.Plan = query, plan
			out = append(out, f)
		}
	}
	var walk func(n planNode)
	walk = func(n planNode) {
		for _, c := range n.Plans {
			walk(c)
		}
		if t := tables[n.Schema+"."+n.Relation]; t != nil {
			for _, f := range judgeScan(n, t, orgCol) {
				add(f)
			}
		}
	}
	walk(top[0].Plan)
	return out
}

// judgeScan returns the findings of one scan node n of tenant table t.
func judgeScan(n planNode, t *planTable, orgCol string) []PlanFinding {
	name := t.Schema + "." + t.Name
	if t.rows < SeqScanMinRows {
		// Small enough that any plan is cheap; the planner knows it.
		return nil
	}
	cond, indexes := n.IndexCond, []string{}
	if n.IndexName != "" {
		indexes = append(indexes, n.IndexName)
	}
	combined := false
	if n.NodeType == "Bitmap Heap Scan" {
		cond = n.Recheck
		indexes = bitmapIndexes(n)
		combined = slices.ContainsFunc(n.Plans, func(c planNode) bool { return c.NodeType == "BitmapAnd" })
	}
	filterCols := filterColumns(n.Alias, n.Filter, orgCol)
	suggestion := indexSuggestion(t, orgCol, append(filterColumns(n.Alias, cond, orgCol), filterCols...))
	var out []PlanFinding
	switch {
	case n.NodeType == "Seq Scan":
		p := fmt.Sprintf("Seq Scan on %s (about %.0f rows)", name, t.rows)
		if n.Filter != "" {
			p += " with Filter: " + n.Filter
		}
		out = append(out, PlanFinding{Table: name, Problem: p, Suggestion: suggestion})
	case combined:
		out = append(out, PlanFinding{Table: name, Suggestion: suggestion, Problem: fmt.Sprintf(
			"Bitmap Heap Scan on %s combines indexes %s (BitmapAnd): no one index leads with %s and holds the other columns of (%s)",
			name, strings.Join(indexes, ", "), orgCol, cond)})
	case len(indexes) > 0:
		for _, ix := range indexes {
			if lead, ok := t.leading[ix]; ok && lead != orgCol && mentions(n.Alias, n.Filter, orgCol) {
				out = append(out, PlanFinding{Table: name, Suggestion: suggestion, Problem: fmt.Sprintf(
					"%s uses index %s, which does not lead with %s: the tenant check is a Filter (%s)", n.NodeType, ix, orgCol, n.Filter)})
			}
		}
		if len(out) == 0 && len(filterCols) > 0 && len(filterColumns(n.Alias, cond, orgCol)) == 0 {
			out = append(out, PlanFinding{Table: name, Suggestion: suggestion, Problem: fmt.Sprintf(
				"%s on %s finds rows by %s alone and reads every row of the tenant to apply the Filter (%s)", n.NodeType, name, orgCol, n.Filter)})
		}
	}
	for _, m := range funcCall.FindAllStringSubmatch(n.Filter, -1) {
		fn := m[1]
		if slices.Contains(notFunctions, fn) {
			continue
		}
		problem := fmt.Sprintf("%s on %s calls %s() for every row in its Filter (%s)", n.NodeType, name, fn, n.Filter)
		s := suggestion
		if strings.HasSuffix(fn, "current_org") {
			s = "write the policy as " + orgCol + " = (SELECT tenancy.current_org()), which PostgreSQL evaluates once per statement"
		} else {
			s += ", or compare the column itself: Row-Level Security keeps a non-leakproof function or operator out of the index condition"
		}
		out = append(out, PlanFinding{Table: name, Problem: problem, Suggestion: s})
	}
	return out
}

// bitmapIndexes returns the indexes under a Bitmap Heap Scan (through
// BitmapAnd and BitmapOr).
func bitmapIndexes(n planNode) []string {
	var out []string
	for _, c := range n.Plans {
		switch c.NodeType {
		case "Bitmap Index Scan":
			out = append(out, c.IndexName)
		case "BitmapAnd", "BitmapOr":
			out = append(out, bitmapIndexes(c)...)
		}
	}
	return out
}

// filterColumns returns the columns of alias an expression names, in
// order, without the org column.
func filterColumns(alias, expr, orgCol string) []string {
	if alias == "" {
		return nil
	}
	re := regexp.MustCompile(regexp.QuoteMeta(alias) + `\.("(?:[^"]|"")+"|[A-Za-z_][A-Za-z0-9_$]*)`)
	var cols []string
	for _, m := range re.FindAllStringSubmatch(expr, -1) {
		c := m[1]
		if strings.HasPrefix(c, `"`) {
			c = strings.ReplaceAll(c[1:len(c)-1], `""`, `"`)
		}
		if c != orgCol && !slices.Contains(cols, c) {
			cols = append(cols, c)
		}
	}
	return cols
}

// mentions reports whether expr compares alias's column col.
func mentions(alias, expr, col string) bool {
	return slices.Contains(filterColumns(alias, expr, ""), col)
}

// indexSuggestion is the CREATE INDEX that lets the scan use the org column
// and cols.
func indexSuggestion(t *planTable, orgCol string, cols []string) string {
	return fmt.Sprintf("CREATE INDEX ON %s.%s (%s)", quoteIdent(t.Schema), quoteIdent(t.Name), quoteList(append([]string{orgCol}, cols...)))
}
