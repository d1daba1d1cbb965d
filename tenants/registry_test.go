package tenants

import (
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/pgtenant/pgtenant/test/testpg"
)

// changeLog records the calls of OnChange as "old>new" statuses, "-" for
// nil, prefixed with the org id.
type changeLog struct {
	mu      sync.Mutex
	changes []string
}

func (c *changeLog) record(old, new *Org) {
	id, from, to := "", "-", "-"
	if old != nil {
		id, from = old.ID, string(old.Status)
	}
	if new != nil {
		id, to = new.ID, string(new.Status)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.changes = append(c.changes, id+":"+from+">"+to)
}

func (c *changeLog) has(change string) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, x := range c.changes {
		if x == change {
			return true
		}
	}
	return false
}

func (c *changeLog) String() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return strings.Join(c.changes, " ")
}

// openRegistry opens a Registry on d as its owner, closed when the test
// ends.
func openRegistry(t *testing.T, d *controlDB, o RegistryOptions) *Registry {
	t.Helper()
	o.DSN = d.dsn(d.owner)
	r, err := OpenRegistry(testpg.Context(t), o)
	if err != nil {
		t.Fatalf("OpenRegistry: %v", err)
	}
	t.Cleanup(r.Close)
	return r
}

func TestRegistrySeesChangesThroughNotifyAndCallsOnChange(t *testing.T) {
	t.Parallel()
	d := newControlDB(t)
	s := d.store()
	ctx := testpg.Context(t)
	mustCreate(t, s, NewOrg{ID: "acme", Name: "Acme"})
	var changes changeLog
	r := openRegistry(t, d, RegistryOptions{ReloadInterval: time.Hour, OnChange: changes.record})

	if o, ok := r.Lookup("acme"); !ok || o.Name != "Acme" {
		t.Fatalf("Lookup after the first load = %+v, %v", o, ok)
	}
	if r.LastLoad().IsZero() {
		t.Error("LastLoad is zero after the first load")
	}
	mustCreate(t, s, NewOrg{ID: "globex", Name: "Globex"})
	eventually(t, "the new org is seen", func() bool { _, ok := r.Lookup("globex"); return ok })
	eventually(t, "OnChange reports the new org", func() bool { return changes.has("globex:->active") })

	mustSetStatus(t, s, "acme", StatusSuspended)
	eventually(t, "the suspension is seen", func() bool { o, _ := r.Lookup("acme"); return o.Status == StatusSuspended })
	eventually(t, "OnChange reports the suspension", func() bool { return changes.has("acme:active>suspended") })
	if c := r.Counts(); c[StatusActive] != 1 || c[StatusSuspended] != 1 || c[StatusDeprovisioned] != 0 {
		t.Errorf("Counts = %v", c)
	}

	// Members are held for the orgs that require membership.
	if _, err := s.PutMember(ctx, admin, Member{OrgID: "globex", Subject: "user-1", Role: RoleAdmin}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Update(ctx, admin, "globex", 0, Patch{Settings: &Settings{RequireMembership: true}}); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the member of an org that requires membership is seen", func() bool {
		role, ok := r.Member("globex", "user-1")
		return ok && role == RoleAdmin
	})
	if _, err := s.PutMember(ctx, admin, Member{OrgID: "globex", Subject: "user-1", Status: MemberDisabled}); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the disabled member is refused", func() bool { _, ok := r.Member("globex", "user-1"); return !ok })

	exec(t, d.connect(d.owner), "DELETE FROM tenancy.orgs WHERE id = 'globex'")
	eventually(t, "the deleted org is gone", func() bool { _, ok := r.Lookup("globex"); return !ok })
	eventually(t, "OnChange reports the deletion", func() bool { return changes.has("globex:active>-") })
	if strings.Contains(changes.String(), "acme:->") {
		t.Errorf("OnChange was called for the first load: %s", changes.String())
	}

	st := r.Stats()
	if st.Reloads < 5 || st.ReloadErrors != 0 || st.NotifyErrors != 0 {
		t.Errorf("Stats = %+v", st)
	}
	r.Close()
	r.Close() // idempotent
	if _, ok := r.Lookup("acme"); !ok {
		t.Error("Lookup after Close lost the last copy")
	}
}

