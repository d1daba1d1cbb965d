package policies

import (
	"strings"
	"testing"
)

func TestTenantTablesAreDiscoveredOrDeclaredAndSayWhy(t *testing.T) {
	t.Parallel()
	d := newTenantDB(t)
	conn := d.connect(d.owner)
	d.exec(conn, `
		CREATE SCHEMA billing;
		CREATE TABLE public.items (id int, org_id text);
		CREATE TABLE public.countries (code text);
		CREATE TABLE public.audit_trail (id int, org_id text);
		CREATE TABLE billing.invoices (id int);
		CREATE TABLE public.events (org_id text, at date) PARTITION BY LIST (org_id);
		CREATE TABLE public.events_acme PARTITION OF public.events FOR VALUES IN ('acme');`)

	decisions := func(sel TableSelection) map[string]Table {
		t.Helper()
		tables, err := ListTables(ctxT(t), conn, sel)
		if err != nil {
			t.Fatal(err)
		}
		out := map[string]Table{}
		for _, tb := range tables {
			out[tb.Schema+"."+tb.Name] = tb
		}
		return out
	}

	// Discovery: tables with an org_id column; partitions follow the parent.
	got := decisions(TableSelection{})
	for name, want := range map[string]bool{
		"public.items": true, "public.countries": false, "public.audit_trail": true,
		"billing.invoices": false, "public.events": true, "public.events_acme": true,
	} {
		if got[name].Tenant != want {
			t.Errorf("discovery: %s tenant = %v (%s), want %v", name, got[name].Tenant, got[name].Reason, want)
		}
	}
	if r := got["public.events_acme"].Reason; !strings.HasPrefix(r, "partition of public.events") {
		t.Errorf("partition reason %q", r)
	}
	if got["public.items"].OrgType != "text" || got["public.events"].Kind != "partitioned" {
		t.Errorf("items org type %q, events kind %q", got["public.items"].OrgType, got["public.events"].Kind)
	}

	// Declared: include patterns decide, exclude wins.
	got = decisions(TableSelection{Include: []string{"public.*", "billing.invoices"}, Exclude: []string{"public.countries", "public.audit_*"}})
	for name, want := range map[string]bool{
		"public.items": true, "public.countries": false, "public.audit_trail": false,
		"billing.invoices": true, "public.events": true,
	} {
		if got[name].Tenant != want {
			t.Errorf("declared: %s tenant = %v (%s), want %v", name, got[name].Tenant, got[name].Reason, want)
		}
	}
	if r := got["public.countries"].Reason; r != "excluded by policies.tables.exclude public.countries" {
		t.Errorf("countries reason %q", r)
	}

	if _, err := ListTables(ctxT(t), conn, TableSelection{Include: []string{"items"}}); err == nil {
		t.Error("a pattern without a schema was accepted")
	}
}
