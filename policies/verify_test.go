package policies

import (
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"
)

// verifiedSchemaDDL is a tenant schema written by hand to the contract
// pgtenant policies apply follows: four pgtenant_* policies per table on
// the sub-select expression, org_id NOT NULL, tenant-leading keys and
// indexes, a composite foreign key, a partitioned table whose partitions
// the app role cannot reach, a security_invoker view, and the registry.
const verifiedSchemaDDL = `
CREATE TABLE IF NOT EXISTS tenancy.tables (table_name text PRIMARY KEY, policy_version int, applied_at timestamptz);
CREATE TABLE customers (
	org_id text NOT NULL, id bigint GENERATED ALWAYS AS IDENTITY, name text NOT NULL DEFAULT '',
	PRIMARY KEY (org_id, id));
CREATE TABLE orders (
	org_id text NOT NULL, id bigint GENERATED ALWAYS AS IDENTITY, customer_id bigint, note text,
	PRIMARY KEY (org_id, id),
	FOREIGN KEY (org_id, customer_id) REFERENCES customers (org_id, id));
CREATE INDEX orders_org_customer ON orders (org_id, customer_id);
CREATE TABLE notes (org_id text NOT NULL, body text NOT NULL);
CREATE INDEX notes_org ON notes (org_id);
CREATE TABLE events (org_id text NOT NULL, at timestamptz NOT NULL DEFAULT '2026-06-01', kind text) PARTITION BY RANGE (at);
CREATE TABLE events_2026 PARTITION OF events FOR VALUES FROM ('2026-01-01') TO ('2027-01-01');
CREATE TABLE events_default PARTITION OF events DEFAULT;
CREATE INDEX events_org_at ON events (org_id, at);
CREATE VIEW customer_names WITH (security_invoker = true) AS SELECT org_id, name FROM customers;
`

// tenantTableSQL makes table a tenant table as the contract says.
func tenantTableSQL(table, app string) string {
	expr := PolicyExpression("org_id", "text", false)
	return fmt.Sprintf(`
ALTER TABLE %[1]s ENABLE ROW LEVEL SECURITY;
ALTER TABLE %[1]s FORCE ROW LEVEL SECURITY;
CREATE POLICY pgtenant_select ON %[1]s FOR SELECT USING %[2]s;
CREATE POLICY pgtenant_insert ON %[1]s FOR INSERT WITH CHECK %[2]s;
CREATE POLICY pgtenant_update ON %[1]s FOR UPDATE USING %[2]s WITH CHECK %[2]s;
CREATE POLICY pgtenant_delete ON %[1]s FOR DELETE USING %[2]s;
GRANT SELECT, INSERT, UPDATE, DELETE ON %[1]s TO %[3]s;
INSERT INTO tenancy.tables VALUES ('public.%[1]s', %[4]d, now());
`, table, expr, ident(app), PolicyVersion)
}

// verifiedDB is a database with the tenancy schema installed and
// verifiedSchemaDDL in place, and a superuser connection to verify with.
func verifiedDB(t *testing.T) (*tenantDB, *pgx.Conn) {
	t.Helper()
	d := newTenantDB(t)
	owner := d.connect(d.owner)
	d.install(owner, keyA)
	ddl := verifiedSchemaDDL
	for _, table := range []string{"customers", "orders", "notes", "events"} {
		ddl += tenantTableSQL(table, d.app)
	}
	d.exec(owner, ddl+"GRANT SELECT ON customer_names TO "+ident(d.app))
	return d, d.superuser()
}

func verify(t *testing.T, d *tenantDB, conn *pgx.Conn, probe bool) *VerifyReport {
	t.Helper()
	r, err := Verify(ctxT(t), conn, VerifyOptions{AppRole: d.app, OrgType: "text", Probe: probe, Keys: []ContextKey{keyA}})
	if err != nil {
		t.Fatalf("Verify: %v", err)
	}
	return r
}

