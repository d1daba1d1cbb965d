package main

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/pgtenant/pgtenant/policies"
)

func TestPoliciesVerifyPassesThenFailsWithTheFix(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	c, cfg := installTenancy(ctx, t, "policies-verify-test-secret-0123456789abcdef")
	var err error
	expr := policies.PolicyExpression("org_id", "text", false)
	err = c.ExecIn(ctx, "app", fmt.Sprintf(`
		REVOKE TEMPORARY ON DATABASE app FROM PUBLIC;
		CREATE TABLE items (org_id text NOT NULL, id bigint GENERATED ALWAYS AS IDENTITY, v text, PRIMARY KEY (org_id, id));
		ALTER TABLE items ENABLE ROW LEVEL SECURITY;
		ALTER TABLE items FORCE ROW LEVEL SECURITY;
		CREATE POLICY pgtenant_select ON items FOR SELECT USING %[1]s;
		CREATE POLICY pgtenant_insert ON items FOR INSERT WITH CHECK %[1]s;
		CREATE POLICY pgtenant_update ON items FOR UPDATE USING %[1]s WITH CHECK %[1]s;
		CREATE POLICY pgtenant_delete ON items FOR DELETE USING %[1]s;
		GRANT SELECT, INSERT, UPDATE, DELETE ON items TO shop_app;
		INSERT INTO tenancy.tables (table_name, policy_version) VALUES ('public.items', %[2]d)`, expr, policies.PolicyVersion))
	if err != nil {
		t.Fatal(err)
	}

	out, err := runCmd(t, "policies", "verify", "--config", cfg, "--app-role", "shop_app")
	if err != nil {
		t.Fatalf("verify of a correct table: %v\n%s", err, out)
	}
	for _, want := range []string{"database app, application role shop_app\n  ok    superuser", "table public.items\n", "  ok    probe\n", "\n0 failed, 0 warning(s), "} {
		if !strings.Contains(out, want) {
			t.Errorf("verify output lacks %q:\n%s", want, out)
		}
	}

	if err := c.ExecIn(ctx, "app", "ALTER TABLE items NO FORCE ROW LEVEL SECURITY"); err != nil {
		t.Fatal(err)
	}
	out, err = runCmd(t, "policies", "verify", "--config", cfg, "--app-role", "shop_app", "--no-probe")
	if err == nil || !strings.Contains(err.Error(), "1 check(s) failed in database app") {
		t.Fatalf("verify of a table without FORCE: err = %v, want 1 failure\n%s", err, out)
	}
	for _, want := range []string{"  fail  rls_forced: ", "        fix: ALTER TABLE \"public\".\"items\" FORCE ROW LEVEL SECURITY;"} {
		if !strings.Contains(out, want) {
			t.Errorf("verify output lacks %q:\n%s", want, out)
		}
	}
	if strings.Contains(out, "probe") {
		t.Errorf("--no-probe still probed:\n%s", out)
	}

	out, err = runCmd(t, "policies", "verify", "--config", cfg, "--app-role", "shop_app", "--json")
	if err == nil {
		t.Fatalf("verify --json of a table without FORCE succeeded:\n%s", out)
	}
	var report policies.VerifyReport
	if err := json.Unmarshal([]byte(out), &report); err != nil {
		t.Fatalf("--json output is not a report: %v\n%s", err, out)
	}
	failed := report.Failed()
	if report.OK || len(failed) != 1 || failed[0].Table != "public.items" || failed[0].Check != policies.CheckRLSForced || failed[0].Fix == "" {
		t.Errorf("--json report: ok=%v failed=%+v", report.OK, failed)
	}

	if _, err := runCmd(t, "policies", "verify", "--app-role", "a", "--app-role", "b"); err == nil || !strings.Contains(err.Error(), "one --app-role at a time") {
		t.Errorf("two app roles: err = %v", err)
	}
}
