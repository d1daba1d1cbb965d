package policies

import (
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// shopDDL is an existing schema with data, before pgtenant: customers with a
// global unique email, orders referencing them, a partitioned events table,
// a view, a sequence, notes (empty, no org_id, included by pattern), legacy
// (rows, no org_id: needs a backfill) and countries (shared, excluded).
const shopDDL = `
CREATE TABLE customers (
	org_id text NOT NULL,
	id     bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
	email  text NOT NULL UNIQUE,
	name   text NOT NULL
);
CREATE SEQUENCE invoice_no;
CREATE TABLE orders (
	org_id      text   NOT NULL,
	id          bigint PRIMARY KEY DEFAULT nextval('invoice_no'),
	customer_id bigint NOT NULL REFERENCES customers (id) ON DELETE CASCADE,
	total       numeric NOT NULL
);
CREATE TABLE events (org_id text NOT NULL, at timestamptz NOT NULL, kind text NOT NULL) PARTITION BY RANGE (at);
CREATE TABLE events_2025 PARTITION OF events FOR VALUES FROM ('2025-01-01') TO ('2026-01-01');
CREATE TABLE events_2026 PARTITION OF events FOR VALUES FROM ('2026-01-01') TO ('2027-01-01');
CREATE INDEX events_at ON events (at);
CREATE TABLE notes (id int GENERATED ALWAYS AS IDENTITY PRIMARY KEY, body text NOT NULL);
CREATE TABLE legacy (id int PRIMARY KEY, body text NOT NULL);
CREATE TABLE countries (code text PRIMARY KEY);
CREATE VIEW order_totals AS
	SELECT c.name, sum(o.total) AS total FROM orders o JOIN customers c ON c.id = o.customer_id GROUP BY c.name;
CREATE VIEW big_spenders AS SELECT name FROM order_totals WHERE total > 0;
CREATE VIEW country_codes AS SELECT code FROM countries;

INSERT INTO customers (org_id, email, name) VALUES
	('acme', 'wile@example.com', 'Wile'), ('globex', 'hank@example.com', 'Hank');
INSERT INTO orders (org_id, customer_id, total) VALUES ('acme', 1, 10), ('acme', 1, 5), ('globex', 2, 99);
INSERT INTO events VALUES ('acme', '2025-06-01', 'signup'), ('globex', '2026-02-01', 'signup');
INSERT INTO legacy VALUES (1, 'old'), (2, 'older');
INSERT INTO countries VALUES ('fr'), ('jp');
`

// shopSelection makes every public table but countries a tenant table.
var shopSelection = TableSelection{Include: []string{"public.*"}, Exclude: []string{"public.countries"}}

// shop installs the tenancy schema, creates shopDDL and grants the app role
// DML (and, as careless schemas do, TRUNCATE on orders).
func (d *tenantDB) shop() (owner *pgx.Conn) {
	d.t.Helper()
	owner = d.connect(d.owner)
	d.install(owner, keyA)
	app := ident(d.app)
	d.exec(owner, shopDDL+
		"GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO "+app+";"+
		"GRANT TRUNCATE ON orders TO "+app+"; GRANT USAGE ON SEQUENCE invoice_no TO "+app)
	return owner
}

// appliedShop is shop without legacy (which needs a backfill), applied.
func (d *tenantDB) appliedShop() (owner *pgx.Conn) {
	d.t.Helper()
	owner = d.shop()
	d.exec(owner, "DROP TABLE legacy")
	if _, err := Apply(ctxT(d.t), owner, d.shopOptions()); err != nil {
		d.t.Fatalf("Apply: %v", err)
	}
	return owner
}

func (d *tenantDB) shopOptions() ApplyOptions {
	return ApplyOptions{Selection: shopSelection, AppRoles: []string{d.app}}
}

// asTenant runs fn in a transaction of conn with org's signed context.
func asTenant(t *testing.T, conn *pgx.Conn, org string, fn func(pgx.Tx) error) error {
	t.Helper()
	tok, _ := mustSigner(t, 0, keyA).Sign(org, identity(t, conn), time.Now())
	return pgx.BeginFunc(ctxT(t), conn, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctxT(t), "SET LOCAL "+TokenSetting+" TO '"+tok+"'"); err != nil {
			return err
		}
		return fn(tx)
	})
}