// gaps lists the results with status, as "table check" ("- check" for the
// database), sorted.
func gaps(r *VerifyReport, status string) []string {
	var out []string
	for _, res := range r.Results {
		if res.Status == status {
			table := res.Table
			if table == "" {
				table = "-"
			}
			out = append(out, table+" "+res.Check)
		}
	}
	slices.Sort(out)
	return slices.Compact(out)
}

func dump(r *VerifyReport) string {
	var b strings.Builder
	for _, res := range r.Results {
		if res.Status != StatusOK {
			fmt.Fprintf(&b, "%s %s [%s] %s\n\tfix: %s\n", res.Status, res.Table, res.Check, res.Message, res.Fix)
		}
	}
	return b.String()
}

func TestVerifyPassesOnASchemaBuiltToTheContract(t *testing.T) {
	t.Parallel()
	d, su := verifiedDB(t)
	r := verify(t, d, su, true)
	if !r.OK || len(gaps(r, StatusFail)) > 0 {
		t.Fatalf("verify failed on a correct schema:\n%s", dump(r))
	}
	// notes has a required column without a default, so the probe cannot
	// insert a row with org_id alone; that is the only warning.
	if got, want := gaps(r, StatusWarn), []string{"public.notes probe"}; !slices.Equal(got, want) {
		t.Errorf("warnings = %q, want %q:\n%s", got, want, dump(r))
	}
	for _, table := range []string{"public.customers", "public.orders", "public.events"} {
		if !slices.ContainsFunc(r.Results, func(c CheckResult) bool {
			return c.Table == table && c.Check == CheckProbe && c.Status == StatusOK
		}) {
			t.Errorf("%s: no ok probe result:\n%s", table, dump(r))
		}
	}
	for _, res := range r.Results {
		if res.Table == "public.events_2026" || res.Table == "public.events_default" {
			t.Errorf("a partition is reported as a table of its own: %+v", res)
		}
	}
	var rows int
	if err := su.QueryRow(ctxT(t), "SELECT (SELECT count(*) FROM customers) + (SELECT count(*) FROM orders) + (SELECT count(*) FROM events)").Scan(&rows); err != nil || rows != 0 {
		t.Errorf("the probe left %d rows behind (%v)", rows, err)
	}
}

