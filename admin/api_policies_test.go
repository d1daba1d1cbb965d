package admin

import (
	"context"
	"encoding/json"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/pgtenant/pgtenant/policies"
	"github.com/pgtenant/pgtenant/test/testpg"
)

// The policy viewer's data: a table made tenant-safe passes, one whose RLS
// is not forced is flagged with the fix, and every check is explained.
func TestThePolicyViewerFlagsABrokenTableWithTheFix(t *testing.T) {
	f := newFixture(t)
	ctx := testpg.Context(t)
	conn, err := pgx.Connect(ctx, f.dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())
	expr := policies.PolicyExpression("org_id", "text", false)
	_, err = conn.Exec(ctx, `
		CREATE TABLE good (id bigint PRIMARY KEY, org_id text NOT NULL DEFAULT tenancy.current_org());
		CREATE TABLE broken (id bigint PRIMARY KEY, org_id text NOT NULL DEFAULT tenancy.current_org());
		ALTER TABLE good ENABLE ROW LEVEL SECURITY; ALTER TABLE good FORCE ROW LEVEL SECURITY;
		ALTER TABLE broken ENABLE ROW LEVEL SECURITY;
		CREATE POLICY p ON good USING `+expr+` WITH CHECK `+expr)
	if err != nil {
		t.Fatal(err)
	}
	r := f.do("GET", APIPrefix+"/policies", platformToken(t), nil)
	if r.status != 200 {
		t.Fatalf("GET /policies: %d %s", r.status, r.body)
	}
	var view policyView
	if err := json.Unmarshal(r.body, &view); err != nil {
		t.Fatal(err)
	}
	if view.OK || len(view.Databases) != 1 || view.Databases[0] != view.Database {
		t.Fatalf("view: ok %v, database %s of %v", view.OK, view.Database, view.Databases)
	}
	tables := map[string]policyTable{}
	for _, tb := range view.Tables {
		tables[tb.Table] = tb
	}
	broken, good := tables["public.broken"], tables["public.good"]
	if broken.OK || broken.RLSForced || !good.RLSForced || len(good.Policies) != 1 || len(good.TenantIndexes) != 0 {
		t.Fatalf("tables: broken %+v, good %+v", broken, good)
	}
	var forced *policies.CheckResult
	for i, c := range broken.Checks {
		if c.Check == policies.CheckRLSForced {
			forced = &broken.Checks[i]
		}
		if view.Explanations[c.Check] == "" {
			t.Errorf("check %s is not explained", c.Check)
		}
	}
	if forced == nil || forced.Status != policies.StatusFail || !strings.Contains(forced.Fix, "FORCE ROW LEVEL SECURITY") {
		t.Fatalf("the unforced table's check: %+v", forced)
	}
	if r := f.do("GET", APIPrefix+"/policies?database=postgres", platformToken(t), nil); r.status != 400 {
		t.Fatalf("a database pgtenant does not serve: %d %s", r.status, r.body)
	}
}
