package policies

import (
	"strings"
	"testing"
)

// ordersDDL is a tenant table large enough for the planner to prefer an
// index: 200 tenants x 100 rows, an index (org_id, customer) and one on
// note alone, and the policy in the form that keeps index use.
const ordersDDL = `
CREATE TABLE orders (
	org_id text NOT NULL,
	id bigint NOT NULL,
	customer integer NOT NULL,
	note text NOT NULL,
	PRIMARY KEY (org_id, id)
);
INSERT INTO orders SELECT 'org' || (g % 200), g, g % 977, 'note ' || g FROM generate_series(1, 20000) g;
CREATE INDEX orders_customer ON orders (org_id, customer);
ALTER TABLE orders ENABLE ROW LEVEL SECURITY;
ALTER TABLE orders FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON orders
	USING (org_id = (SELECT tenancy.current_org()))
	WITH CHECK (org_id = (SELECT tenancy.current_org()));
ANALYZE orders;
`

// withOrders installs the tenancy schema with keyA and creates orders,
// readable by the app role, and returns a superuser connection for Plans.
func (d *tenantDB) withOrders() *tenantDB {
	d.t.Helper()
	owner := d.connect(d.owner)
	d.install(owner, keyA)
	d.exec(owner, ordersDDL+"GRANT SELECT ON orders TO "+ident(d.app))
	return d
}

func (d *tenantDB) plans(opts PlansOptions) []PlanFinding {
	d.t.Helper()
	opts.AppRole, opts.Keys = d.app, []ContextKey{keyA}
	findings, err := Plans(ctxT(d.t), d.superuser(), opts)
	if err != nil {
		d.t.Fatalf("Plans: %v", err)
	}
	return findings
}

func TestPlansFindNothingWhenEveryLookupUsesATenantLeadingIndex(t *testing.T) {
	t.Parallel()
	d := newTenantDB(t).withOrders()
	if f := d.plans(PlansOptions{}); len(f) != 0 {
		t.Errorf("findings on a table with tenant-leading indexes: %v", f)
	}
}

func TestPlansFlagATableWhoseTenantIndexWasDroppedAndSuggestIt(t *testing.T) {
	t.Parallel()
	d := newTenantDB(t).withOrders()
	d.exec(d.superuser(), "DROP INDEX orders_customer; CREATE INDEX orders_customer_only ON orders (customer)")
	f := d.plans(PlansOptions{})
	if len(f) == 0 {
		t.Fatal("no finding after the tenant-leading index on customer was replaced by one on customer alone")
	}
	var found bool
	for _, x := range f {
		if x.Table == "public.orders" && strings.Contains(x.Query, "customer = $1") &&
			x.Suggestion == "CREATE INDEX ON public.orders (org_id, customer)" {
			found = true
		}
	}
	if !found {
		t.Errorf("no finding for the customer lookup naming orders_customer_only and suggesting (org_id, customer): %v", f)
	}
}

func TestPlansFlagAStatementFilteringByAColumnWithoutIndex(t *testing.T) {
	t.Parallel()
	d := newTenantDB(t).withOrders()
	const q = "SELECT id FROM orders WHERE note = $1"
	f := d.plans(PlansOptions{Statements: []string{q + ";"}})
	if len(f) != 1 {
		t.Fatalf("findings = %v, want one for the note lookup", f)
	}
	if f[0].Query != q+";" || f[0].Table != "public.orders" || !strings.Contains(f[0].Problem, "(orders.note = $1)") ||
		f[0].Suggestion != "CREATE INDEX ON public.orders (org_id, note)" || !strings.Contains(f[0].Plan, `"Filter"`) {
		t.Errorf("finding = %+v", f[0])
	}
}