// strings1 returns the first column of query's rows.
func strings1(t *testing.T, tx pgx.Tx, query string) []string {
	t.Helper()
	rows, err := tx.Query(ctxT(t), query)
	if err != nil {
		t.Fatalf("%s: %v", query, err)
	}
	got, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		t.Fatalf("%s: %v", query, err)
	}
	return got
}

func planSQL(p *ApplyPlan) string { return p.SQL() + offeredSQL(p) }

func offeredSQL(p *ApplyPlan) string {
	var b strings.Builder
	for _, s := range p.Offered {
		b.WriteString(s.SQL + ";\n")
	}
	return b.String()
}

func TestApplyMakesAnExistingSchemaTenantSafeAndIsIdempotent(t *testing.T) {
	t.Parallel()
	d := newTenantDB(t)
	owner := d.shop()
	ctx := ctxT(t)
	opts := d.shopOptions()
	opts.Concurrently = true

	p, err := Apply(ctx, owner, opts)
	var bf *BackfillError
	if !errors.As(err, &bf) || len(bf.Backfill) != 1 || bf.Backfill[0].Table != "public.legacy" {
		t.Fatalf("first apply: err = %v, want a backfill error for public.legacy alone", err)
	}
	for _, want := range []string{"UPDATE public.legacy SET org_id = ", "pgtenant policies apply again"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("backfill error lacks %q: %v", want, err)
		}
	}
	sql := planSQL(p)
	for _, want := range []string{
		"ALTER TABLE public.notes ADD COLUMN org_id text NOT NULL DEFAULT tenancy.current_org()",
		"ALTER TABLE public.legacy ADD COLUMN org_id text DEFAULT tenancy.current_org()",
		"ALTER TABLE public.customers ALTER COLUMN org_id SET DEFAULT tenancy.current_org()",
		"CREATE POLICY pgtenant_select ON public.orders AS PERMISSIVE FOR SELECT TO PUBLIC USING (org_id = (SELECT tenancy.current_org()))",
		"CREATE POLICY pgtenant_update ON public.orders AS PERMISSIVE FOR UPDATE TO PUBLIC USING (org_id = (SELECT tenancy.current_org())) WITH CHECK (org_id = (SELECT tenancy.current_org()))",
		"CREATE POLICY pgtenant_insert ON public.events_2026 AS PERMISSIVE FOR INSERT TO PUBLIC WITH CHECK",
		"ALTER TABLE public.events_2025 FORCE ROW LEVEL SECURITY",
		"CREATE INDEX IF NOT EXISTS events_at_org_idx ON public.events (org_id, at)", // partitioned: in the transaction
		"CREATE INDEX CONCURRENTLY IF NOT EXISTS orders_customer_id_org_idx ON public.orders (org_id, customer_id)",
		"CREATE INDEX CONCURRENTLY IF NOT EXISTS customers_email_org_idx ON public.customers (org_id, email)",
		"ALTER VIEW public.order_totals SET (security_invoker = true)",
		"ALTER VIEW public.big_spenders SET (security_invoker = true)", // over a view over tenant tables
		"REVOKE TRUNCATE, REFERENCES, TRIGGER ON public.orders FROM PUBLIC, " + d.app,
		"INSERT INTO tenancy.tables (table_name, policy_version) VALUES ('public.events_2025', 1)",
		// Offered, not applied:
		"ALTER TABLE public.customers DROP CONSTRAINT customers_email_key, ADD CONSTRAINT customers_email_key UNIQUE (org_id, email)",
		"ALTER TABLE public.orders ADD CONSTRAINT orders_customer_id_fkey FOREIGN KEY (org_id, customer_id) REFERENCES public.customers (org_id, id) ON DELETE CASCADE",
	} {
		if !strings.Contains(sql, want) {
			t.Errorf("plan lacks %s\n%s", want, sql)
		}
	}
	for _, unwanted := range []string{"public.countries", "country_codes", "policy ON public.legacy", "ROW LEVEL SECURITY ON public.legacy"} {
		if strings.Contains(p.SQL(), unwanted) {
			t.Errorf("plan has %s\n%s", unwanted, p.SQL())
		}
	}
	if strings.Contains(p.SQL(), "REVOKE TEMPORARY") {
		t.Errorf("TEMP was already revoked from PUBLIC, but the plan revokes it:\n%s", p.SQL())
	}

	// The documented backfill, as the owner, then apply again.
	d.exec(owner, "UPDATE legacy SET org_id = CASE WHEN id = 1 THEN 'acme' ELSE 'globex' END WHERE org_id IS NULL")
	p, err = Apply(ctx, owner, opts)
	if err != nil {
		t.Fatalf("apply after the backfill: %v", err)
	}
	for _, want := range []string{"ALTER TABLE public.legacy ALTER COLUMN org_id SET NOT NULL", "CREATE POLICY pgtenant_delete ON public.legacy"} {
		if !strings.Contains(p.SQL(), want) {
			t.Errorf("second plan lacks %s\n%s", want, p.SQL())
		}
	}
	if strings.Contains(p.SQL(), "public.orders") {
		t.Errorf("second plan redoes orders:\n%s", p.SQL())
	}

	// A third run has nothing to do, but still offers the key rewrites.
	p, err = Plan(ctx, owner, opts)
	if err != nil {
		t.Fatal(err)
	}
	if !p.Empty() || len(p.Offered) == 0 {
		t.Fatalf("plan after apply: empty %v, offered %d:\n%s", p.Empty(), len(p.Offered), planSQL(p))
	}
	var valid int
	if err := owner.QueryRow(ctx, `SELECT count(*) FROM pg_index WHERE indisvalid AND indexrelid IN (
		'orders_customer_id_org_idx'::regclass, 'customers_email_org_idx'::regclass, 'events_at_org_idx'::regclass)`).Scan(&valid); err != nil || valid != 3 {
		t.Errorf("valid tenant-leading indexes = %d (%v), want 3", valid, err)
	}
	var registered int
	if err := owner.QueryRow(ctx, "SELECT count(*) FROM tenancy.tables WHERE policy_version = $1", PolicyVersion).Scan(&registered); err != nil || registered != 7 {
		t.Errorf("tenancy.tables rows = %d (%v), want 7", registered, err)
	}

	// As the application role, each tenant sees and writes only its rows.
	app := d.connect(d.app)
	for org, want := range map[string]string{
		"acme":   "Wile|10,5|2025|2025|old|acme's note|Wile|Wile",
		"globex": "Hank|99|2026||older|globex's note|Hank|Hank",
	} {
		err := asTenant(t, app, org, func(tx pgx.Tx) error {
			// The default fills org_id from the context.
			if _, err := tx.Exec(ctx, "INSERT INTO notes (body) VALUES ($1)", org+"'s note"); err != nil {
				return err
			}
			var got []string
			for _, q := range []string{
				"SELECT name FROM customers",
				"SELECT total::int::text FROM orders ORDER BY id",
				"SELECT extract(year FROM at)::text FROM events",
				"SELECT extract(year FROM at)::text FROM events_2025", // a partition, directly
				"SELECT body FROM legacy",
				"SELECT body FROM notes",
				"SELECT name FROM order_totals", // the view, security_invoker
				"SELECT name FROM big_spenders", // a view over it
			} {
				got = append(got, strings.Join(strings1(t, tx, q), ","))
			}
			if g := strings.Join(got, "|"); g != want {
				t.Errorf("%s sees %s, want %s", org, g, want)
			}
			return nil
		})
		if err != nil {
			t.Fatalf("as %s: %v", org, err)
		}
	}
	err = asTenant(t, app, "globex", func(tx pgx.Tx) error {
		_, err := tx.Exec(ctx, "INSERT INTO orders (org_id, customer_id, total) VALUES ('acme', 1, 1)")
		return err
	})
	if sqlState(err) != "42501" {
		t.Errorf("globex writing an acme order: err = %v, want 42501", err)
	}
	err = asTenant(t, app, "globex", func(tx pgx.Tx) error {
		_, err := tx.Exec(ctx, "TRUNCATE orders")
		return err
	})
	if sqlState(err) != "42501" {
		t.Errorf("TRUNCATE as the app role: err = %v, want 42501", err)
	}
}