func TestVerifyReportsExactlyTheGapThatWasOpened(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name  string
		owner string // run as the owner
		su    string // run as a superuser; %s is the app role
		want  []string
	}{
		{name: "FORCE disabled", owner: "ALTER TABLE orders NO FORCE ROW LEVEL SECURITY", want: []string{"public.orders rls_forced"}},
		{name: "RLS disabled", owner: "ALTER TABLE notes DISABLE ROW LEVEL SECURITY", want: []string{"public.notes rls_enabled"}},
		{name: "a policy dropped", owner: "DROP POLICY pgtenant_delete ON orders", want: []string{"public.orders policy_delete"}},
		{name: "a wrong expression", owner: "ALTER POLICY pgtenant_select ON orders USING (org_id = current_setting('app.current_org'))",
			want: []string{"public.orders policy_select"}},
		{name: "a policy for the wrong command", owner: "DROP POLICY pgtenant_update ON customers; " +
			"CREATE POLICY pgtenant_update ON customers USING ((org_id = (SELECT tenancy.current_org())))",
			want: []string{"public.customers policy_update"}},
		{name: "an extra permissive policy", owner: "CREATE POLICY everyone ON customers FOR SELECT USING (true)",
			want: []string{"public.customers other_policies"}},
		{name: "nullable org_id", owner: "ALTER TABLE notes ALTER org_id DROP NOT NULL", want: []string{"public.notes org_column"}},
		{name: "tenant-leading index dropped", owner: "DROP INDEX notes_org", want: []string{"public.notes tenant_index"}},
		{name: "a global unique key", owner: "ALTER TABLE customers ADD CONSTRAINT customers_name_key UNIQUE (name)",
			want: []string{"public.customers unique_keys"}},
		{name: "a foreign key without org_id", owner: "CREATE UNIQUE INDEX notes_body ON notes (org_id, body); " +
			"ALTER TABLE customers ADD CONSTRAINT customers_id_key UNIQUE (id); " +
			"ALTER TABLE orders ADD CONSTRAINT orders_customer_fk FOREIGN KEY (customer_id) REFERENCES customers (id)",
			want: []string{"public.customers unique_keys", "public.orders foreign_keys"}},
		{name: "a definer view", owner: "CREATE VIEW all_orders AS SELECT * FROM orders", want: []string{"public.orders views"}},
		{name: "a definer view over an invoker view", owner: "CREATE VIEW names AS SELECT name FROM customer_names",
			want: []string{"public.customers views"}},
		{name: "a readable materialized view", owner: "CREATE MATERIALIZED VIEW order_notes AS SELECT org_id, note FROM orders",
			su: "GRANT SELECT ON order_notes TO %s", want: []string{"public.orders views"}},
		{name: "a reachable partition without policies", su: "GRANT SELECT ON events_2026 TO %s", want: []string{"public.events partitions"}},
		{name: "BYPASSRLS", su: "ALTER ROLE %s BYPASSRLS", want: []string{"- bypassrls"}},
		{name: "tenancy schema out of date", owner: "UPDATE tenancy.schema_version SET version = 0", want: []string{"- tenancy_schema"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			d, su := verifiedDB(t)
			if tc.owner != "" {
				d.exec(d.connect(d.owner), tc.owner)
			}
			if tc.su != "" {
				d.exec(su, fmt.Sprintf(tc.su, ident(d.app)))
			}
			r := verify(t, d, su, false)
			if got := gaps(r, StatusFail); !slices.Equal(got, tc.want) {
				t.Errorf("failed checks = %q, want %q:\n%s", got, tc.want, dump(r))
			}
			if r.OK {
				t.Error("report OK despite a failed check")
			}
			for _, res := range r.Failed() {
				if res.Fix == "" || res.Message == "" {
					t.Errorf("%s %s: a failure without a message or fix: %+v", res.Table, res.Check, res)
				}
			}
		})
	}
}

func TestVerifyFixesCloseTheGaps(t *testing.T) {
	t.Parallel()
	d, su := verifiedDB(t)
	owner := d.connect(d.owner)
	d.exec(owner, "ALTER TABLE orders NO FORCE ROW LEVEL SECURITY; DROP POLICY pgtenant_insert ON orders; "+
		"ALTER POLICY pgtenant_select ON notes USING (true); CREATE VIEW all_orders AS SELECT * FROM orders; DROP INDEX notes_org")
	r := verify(t, d, su, false)
	if len(r.Failed()) != 5 {
		t.Fatalf("want 5 failures:\n%s", dump(r))
	}
	for _, res := range r.Failed() {
		d.exec(owner, res.Fix)
	}
	if r := verify(t, d, su, true); !r.OK {
		t.Fatalf("still failing after running the fixes:\n%s", dump(r))
	}
}

func TestVerifyProbeCatchesAPolicyThatLetsEveryoneIn(t *testing.T) {
	t.Parallel()
	d, su := verifiedDB(t)
	owner := d.connect(d.owner)
	d.exec(owner, "ALTER POLICY pgtenant_select ON orders USING (true); ALTER POLICY pgtenant_insert ON customers WITH CHECK (true)")
	r := verify(t, d, su, true)
	want := []string{"public.customers policy_insert", "public.customers probe", "public.orders policy_select", "public.orders probe"}
	if got := gaps(r, StatusFail); !slices.Equal(got, want) {
		t.Fatalf("failed checks = %q, want %q:\n%s", got, want, dump(r))
	}
	for _, res := range r.Failed() {
		switch {
		case res.Table == "public.orders" && res.Check == CheckProbe && !strings.Contains(res.Message, "can see it"),
			res.Table == "public.customers" && res.Check == CheckProbe && !strings.Contains(res.Message, "claiming tenant A's org"):
			t.Errorf("probe message does not say what leaked: %s", res.Message)
		}
	}
}

