package policies

import (
	"slices"
	"strings"
	"testing"
)

// checks returns the sorted Check names of findings.
func checks(findings []Finding) []string {
	var names []string
	for _, f := range findings {
		names = append(names, f.Check)
	}
	slices.Sort(names)
	return names
}

func harden(t testing.TB, d *tenantDB, role string) []Finding {
	t.Helper()
	findings, err := CheckHardening(ctxT(t), d.superuser(), role)
	if err != nil {
		t.Fatalf("CheckHardening(%s): %v", role, err)
	}
	return findings
}

func TestHardeningFindsNothingForAWellConfiguredAppRole(t *testing.T) {
	t.Parallel()
	d := newTenantDB(t)
	d.withItems(keyA)
	if findings := harden(t, d, d.app); len(findings) > 0 {
		t.Errorf("findings for a well-configured role:\n%v", findings)
	}
	if _, err := CheckHardening(ctxT(t), d.superuser(), "no_such_role_xyz"); err == nil || !strings.Contains(err.Error(), "does not exist") {
		t.Errorf("unknown role: err = %v", err)
	}
}

// TestHardeningFindsEachWayAroundRowLevelSecurity gives a role set up like
// the app role one defect at a time, expects exactly the matching finding,
// then runs the fix the finding names and expects no finding.
func TestHardeningFindsEachWayAroundRowLevelSecurity(t *testing.T) {
	t.Parallel()
	d := newTenantDB(t)
	owner := d.withItems(keyA)
	su := d.superuser()
	bypass := d.name + "_bypasser"
	d.createRole(bypass, "NOLOGIN BYPASSRLS")
	middle := d.name + "_middle"
	d.createRole(middle, "NOLOGIN")
	d.exec(su, "GRANT "+ident(bypass)+" TO "+ident(middle)+"; CREATE SEQUENCE shared_ids")
	for _, tc := range []struct {
		name, options, setup string
		want                 []string
		severity             string
		fixable              bool // the fix is plain SQL with nothing to fill in
	}{
		{name: "super", options: "SUPERUSER", want: []string{CheckSuperuser}, fixable: true},
		{name: "bypass", options: "BYPASSRLS", want: []string{CheckBypassRLS}, fixable: true},
		{name: "owner", setup: `
			CREATE TABLE owned (org_id text, v text);
			ALTER TABLE owned ENABLE ROW LEVEL SECURITY;
			ALTER TABLE owned FORCE ROW LEVEL SECURITY;
			ALTER TABLE owned OWNER TO @`, want: []string{CheckOwnsTenantTable}},
		{name: "member", setup: "GRANT " + ident(middle) + " TO @", want: []string{CheckPrivilegedMember}, fixable: true},
		{name: "noinherit", options: "NOINHERIT", setup: "GRANT " + ident(d.owner) + " TO @", want: []string{CheckPrivilegedMember}, fixable: true},
		{name: "temp", setup: "GRANT TEMPORARY ON DATABASE " + ident(d.name) + " TO @", want: []string{CheckTemp}, fixable: true},
		{name: "truncate", setup: "GRANT TRUNCATE, TRIGGER ON items TO @", want: []string{CheckTablePrivileges}, fixable: true},
		{name: "references", setup: "GRANT REFERENCES ON items TO PUBLIC", want: []string{CheckTablePrivileges}, fixable: true},
		{name: "setval", setup: "GRANT UPDATE ON SEQUENCE shared_ids TO @", want: []string{CheckSharedSequences}, fixable: true},
		{name: "keys", setup: "GRANT SELECT ON tenancy.context_keys TO @", want: []string{CheckTenancyGrants}, fixable: true},
		{name: "audit", setup: "GRANT SELECT ON tenancy.audit_events TO @", want: []string{CheckTenancyGrants}, fixable: true},
		{name: "create", setup: "GRANT CREATE ON SCHEMA public TO @", want: []string{CheckCreateOnSchema}, severity: SeverityWarning, fixable: true},
		{name: "no execute", setup: "REVOKE EXECUTE ON FUNCTION tenancy.current_org() FROM @", want: []string{CheckTenancyGrants}},
	} {
		role := d.name + "_r_" + strings.ReplaceAll(tc.name, " ", "_")
		d.createRole(role, "LOGIN "+tc.options)
		d.exec(owner, "GRANT USAGE ON SCHEMA tenancy TO "+ident(role)+"; GRANT EXECUTE ON FUNCTION tenancy.current_org() TO "+ident(role)+
			"; GRANT SELECT, INSERT, UPDATE, DELETE ON items TO "+ident(role))
		if tc.setup != "" {
			d.exec(su, strings.ReplaceAll(tc.setup, "@", ident(role)))
		}
		findings := harden(t, d, role)
		if got := checks(findings); !slices.Equal(got, tc.want) {
			t.Errorf("%s: findings %q, want %q:\n%v", tc.name, got, tc.want, findings)
			continue
		}
		severity := tc.severity
		if severity == "" {
			severity = SeverityError
		}
		f := findings[0]
		t.Logf("%s: %v", tc.name, f)
		if f.Severity != severity {
			t.Errorf("%s: severity %s, want %s", tc.name, f.Severity, severity)
		}
		_, fix, ok := strings.Cut(f.Message, "Fix: ")
		if !ok {
			t.Errorf("%s: the message names no fix: %s", tc.name, f.Message)
			continue
		}
		if !tc.fixable {
			continue
		}
		d.exec(su, fix)
		if after := harden(t, d, role); len(after) > 0 {
			t.Errorf("%s: after running the fix %q, still:\n%v", tc.name, fix, after)
		}
	}
}