func TestApplyDryRunPlanChangesNothing(t *testing.T) {
	t.Parallel()
	d := newTenantDB(t)
	owner := d.shop()
	ctx := ctxT(t)
	before := state(t, owner) + catalogState(t, owner)
	p, err := Plan(ctx, owner, d.shopOptions())
	if err != nil {
		t.Fatal(err)
	}
	if p.Empty() || !strings.Contains(p.SQL(), "CREATE POLICY") {
		t.Fatalf("plan:\n%s", p.SQL())
	}
	if after := state(t, owner) + catalogState(t, owner); after != before {
		t.Errorf("Plan changed the database:\nbefore %s\nafter %s", before, after)
	}
}

// catalogState is the public schema's policies, RLS flags, columns and
// indexes.
func catalogState(t *testing.T, conn *pgx.Conn) string {
	t.Helper()
	var s string
	err := conn.QueryRow(ctxT(t), `
		SELECT string_agg(x, E'\n' ORDER BY x) FROM (
			SELECT polname || ' ' || polrelid::regclass FROM pg_policy
			UNION ALL SELECT relname || ' ' || relrowsecurity || relforcerowsecurity || ' ' || coalesce(reloptions::text, '')
				FROM pg_class WHERE relnamespace = 'public'::regnamespace
			UNION ALL SELECT attrelid::regclass || '.' || attname || ' ' || attnotnull FROM pg_attribute
				WHERE attrelid IN (SELECT oid FROM pg_class WHERE relnamespace = 'public'::regnamespace) AND attnum > 0
		) s(x)`).Scan(&s)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestApplyRewriteKeysMakesUniqueKeysPerTenant(t *testing.T) {
	t.Parallel()
	d := newTenantDB(t)
	owner := d.appliedShop()
	ctx := ctxT(t)
	opts := d.shopOptions()
	app := d.connect(d.app)
	takeEmail := func(tx pgx.Tx) error {
		_, err := tx.Exec(ctx, "INSERT INTO customers (email, name) VALUES ('wile@example.com', 'Impostor')")
		return err
	}
	if err := asTenant(t, app, "globex", takeEmail); sqlState(err) != "23505" {
		t.Fatalf("before the rewrite, another tenant's email: err = %v, want the 23505 oracle", err)
	}

	opts.RewriteKeys = true
	p, err := Apply(ctx, owner, opts)
	if err != nil {
		t.Fatalf("apply --rewrite-keys: %v", err)
	}
	sql := p.SQL()
	drop := strings.Index(sql, "DROP CONSTRAINT orders_customer_id_fkey")
	pkey := strings.Index(sql, "ADD CONSTRAINT customers_pkey PRIMARY KEY (org_id, id)")
	add := strings.Index(sql, "ADD CONSTRAINT orders_customer_id_fkey FOREIGN KEY (org_id, customer_id) REFERENCES public.customers (org_id, id) ON DELETE CASCADE")
	if drop < 0 || pkey < drop || add < pkey {
		t.Errorf("rewrite out of order (drop FK %d, primary key %d, add FK %d):\n%s", drop, pkey, add, sql)
	}
	if err := asTenant(t, app, "globex", takeEmail); err != nil {
		t.Errorf("after the rewrite, globex cannot use an email acme has: %v", err)
	}
	if err := asTenant(t, app, "acme", takeEmail); sqlState(err) != "23505" {
		t.Errorf("after the rewrite, a duplicate within acme: err = %v, want 23505", err)
	}
	p, err = Plan(ctx, owner, opts)
	if err != nil || !p.Empty() || len(p.Offered) > 0 {
		t.Fatalf("plan after the rewrite: %v\n%s", err, planSQL(p))
	}
}

// A key that a table outside the tenant tables references cannot be
// dropped: apply says so and rewrites the other keys.
func TestApplyRewriteKeysLeavesKeysReferencedFromSharedTables(t *testing.T) {
	t.Parallel()
	d := newTenantDB(t)
	owner := d.appliedShop()
	d.exec(owner, "ALTER TABLE countries ADD COLUMN best_customer bigint REFERENCES customers (id)")
	opts := d.shopOptions()
	opts.RewriteKeys = true
	p, err := Apply(ctxT(t), owner, opts)
	if err != nil {
		t.Fatalf("apply --rewrite-keys: %v", err)
	}
	var blocked []string
	for _, s := range p.Blocked {
		blocked = append(blocked, s.SQL)
		if strings.Contains(s.SQL, "customers_pkey") && !strings.Contains(s.Comment, "countries_best_customer_fkey of countries") {
			t.Errorf("the blocked key does not name what blocks it: %s", s.Comment)
		}
	}
	if len(blocked) != 2 || !strings.Contains(blocked[0], "DROP CONSTRAINT customers_pkey") || !strings.Contains(blocked[1], "DROP CONSTRAINT orders_customer_id_fkey") {
		t.Errorf("blocked: %q", blocked)
	}
	sql := p.SQL()
	if !strings.Contains(sql, "ADD CONSTRAINT customers_email_key UNIQUE (org_id, email)") || !strings.Contains(sql, "ADD CONSTRAINT orders_pkey PRIMARY KEY (org_id, id)") ||
		strings.Contains(sql, "customers_pkey") || strings.Contains(sql, "orders_customer_id_fkey") {
		t.Errorf("rewrites:\n%s", sql)
	}
}

func TestRemoveUndoesOneTable(t *testing.T) {
	t.Parallel()
	d := newTenantDB(t)
	owner := d.appliedShop()
	ctx := ctxT(t)
	if err := Remove(ctx, owner, "notes"); err != nil {
		t.Fatal(err)
	}
	var policies int
	var rls, force, registered bool
	err := owner.QueryRow(ctx, `
		SELECT (SELECT count(*) FROM pg_policy WHERE polrelid = 'notes'::regclass), relrowsecurity, relforcerowsecurity,
			EXISTS (SELECT 1 FROM tenancy.tables WHERE table_name = 'public.notes')
		FROM pg_class WHERE oid = 'notes'::regclass`).Scan(&policies, &rls, &force, &registered)
	if err != nil || policies != 0 || rls || force || registered {
		t.Fatalf("after remove: %d policies, rls %v, force %v, registered %v (%v)", policies, rls, force, registered, err)
	}
	p, err := Plan(ctx, owner, d.shopOptions())
	if err != nil {
		t.Fatal(err)
	}
	var tables []string
	for _, s := range p.Statements {
		if !slices.Contains(tables, s.Table) {
			tables = append(tables, s.Table)
		}
	}
	if !slices.Equal(tables, []string{"public.notes"}) {
		t.Errorf("after removing notes, the plan changes %v, want only public.notes:\n%s", tables, p.SQL())
	}
	if err := Remove(ctx, owner, "no_such_table"); err == nil || !strings.Contains(err.Error(), "no table no_such_table") {
		t.Errorf("remove of a missing table: %v", err)
	}
}

func TestPolicyExpressionForms(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		col, typ string
		citus    bool
		want     string
	}{
		{"org_id", "text", false, "(org_id = (SELECT tenancy.current_org()))"},
		{"org_id", "uuid", false, "(org_id = (SELECT tenancy.current_org()::uuid))"},
		{"org_id", "text", true, "(org_id = tenancy.current_org())"},
		{"tenant", "uuid", true, "(tenant = tenancy.current_org()::uuid)"},
		{"Org", "text", false, `("Org" = (SELECT tenancy.current_org()))`},
		{"user", "text", false, `("user" = (SELECT tenancy.current_org()))`},
	} {
		if got := PolicyExpression(tc.col, tc.typ, tc.citus); got != tc.want {
			t.Errorf("PolicyExpression(%q, %q, %v) = %s, want %s", tc.col, tc.typ, tc.citus, got, tc.want)
		}
	}
	long := indexName(strings.Repeat("t", 40), []string{strings.Repeat("c", 40)})
	if len(long) > 63 || !strings.HasSuffix(long, "_org_idx") {
		t.Errorf("indexName = %s (%d bytes)", long, len(long))
	}
}