func TestPlansFlagAFunctionCalledPerRowInAFilter(t *testing.T) {
	t.Parallel()
	d := newTenantDB(t).withOrders()
	d.exec(d.superuser(), "CREATE INDEX orders_lower_note ON orders (lower(note))")
	f := d.plans(PlansOptions{Statements: []string{"SELECT id FROM orders WHERE lower(note) = $1"}})
	var found bool
	for _, x := range f {
		if strings.Contains(x.Problem, "calls lower() for every row") && strings.HasPrefix(x.Suggestion, "CREATE INDEX ON public.orders (org_id, note)") {
			found = true
		}
	}
	if !found {
		t.Errorf("no finding for the per-row lower() call: %v", f)
	}
}

func TestPlansReportAStatementThatDoesNotPlan(t *testing.T) {
	t.Parallel()
	d := newTenantDB(t).withOrders()
	f := d.plans(PlansOptions{Statements: []string{"SELECT nope FROM orders", "SELECT id FROM orders WHERE id = 1"}})
	if len(f) != 1 || !strings.Contains(f[0].Problem, "EXPLAIN as "+d.app+" failed") {
		t.Errorf("findings = %v, want one EXPLAIN failure", f)
	}
}

func TestJudgePlanFlagsAnIndexNotLeadingWithTheOrgButNotASmallTable(t *testing.T) {
	const plan = `[{"Plan": {"Node Type": "Index Scan", "Relation Name": "orders", "Schema": "public", "Alias": "o",
		"Index Name": "orders_customer_only", "Index Cond": "(o.customer = $1)", "Filter": "(o.org_id = $0)"}}]`
	tables := map[string]*planTable{"public.orders": {
		Table: Table{Schema: "public", Name: "orders"}, rows: 50000,
		leading: map[string]string{"orders_customer_only": "customer", "orders_pkey": "org_id"},
	}}
	f := judgePlan("q", plan, tables, "org_id")
	if len(f) != 1 || !strings.Contains(f[0].Problem, "index orders_customer_only, which does not lead with org_id") ||
		f[0].Suggestion != "CREATE INDEX ON public.orders (org_id, customer)" || f[0].Query != "q" || f[0].Plan != plan {
		t.Errorf("findings = %+v", f)
	}
	tables["public.orders"].rows = SeqScanMinRows - 1
	if f := judgePlan("q", plan, tables, "org_id"); len(f) != 0 {
		t.Errorf("findings on a table of fewer than SeqScanMinRows rows: %v", f)
	}
}

func TestPlansLookThroughThePartitionsOfAPartitionedTable(t *testing.T) {
	t.Parallel()
	d := newTenantDB(t)
	owner := d.connect(d.owner)
	d.install(owner, keyA)
	d.exec(owner, `
		CREATE TABLE events (org_id text NOT NULL, id bigint NOT NULL, kind integer NOT NULL, PRIMARY KEY (org_id, id))
			PARTITION BY HASH (org_id);
		CREATE TABLE events_0 PARTITION OF events FOR VALUES WITH (MODULUS 2, REMAINDER 0);
		CREATE TABLE events_1 PARTITION OF events FOR VALUES WITH (MODULUS 2, REMAINDER 1);
		CREATE INDEX events_kind ON events (kind);
		INSERT INTO events SELECT 'org' || (g % 200), g, g % 977 FROM generate_series(1, 20000) g;
		ALTER TABLE events ENABLE ROW LEVEL SECURITY;
		ALTER TABLE events FORCE ROW LEVEL SECURITY;
		CREATE POLICY tenant_isolation ON events USING (org_id = (SELECT tenancy.current_org()));
		ANALYZE events;
		GRANT SELECT ON events TO `+ident(d.app))
	f := d.plans(PlansOptions{})
	flagged := map[string]bool{}
	for _, x := range f {
		if strings.Contains(x.Query, "FROM public.events WHERE kind = $1") {
			flagged[x.Table] = true
		}
		if strings.Contains(x.Query, "events_") {
			t.Errorf("a partition was probed on its own: %v", x)
		}
	}
	if !flagged["public.events_0"] || !flagged["public.events_1"] {
		t.Errorf("the kind lookup is not flagged on both partitions: %v", f)
	}
}