func TestRegistryReconnectsAfterItsBackendIsKilledAndCatchesUp(t *testing.T) {
	t.Parallel()
	d := newControlDB(t)
	s := d.store()
	mustCreate(t, s, NewOrg{ID: "acme", Name: "Acme"})
	var logs testpg.SyncBuffer
	var changes changeLog
	r := openRegistry(t, d, RegistryOptions{ReloadInterval: time.Hour, Log: zerolog.New(&logs), OnChange: changes.record})

	su := d.superuser()
	ctx := testpg.Context(t)
	var pid int
	err := su.QueryRow(ctx, "SELECT pid FROM pg_stat_activity WHERE datname = $1 AND application_name = $2",
		d.name, registryApplicationName).Scan(&pid)
	if err != nil {
		t.Fatalf("finding the registry's backend: %v", err)
	}
	// Kill the backend and keep the registry out while acme is suspended:
	// only the full reload after reconnecting can see that.
	exec(t, su, "ALTER ROLE "+ident(d.owner)+" NOLOGIN")
	exec(t, su, "SELECT pg_terminate_backend($1)", pid)
	eventually(t, "a reconnect fails", func() bool { return r.Stats().NotifyErrors >= 2 })
	exec(t, su, "UPDATE tenancy.orgs SET status = 'suspended', version = version + 1 WHERE id = 'acme'")
	exec(t, su, "ALTER ROLE "+ident(d.owner)+" LOGIN")
	eventually(t, "the change made while disconnected is seen", func() bool {
		o, _ := r.Lookup("acme")
		return o.Status == StatusSuspended
	})
	eventually(t, "OnChange reports it", func() bool { return changes.has("acme:active>suspended") })
	// Listening again: a notified change arrives.
	mustCreate(t, s, NewOrg{ID: "globex", Name: "Globex"})
	eventually(t, "a change after the reconnect is seen", func() bool { _, ok := r.Lookup("globex"); return ok })
	eventually(t, "the reconnect is logged", func() bool { return strings.Contains(logs.String(), "reconnected") })
	if n := strings.Count(logs.String(), "lost the connection"); n != 1 {
		t.Errorf("the outage was logged %d times, want once:\n%s", n, logs.String())
	}
}

func TestRegistryPeriodicReloadFindsChangesNotificationsMissed(t *testing.T) {
	t.Parallel()
	d := newControlDB(t)
	mustCreate(t, d.store(), NewOrg{ID: "acme", Name: "Acme"})
	var changes changeLog
	r := openRegistry(t, d, RegistryOptions{ReloadInterval: 100 * time.Millisecond, OnChange: changes.record})
	exec(t, d.connect(d.owner), `
		BEGIN;
		ALTER TABLE tenancy.orgs DISABLE TRIGGER orgs_notify;
		UPDATE tenancy.orgs SET name = 'Acme Renamed' WHERE id = 'acme';
		ALTER TABLE tenancy.orgs ENABLE TRIGGER orgs_notify;
		COMMIT;`)
	eventually(t, "the reload finds the rename", func() bool { o, _ := r.Lookup("acme"); return o.Name == "Acme Renamed" })
	eventually(t, "OnChange reports it", func() bool { return changes.has("acme:active>active") })
}

func TestRegistryReloadsEverythingOnANotificationWithoutPayload(t *testing.T) {
	t.Parallel()
	d := newControlDB(t)
	mustCreate(t, d.store(), NewOrg{ID: "acme", Name: "Acme"})
	r := openRegistry(t, d, RegistryOptions{ReloadInterval: time.Hour})
	owner := d.connect(d.owner)
	exec(t, owner, `
		BEGIN;
		ALTER TABLE tenancy.orgs DISABLE TRIGGER orgs_notify;
		UPDATE tenancy.orgs SET name = 'Acme Renamed' WHERE id = 'acme';
		ALTER TABLE tenancy.orgs ENABLE TRIGGER orgs_notify;
		COMMIT;`)
	exec(t, owner, "NOTIFY "+NotifyChannel)
	eventually(t, "the reload finds the rename", func() bool { o, _ := r.Lookup("acme"); return o.Name == "Acme Renamed" })
}

func TestRegistryReloadsABurstOfChangesInFull(t *testing.T) {
	t.Parallel()
	d := newControlDB(t)
	r := openRegistry(t, d, RegistryOptions{ReloadInterval: time.Hour})
	exec(t, d.connect(d.owner), `
		INSERT INTO tenancy.orgs (id, slug, name, created_by, updated_by)
		SELECT 'org-' || i, 'org-' || i, 'Company ' || i, 'seed', 'seed' FROM generate_series(1, 3*$1::int) AS i`, maxPartialReload)
	eventually(t, "every org of the burst is seen", func() bool { return r.Counts()[StatusActive] == 3*maxPartialReload })
}

func TestOpenRegistryFailsWhenTheFirstLoadFails(t *testing.T) {
	t.Parallel()
	d := newControlDB(t)
	ctx := testpg.Context(t)
	if _, err := OpenRegistry(ctx, RegistryOptions{DSN: d.dsn(d.app)}); err == nil || !strings.Contains(err.Error(), "GRANT SELECT") {
		t.Errorf("as the application role: err = %v, want the first load's failure", err)
	}
	if _, err := OpenRegistry(ctx, RegistryOptions{DSN: "postgres://%zz"}); err == nil || !strings.Contains(err.Error(), "DSN") {
		t.Errorf("bad DSN: err = %v", err)
	}
	if _, err := OpenRegistry(ctx, RegistryOptions{DSN: d.dsn(d.owner), ReloadInterval: -time.Second}); err == nil {
		t.Error("negative reload interval accepted")
	}
}
