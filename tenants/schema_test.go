package tenants

import (
	"bytes"
	"testing"

	"github.com/pgtenant/pgtenant/policies"
	"github.com/pgtenant/pgtenant/test/testpg"
)

func TestInstallUpgradesAVersion1SchemaWithTheRegistry(t *testing.T) {
	t.Parallel()
	d := newControlDB(t)
	owner := d.connect(d.owner)
	// Back to what version 1 left: no registry.
	exec(t, owner, `
		DROP TABLE tenancy.org_history, tenancy.org_members, tenancy.orgs;
		DROP FUNCTION tenancy.registry_notify();
		UPDATE tenancy.schema_version SET version = 1;`)
	ctx := testpg.Context(t)
	err := policies.Install(ctx, owner, policies.InstallOptions{
		Keys:     []policies.ContextKey{{ID: "primary", Secret: bytes.Repeat([]byte("k"), 32)}},
		AppRoles: []string{d.app},
	})
	if err != nil {
		t.Fatalf("upgrading: %v", err)
	}
	var version, triggers int
	if err := owner.QueryRow(ctx, "SELECT version FROM tenancy.schema_version").Scan(&version); err != nil || version != policies.SchemaVersion {
		t.Errorf("version after the upgrade = %d (%v), want %d", version, err, policies.SchemaVersion)
	}
	err = owner.QueryRow(ctx, `SELECT count(*) FROM pg_trigger
		WHERE tgrelid IN ('tenancy.orgs'::regclass, 'tenancy.org_members'::regclass) AND NOT tgisinternal`).Scan(&triggers)
	if err != nil || triggers != 2 {
		t.Errorf("notify triggers after the upgrade: %d (%v), want 2", triggers, err)
	}
	mustCreate(t, d.store(), NewOrg{ID: "acme", Name: "Acme"})
}