func TestVerifyProbeNeedsTheInstalledKeys(t *testing.T) {
	t.Parallel()
	d, su := verifiedDB(t)
	r, err := Verify(ctxT(t), su, VerifyOptions{AppRole: d.app, Probe: true, Keys: []ContextKey{keyB}})
	if err != nil {
		t.Fatal(err)
	}
	if !r.OK {
		t.Fatalf("failures:\n%s", dump(r))
	}
	for _, res := range r.Results {
		if res.Check == CheckProbe && res.Status == StatusOK {
			t.Errorf("%s: the probe passed with a key the database does not know", res.Table)
		}
	}
	if r, _ := Verify(ctxT(t), su, VerifyOptions{AppRole: d.app, Probe: true}); r == nil || !slices.Contains(gaps(r, StatusWarn), "- probe") {
		t.Errorf("no key: want a database-wide probe warning")
	}
}

func TestVerifyWithoutTheRegistryWarns(t *testing.T) {
	t.Parallel()
	d, su := verifiedDB(t)
	d.exec(d.connect(d.owner), "DROP TABLE tenancy.tables")
	r := verify(t, d, su, false)
	if !r.OK {
		t.Fatalf("a missing registry failed verify:\n%s", dump(r))
	}
	want := []string{"public.customers registry", "public.events registry", "public.notes registry", "public.orders registry"}
	if got := gaps(r, StatusWarn); !slices.Equal(got, want) {
		t.Errorf("warnings = %q, want %q", got, want)
	}
}

func TestVerifyChecksTheConfiguredOrgType(t *testing.T) {
	t.Parallel()
	d, su := verifiedDB(t)
	r, err := Verify(ctxT(t), su, VerifyOptions{AppRole: d.app, OrgType: "uuid"})
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"public.customers org_column", "public.events org_column", "public.notes org_column", "public.orders org_column"}
	if got := gaps(r, StatusFail); !slices.Equal(got, want) {
		t.Errorf("failed checks = %q, want %q:\n%s", got, want, dump(r))
	}
}

func TestNormalizedExprIgnoresSpellingPostgreSQLAdds(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct{ printed, written string }{
		{"(org_id = ( SELECT tenancy.current_org() AS current_org))", PolicyExpression("org_id", "text", false)},
		{"(org_id = ( SELECT (tenancy.current_org())::uuid AS current_org))", PolicyExpression("org_id", "uuid", false)},
		{"(org_id = tenancy.current_org())", PolicyExpression("org_id", "text", true)},
	} {
		if normalizedExpr(tc.printed) != normalizedExpr(tc.written) {
			t.Errorf("%q and %q normalize differently: %q, %q", tc.printed, tc.written, normalizedExpr(tc.printed), normalizedExpr(tc.written))
		}
	}
	if normalizedExpr("(org_id = current_setting('app.current_org'::text))") == normalizedExpr(PolicyExpression("org_id", "text", false)) {
		t.Error("a different expression normalizes to the expected one")
	}
}

