package main

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/pgtenant/pgtenant/policies"
)

func TestPoliciesPlansPassesThenFlagsAStatementWithTheIndexToAdd(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	c, cfg := installTenancy(ctx, t, "policies-plans-test-secret-0123456789abcdef")
	var err error
	err = c.ExecIn(ctx, "app", `
		CREATE TABLE items (org_id text NOT NULL, id bigint NOT NULL, sku text NOT NULL, v text, PRIMARY KEY (org_id, id));
		INSERT INTO items SELECT 'org' || (g % 100), g, 'sku' || g, 'v' || g FROM generate_series(1, 20000) g;
		CREATE INDEX items_sku ON items (org_id, sku);
		ALTER TABLE items ENABLE ROW LEVEL SECURITY;
		ALTER TABLE items FORCE ROW LEVEL SECURITY;
		CREATE POLICY tenant ON items USING (org_id = (SELECT tenancy.current_org()));
		GRANT SELECT ON items TO shop_app;
		ANALYZE items`)
	if err != nil {
		t.Fatal(err)
	}

	out, err := runCmd(t, "policies", "plans", "--config", cfg, "--app-role", "shop_app")
	if err != nil || !strings.Contains(out, "every plan reads tenant tables through a tenant-leading index") {
		t.Fatalf("plans with tenant-leading indexes: %v\n%s", err, out)
	}

	stmts := filepath.Join(t.TempDir(), "statements.sql")
	if err := os.WriteFile(stmts, []byte("-- the app's queries\nSELECT id FROM items WHERE sku = $1;\nSELECT id FROM items WHERE v = 'x;y';\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	out, err = runCmd(t, "policies", "plans", "--config", cfg, "--app-role", "shop_app", "--file", stmts, "--json")
	if err == nil || !strings.Contains(err.Error(), "1 finding(s) in database app") {
		t.Fatalf("plans of a query on a column without index: err = %v, want 1 finding\n%s", err, out)
	}
	var report struct {
		Findings []policies.PlanFinding `json:"findings"`
		OK       bool                   `json:"ok"`
	}
	if err := json.Unmarshal([]byte(out), &report); err != nil {
		t.Fatalf("--json output: %v\n%s", err, out)
	}
	if report.OK || len(report.Findings) != 1 {
		t.Fatalf("report = %+v", report)
	}
	f := report.Findings[0]
	if f.Table != "public.items" || f.Query != "SELECT id FROM items WHERE v = 'x;y'" || f.Suggestion != "CREATE INDEX ON public.items (org_id, v)" {
		t.Errorf("finding = %+v", f)
	}
}

func TestSplitStatementsKeepsSemicolonsInQuotesAndCommentsWithTheirStatement(t *testing.T) {
	got := splitStatements(`
-- a comment; not a statement
SELECT 'a;b', "x;y" FROM t; /* c; d */
SELECT $$e;f$$, $tag$g;h$tag$ FROM u WHERE id = $1
;;
SELECT 'it''s; fine'`)
	want := []string{
		"-- a comment; not a statement\nSELECT 'a;b', \"x;y\" FROM t",
		"/* c; d */\nSELECT $$e;f$$, $tag$g;h$tag$ FROM u WHERE id = $1",
		`SELECT 'it''s; fine'`,
	}
	if !slices.Equal(got, want) {
		t.Errorf("splitStatements:\n got %q\nwant %q", got, want)
	}
}
