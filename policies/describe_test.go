package policies

import (
	"slices"
	"strings"
	"testing"

	"github.com/pgtenant/pgtenant/test/testpg"
)

func TestDescribeShowsPoliciesAndTenantIndexesAndEveryCheckIsExplained(t *testing.T) {
	d, conn := verifiedDB(t)
	d.exec(d.connect(d.owner), "ALTER TABLE notes NO FORCE ROW LEVEL SECURITY; CREATE INDEX orders_org ON orders (org_id, id)")
	infos, err := Describe(testpg.Context(t), conn, TableSelection{})
	if err != nil {
		t.Fatal(err)
	}
	byName := map[string]TableInfo{}
	for _, i := range infos {
		byName[i.Table] = i
	}
	orders, notes := byName["public.orders"], byName["public.notes"]
	if !orders.RLSEnabled || !orders.RLSForced || notes.RLSForced || !notes.RLSEnabled {
		t.Fatalf("RLS flags: orders %+v, notes %+v", orders, notes)
	}
	var commands []string
	for _, p := range orders.Policies {
		commands = append(commands, p.Command)
		if !strings.Contains(p.Using+p.WithCheck, "current_org()") || !slices.Equal(p.Roles, []string{"public"}) {
			t.Errorf("policy %+v", p)
		}
	}
	slices.Sort(commands)
	if !slices.Equal(commands, []string{"DELETE", "INSERT", "SELECT", "UPDATE"}) {
		t.Errorf("orders policies for %v", commands)
	}
	if !slices.ContainsFunc(orders.TenantIndexes, func(s string) bool { return strings.Contains(s, "orders_org") }) {
		t.Errorf("orders tenant indexes: %v", orders.TenantIndexes)
	}
	// Every check Verify can report has a plain explanation.
	report, err := Verify(testpg.Context(t), conn, VerifyOptions{AppRole: d.app, Probe: true})
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range report.Results {
		if CheckExplanations[r.Check] == "" {
			t.Errorf("check %s has no explanation", r.Check)
		}
	}
}