func TestApplyReplacesAPolicyThatDiffersAndChecksTheOrgType(t *testing.T) {
	t.Parallel()
	d := newTenantDB(t)
	owner := d.appliedShop()
	ctx := ctxT(t)
	opts := d.shopOptions()
	d.exec(owner, "DROP POLICY pgtenant_select ON orders; CREATE POLICY pgtenant_select ON orders USING (true)")
	p, err := Plan(ctx, owner, opts)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{
		"DROP POLICY pgtenant_select ON public.orders",
		"CREATE POLICY pgtenant_select ON public.orders AS PERMISSIVE FOR SELECT TO PUBLIC USING (org_id = (SELECT tenancy.current_org()))",
	}
	var got []string
	for _, s := range p.Statements {
		got = append(got, s.SQL)
	}
	if !slices.Equal(got, want) {
		t.Errorf("plan for a tampered policy:\n%s", p.SQL())
	}

	// On Citus every policy is rewritten with the bare call, once.
	opts.Citus = true
	if p, err = Apply(ctx, owner, opts); err != nil || !strings.Contains(p.SQL(), "USING (org_id = tenancy.current_org())") {
		t.Fatalf("apply with Citus: %v\n%v", err, p)
	}
	if p, err = Plan(ctx, owner, opts); err != nil || !p.Empty() {
		t.Fatalf("plan after apply with Citus: %v\n%s", err, p.SQL())
	}

	opts.OrgType = OrgTypeUUID
	if _, err := Plan(ctx, owner, opts); err == nil || !strings.Contains(err.Error(), "is text, but policies.org_type is uuid") {
		t.Errorf("uuid policies on text columns: err = %v", err)
	}
}