func TestHardeningChecksTenantTablesAndTheTenancySchema(t *testing.T) {
	t.Parallel()
	d := newTenantDB(t)
	owner := d.connect(d.owner)
	d.exec(owner, `
		CREATE TABLE open_to_all (org_id text, v text);
		CREATE TABLE unforced (org_id text, v text);
		ALTER TABLE unforced ENABLE ROW LEVEL SECURITY;
		CREATE TABLE unreachable (org_id text);
		CREATE TABLE not_tenant (v text);
		GRANT SELECT ON open_to_all, unforced, not_tenant TO `+ident(d.app))
	findings := harden(t, d, d.app)
	want := []Finding{
		{CheckRLSEnabled, SeverityError, "public.open_to_all"},
		{CheckRLSForced, SeverityWarning, "public.unforced"},
		{CheckRLSEnabled, SeverityWarning, "public.unreachable"},
		{CheckTenancySchema, SeverityError, "not installed"},
	}
	if len(findings) != len(want) {
		t.Fatalf("findings:\n%v\nwant %d", findings, len(want))
	}
	for i, w := range want {
		f := findings[i]
		if f.Check != w.Check || f.Severity != w.Severity || !strings.Contains(f.Message, w.Message) {
			t.Errorf("finding %d = %v, want %s %s mentioning %q", i, f, w.Severity, w.Check, w.Message)
		}
	}
	d.install(owner, keyA)
	d.exec(owner, `
		ALTER TABLE open_to_all ENABLE ROW LEVEL SECURITY; ALTER TABLE open_to_all FORCE ROW LEVEL SECURITY;
		ALTER TABLE unforced FORCE ROW LEVEL SECURITY;
		ALTER TABLE unreachable ENABLE ROW LEVEL SECURITY; ALTER TABLE unreachable FORCE ROW LEVEL SECURITY`)
	if findings := harden(t, d, d.app); len(findings) > 0 {
		t.Errorf("after install and forcing RLS:\n%v", findings)
	}
	d.exec(owner, "UPDATE tenancy.schema_version SET version = 0")
	if got := checks(harden(t, d, d.app)); !slices.Equal(got, []string{CheckTenancySchema}) {
		t.Errorf("old schema version: findings %q", got)
	}
}