func TestVerifyPassesOnAUUIDOrgColumnAndProbesIt(t *testing.T) {
	t.Parallel()
	d := newTenantDB(t)
	owner := d.connect(d.owner)
	d.install(owner, keyA)
	expr := PolicyExpression("org_id", OrgTypeUUID, false)
	d.exec(owner, fmt.Sprintf(`
CREATE TABLE devices (org_id uuid NOT NULL, id bigint GENERATED ALWAYS AS IDENTITY, PRIMARY KEY (org_id, id));
ALTER TABLE devices ENABLE ROW LEVEL SECURITY;
ALTER TABLE devices FORCE ROW LEVEL SECURITY;
CREATE POLICY pgtenant_select ON devices FOR SELECT USING %[1]s;
CREATE POLICY pgtenant_insert ON devices FOR INSERT WITH CHECK %[1]s;
CREATE POLICY pgtenant_update ON devices FOR UPDATE USING %[1]s WITH CHECK %[1]s;
CREATE POLICY pgtenant_delete ON devices FOR DELETE USING %[1]s;
GRANT SELECT, INSERT, UPDATE, DELETE ON devices TO %[2]s;
INSERT INTO tenancy.tables VALUES ('public.devices', %[3]d, now());`, expr, ident(d.app), PolicyVersion))
	r, err := Verify(ctxT(t), d.superuser(), VerifyOptions{AppRole: d.app, OrgType: OrgTypeUUID, Probe: true, Keys: []ContextKey{keyA}})
	if err != nil {
		t.Fatal(err)
	}
	if !r.OK || len(gaps(r, StatusWarn)) > 0 {
		t.Fatalf("a correct uuid table:\n%s", dump(r))
	}
	if !slices.ContainsFunc(r.Results, func(c CheckResult) bool { return c.Check == CheckProbe && c.Status == StatusOK }) {
		t.Errorf("no ok probe result:\n%s", dump(r))
	}
}

func TestVerifyComparesExpressionsAsTextWithoutTEMP(t *testing.T) {
	t.Parallel()
	d, su := verifiedDB(t)
	d.exec(su, "REVOKE TEMPORARY ON DATABASE "+ident(d.name)+" FROM "+ident(d.owner))
	owner := d.connect(d.owner)
	var temp bool
	if err := owner.QueryRow(ctxT(t), "SELECT has_database_privilege(current_database(), 'TEMP')").Scan(&temp); err != nil || temp {
		t.Fatalf("the owner still has TEMP (%v)", err)
	}
	r := verify(t, d, owner, false)
	if !r.OK {
		t.Fatalf("verify without TEMP failed on a correct schema:\n%s", dump(r))
	}
	d.exec(owner, "ALTER POLICY pgtenant_update ON notes USING (org_id = current_setting('app.current_org'))")
	r = verify(t, d, owner, false)
	if got, want := gaps(r, StatusFail), []string{"public.notes policy_update"}; !slices.Equal(got, want) {
		t.Errorf("failed checks = %q, want %q:\n%s", got, want, dump(r))
	}
}

func TestVerifyPassesAfterApply(t *testing.T) {
	t.Parallel()
	d := newTenantDB(t)
	owner := d.connect(d.owner)
	d.install(owner, keyA)
	d.exec(owner, `
CREATE TABLE customers (org_id text NOT NULL, id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, email text UNIQUE);
CREATE TABLE orders (org_id text NOT NULL, id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
	customer_id bigint REFERENCES customers (id), total numeric NOT NULL DEFAULT 0);
CREATE TABLE events (org_id text NOT NULL, at timestamptz NOT NULL DEFAULT '2026-06-01', kind text) PARTITION BY RANGE (at);
CREATE TABLE events_2026 PARTITION OF events FOR VALUES FROM ('2026-01-01') TO ('2027-01-01');
-- events has no index at all: apply gives it one on org_id.
CREATE VIEW big_orders AS SELECT * FROM orders WHERE total > 100;
INSERT INTO customers (org_id, email) VALUES ('acme', 'a@example.com');
GRANT SELECT, INSERT, UPDATE, DELETE ON customers, orders, events TO `+ident(d.app))
	if _, err := Apply(ctxT(t), owner, ApplyOptions{AppRoles: []string{d.app}, RewriteKeys: true}); err != nil {
		t.Fatalf("Apply: %v", err)
	}
	r := verify(t, d, d.superuser(), true)
	if !r.OK || len(gaps(r, StatusWarn)) > 0 {
		t.Fatalf("verify after apply:\n%s", dump(r))
	}
}