func TestApplyWithUUIDOrgs(t *testing.T) {
	t.Parallel()
	d := newTenantDB(t)
	owner := d.connect(d.owner)
	d.install(owner, keyA)
	const a, b = "6f1c1d3e-0000-4000-8000-00000000000a", "6f1c1d3e-0000-4000-8000-00000000000b"
	d.exec(owner, `
		CREATE TABLE things (org_id uuid NOT NULL, v text NOT NULL);
		INSERT INTO things VALUES ('`+a+`', 'a1'), ('`+b+`', 'b1');
		CREATE TABLE labels (v text NOT NULL);
		GRANT SELECT, INSERT ON things, labels TO `+ident(d.app))
	opts := ApplyOptions{Selection: TableSelection{Include: []string{"public.*"}}, OrgType: OrgTypeUUID, AppRoles: []string{d.app}}
	p, err := Apply(ctxT(t), owner, opts)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(p.SQL(), "ALTER TABLE public.labels ADD COLUMN org_id uuid NOT NULL DEFAULT tenancy.current_org()::uuid") {
		t.Errorf("plan:\n%s", p.SQL())
	}
	app := d.connect(d.app)
	err = asTenant(t, app, b, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctxT(t), "INSERT INTO labels (v) VALUES ('b-label')"); err != nil {
			return err
		}
		got := strings.Join(strings1(t, tx, "SELECT v FROM things UNION ALL SELECT v || ' ' || org_id FROM labels"), ",")
		if got != "b1,b-label "+b {
			t.Errorf("tenant %s sees %s", b, got)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if p, err := Plan(ctxT(t), owner, opts); err != nil || !p.Empty() {
		t.Fatalf("second plan: %v\n%s", err, p.SQL())
	}
}
