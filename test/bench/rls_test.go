package main

import (
	"bytes"
	"strings"
	"testing"
)

func TestRLSGroupsSplitTheClientsOverDistinctTenants(t *testing.T) {
	for _, clients := range []int{1, 3, 16, 17, 64} {
		orgs, per := rlsGroupsFor(options{clients: clients})
		sum := 0
		seen := map[int]bool{}
		for i, org := range orgs {
			if org < 1 || org > rlsTenants || seen[org] {
				t.Errorf("clients %d: tenant %d is out of range or repeated: %v", clients, org, orgs)
			}
			seen[org] = true
			if per[i] < 1 {
				t.Errorf("clients %d: group %d has no client: %v", clients, i, per)
			}
			sum += per[i]
		}
		if sum != clients {
			t.Errorf("clients %d: the groups have %d clients: %v", clients, sum, per)
		}
	}
}

func TestRLSScriptsNameTheTenantExceptUnderRLS(t *testing.T) {
	for _, s := range rlsScripts {
		direct, rls, plain := s.forms[0], s.forms[1], s.forms[2]
		if !strings.Contains(direct, "FROM "+rlsTable+" WHERE org_id = :org::text") ||
			!strings.Contains(plain, "FROM "+rlsPlainTable+" WHERE org_id = :org::text") ||
			strings.Contains(rls, "org_id") || !strings.Contains(rls, "FROM "+rlsTable+" ") {
			t.Errorf("%s: forms\n%s\n%s\n%s", s.name, direct, rls, plain)
		}
	}
}

func TestRLSReportShowsTheRatiosAndTheGoal(t *testing.T) {
	res := &rlsResults{tps: map[string]map[string][]float64{}, failed: map[string]map[string]error{},
		plans: map[string]map[string]string{}, groups: 4}
	for _, s := range rlsScripts {
		res.tps[s.name] = map[string][]float64{rlsTargetNames[0]: {1000}, rlsTargetNames[1]: {900}, rlsTargetNames[2]: {950}}
		res.plans[s.name] = map[string]string{rlsTargetNames[1]: "Index Scan using tenant_items_pkey"}
	}
	res.tps[rlsScripts[1].name][rlsTargetNames[1]] = []float64{500}
	var out bytes.Buffer
	printRLSReport(&out, res, options{clients: 16, rlsDuration: 4})
	for _, want := range []string{
		"pk lookup        1000        900        950     0.90x     0.95x     0.95x  goal (b) >= 0.85x (a): met",
		"range scan       1000        500        950     0.50x     0.95x     0.53x  goal (b) >= 0.85x (a): not met",
		"  Index Scan using tenant_items_pkey",
	} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("report lacks %q:\n%s", want, out.String())
		}
	}
}
