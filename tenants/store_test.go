package tenants

import (
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/pgtenant/pgtenant/test/testpg"
)

const admin = "admin@example.com"

func ptr[T any](v T) *T { return &v }

// mustCreate creates an org with the id and name n, failing the test on
// error.
func mustCreate(t *testing.T, s *Store, n NewOrg) Org {
	t.Helper()
	o, err := s.Create(testpg.Context(t), admin, n)
	if err != nil {
		t.Fatalf("Create(%s): %v", n.ID, err)
	}
	return o
}

func TestCreatedOrgIsReadBackWithDefaultsAndClashesAreRefused(t *testing.T) {
	t.Parallel()
	s := newControlDB(t).store()
	ctx := testpg.Context(t)
	in := NewOrg{
		ID:       "Acme_Corp.eu",
		Name:     "Acme Corporation",
		Settings: Settings{StatementTimeout: Duration(5 * time.Second), MaxConnections: 20, RequireMembership: true},
		Flags:    map[string]any{"beta": true, "tier": "gold"},
		Pool:     Pool{Size: ptr(4), Mode: ptr(PoolModeSession), WaitTimeout: ptr(Duration(2 * time.Second))},
	}
	created := mustCreate(t, s, in)
	got, err := s.Get(ctx, "Acme_Corp.eu")
	if err != nil {
		t.Fatal(err)
	}
	if got.Slug != "acme-corp-eu" || got.Status != StatusActive || got.Version != 1 ||
		got.CreatedBy != admin || got.UpdatedBy != admin || got.CreatedAt.IsZero() {
		t.Errorf("Get = %+v, want slug acme-corp-eu, active, version 1, created by %s", got, admin)
	}
	if got.Settings != in.Settings {
		t.Errorf("settings = %+v, want %+v", got.Settings, in.Settings)
	}
	if got.Flags["beta"] != true || got.Flags["tier"] != "gold" {
		t.Errorf("flags = %v", got.Flags)
	}
	if *got.Pool.Size != 4 || *got.Pool.Mode != PoolModeSession || *got.Pool.WaitTimeout != Duration(2*time.Second) || got.Pool.MinIdle != nil {
		t.Errorf("pool = %+v", got.Pool)
	}
	if created.ID != got.ID || !created.CreatedAt.Equal(got.CreatedAt) {
		t.Errorf("Create returned %+v, Get %+v", created, got)
	}

	if _, err := s.Create(ctx, admin, NewOrg{ID: "Acme_Corp.eu", Slug: "other", Name: "x"}); !errors.Is(err, ErrExists) || !strings.Contains(err.Error(), "id") {
		t.Errorf("same id: err = %v, want ErrExists naming the id", err)
	}
	if _, err := s.Create(ctx, admin, NewOrg{ID: "acme2", Slug: "acme-corp-eu", Name: "x"}); !errors.Is(err, ErrExists) || !strings.Contains(err.Error(), "slug") {
		t.Errorf("same slug: err = %v, want ErrExists naming the slug", err)
	}
	if _, err := s.Get(ctx, "nobody"); !errors.Is(err, ErrNotFound) {
		t.Errorf("Get of a missing org: err = %v, want ErrNotFound", err)
	}
	if _, err := s.Create(ctx, " ", NewOrg{ID: "anon", Name: "x"}); !errors.Is(err, ErrInvalid) {
		t.Errorf("Create without an actor: err = %v, want ErrInvalid", err)
	}
}

func TestInvalidOrgsAreRefusedWithTheFieldNamed(t *testing.T) {
	t.Parallel()
	s := newControlDB(t).store()
	long := strings.Repeat("a", 64)
	for _, tc := range []struct {
		name string
		org  NewOrg
		want string
	}{
		{"empty id", NewOrg{Name: "x"}, "org id"},
		{"id with a space", NewOrg{ID: "a b", Name: "x"}, "org id"},
		{"id starting with a dash", NewOrg{ID: "-a", Name: "x"}, "org id"},
		{"id of 64 characters", NewOrg{ID: long, Name: "x"}, "org id"},
		{"upper-case slug", NewOrg{ID: "a", Slug: "A", Name: "x"}, "slug"},
		{"blank name", NewOrg{ID: "a", Name: "  "}, "name"},
		{"name too long", NewOrg{ID: "a", Name: strings.Repeat("n", MaxNameLen+1)}, "name"},
		{"negative statement timeout", NewOrg{ID: "a", Name: "x", Settings: Settings{StatementTimeout: -1}}, "settings.statement_timeout"},
		{"negative idle timeout", NewOrg{ID: "a", Name: "x", Settings: Settings{IdleInTransactionTimeout: Duration(-time.Second)}}, "settings.idle_in_transaction_timeout"},
		{"huge statement timeout", NewOrg{ID: "a", Name: "x", Settings: Settings{StatementTimeout: Duration(1000 * time.Hour)}}, "at most"},
		{"negative max connections", NewOrg{ID: "a", Name: "x", Settings: Settings{MaxConnections: -1}}, "settings.max_connections"},
		{"pool of 0", NewOrg{ID: "a", Name: "x", Pool: Pool{Size: ptr(0)}}, "pool.size"},
		{"min idle over size", NewOrg{ID: "a", Name: "x", Pool: Pool{Size: ptr(2), MinIdle: ptr(3)}}, "pool.min_idle"},
		{"unknown pool mode", NewOrg{ID: "a", Name: "x", Pool: Pool{Mode: ptr("statement")}}, "pool.mode"},
		{"negative wait timeout", NewOrg{ID: "a", Name: "x", Pool: Pool{WaitTimeout: ptr(Duration(-1))}}, "pool.wait_timeout"},
		{"flags that are not JSON", NewOrg{ID: "a", Name: "x", Flags: map[string]any{"f": func() {}}}, "flags"},
	} {
		_, err := s.Create(testpg.Context(t), admin, tc.org)
		if !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: err = %v, want ErrInvalid mentioning %q", tc.name, err, tc.want)
		}
	}
	var p Page
	p, err := s.List(testpg.Context(t), ListOptions{})
	if err != nil || p.Total != 0 {
		t.Errorf("refused orgs were stored: %+v, %v", p, err)
	}
}

func TestListFiltersSearchesAndPagesTenThousandOrgs(t *testing.T) {
	t.Parallel()
	d := newControlDB(t)
	s := d.store()
	owner := d.connect(d.owner)
	// org-00001 ... org-10000; every tenth suspended, names "Company n".
	exec(t, owner, `
		INSERT INTO tenancy.orgs (id, slug, name, status, created_by, updated_by)
		SELECT 'org-' || lpad(i::text, 5, '0'), 'org-' || lpad(i::text, 5, '0'), 'Company ' || i,
			CASE WHEN i % 10 = 0 THEN 'suspended' ELSE 'active' END, 'seed', 'seed'
		FROM generate_series(1, 10000) AS i`)
	mustCreate(t, s, NewOrg{ID: "weird", Name: "100% real_name"})
	ctx := testpg.Context(t)

	list := func(o ListOptions) Page {
		t.Helper()
		p, err := s.List(ctx, o)
		if err != nil {
			t.Fatalf("List(%+v): %v", o, err)
		}
		return p
	}
	ids := func(p Page) []string {
		var out []string
		for _, o := range p.Orgs {
			out = append(out, o.ID)
		}
		return out
	}

	if p := list(ListOptions{}); p.Total != 10001 || p.Limit != DefaultListLimit || len(p.Orgs) != DefaultListLimit || p.Orgs[0].ID != "org-00001" {
		t.Errorf("first page: total %d, limit %d, %d orgs, first %v", p.Total, p.Limit, len(p.Orgs), ids(p)[:1])
	}
	if p := list(ListOptions{Limit: 100000}); p.Limit != MaxListLimit || len(p.Orgs) != MaxListLimit {
		t.Errorf("oversized limit: limit %d, %d orgs, want %d", p.Limit, len(p.Orgs), MaxListLimit)
	}
	if p := list(ListOptions{Status: StatusSuspended, Limit: 3, Offset: 2}); p.Total != 1000 ||
		strings.Join(ids(p), ",") != "org-00030,org-00040,org-00050" {
		t.Errorf("suspended, page 2 of 3: total %d, %v", p.Total, ids(p))
	}
	if p := list(ListOptions{Search: "COMPANY 999"}); p.Total != 11 {
		t.Errorf("search on name: total %d (%v), want 11 (999 and 9990-9999)", p.Total, ids(p))
	}
	if p := list(ListOptions{Search: "org-0999", Status: StatusActive}); p.Total != 9 {
		t.Errorf("search on id among active orgs: total %d, want 9", p.Total)
	}
	if p := list(ListOptions{Search: "0% real_"}); strings.Join(ids(p), ",") != "weird" {
		t.Errorf("search with LIKE wildcards: %v, want them taken literally", ids(p))
	}
	if p := list(ListOptions{Offset: 20000}); p.Total != 10001 || len(p.Orgs) != 0 || p.Orgs == nil {
		t.Errorf("past the end: total %d, orgs %v; want the total and an empty (non-nil) page", p.Total, p.Orgs)
	}
	// Every org once across the pages.
	seen := map[string]bool{}
	for off := 0; ; off += MaxListLimit {
		p := list(ListOptions{Limit: MaxListLimit, Offset: off})
		for _, o := range p.Orgs {
			if seen[o.ID] {
				t.Fatalf("org %s on two pages", o.ID)
			}
			seen[o.ID] = true
		}
		if len(p.Orgs) < MaxListLimit {
			break
		}
	}
	if len(seen) != 10001 {
		t.Errorf("paging saw %d orgs, want 10001", len(seen))
	}
	for _, o := range []ListOptions{{Limit: -1}, {Offset: -1}, {Status: "gone"}} {
		if _, err := s.List(ctx, o); !errors.Is(err, ErrInvalid) {
			t.Errorf("List(%+v): err = %v, want ErrInvalid", o, err)
		}
	}
	counts, err := s.CountByStatus(ctx)
	if err != nil || counts[StatusActive] != 9001 || counts[StatusSuspended] != 1000 || counts[StatusDeprovisioned] != 0 {
		t.Errorf("CountByStatus = %v, %v", counts, err)
	}
}

func TestEveryStatusTransitionIsAllowedOrRefusedAndRecorded(t *testing.T) {
	t.Parallel()
	s := newControlDB(t).store()
	ctx := testpg.Context(t)
	all := []Status{StatusActive, StatusSuspended, StatusDeprovisioned}
	allowed := map[[2]Status]string{
		{StatusActive, StatusSuspended}:        ActionSuspend,
		{StatusSuspended, StatusActive}:        ActionResume,
		{StatusActive, StatusDeprovisioned}:    ActionDeprovision,
		{StatusSuspended, StatusDeprovisioned}: ActionDeprovision,
	}
	for i, from := range all {
		for j, to := range all {
			id := fmt.Sprintf("org-%d-%d", i, j)
			mustCreate(t, s, NewOrg{ID: id, Name: id})
			// Bring the org to from along allowed moves.
			switch from {
			case StatusSuspended:
				mustSetStatus(t, s, id, StatusSuspended)
			case StatusDeprovisioned:
				mustSetStatus(t, s, id, StatusDeprovisioned)
			}
			before, _ := s.Get(ctx, id)
			entries := len(history(t, s, id))
			o, err := s.SetStatus(ctx, "ops@example.com", id, to, "case "+id)
			action, ok := allowed[[2]Status{from, to}]
			switch {
			case from == to:
				if err != nil || o.Version != before.Version || o.Status != from {
					t.Errorf("%s -> %s: %+v, %v; want a no-op", from, to, o, err)
				}
				if h := history(t, s, id); len(h) != entries {
					t.Errorf("%s -> %s wrote history %+v", from, to, h[0])
				}
			case ok:
				if err != nil || o.Status != to || o.Version != before.Version+1 || o.UpdatedBy != "ops@example.com" {
					t.Errorf("%s -> %s: %+v, %v", from, to, o, err)
					continue
				}
				h := history(t, s, id)[0]
				if h.Action != action || h.FromStatus != from || h.ToStatus != to || h.Actor != "ops@example.com" || h.Reason != "case "+id {
					t.Errorf("%s -> %s: history %+v", from, to, h)
				}
			default:
				if !errors.Is(err, ErrInvalidTransition) {
					t.Errorf("%s -> %s: err = %v, want ErrInvalidTransition", from, to, err)
				}
				if after, _ := s.Get(ctx, id); after.Status != from || after.Version != before.Version {
					t.Errorf("%s -> %s: the refused move changed the org to %+v", from, to, after)
				}
			}
		}
	}
	if _, err := s.SetStatus(ctx, admin, "org-0-0", "archived", ""); !errors.Is(err, ErrInvalid) {
		t.Errorf("unknown status: err = %v, want ErrInvalid", err)
	}
	if _, err := s.SetStatus(ctx, admin, "nobody", StatusSuspended, ""); !errors.Is(err, ErrNotFound) {
		t.Errorf("missing org: err = %v, want ErrNotFound", err)
	}
	// The status history of an org: creation, then each move.
	mustSetStatus(t, s, "org-0-0", StatusSuspended)
	mustSetStatus(t, s, "org-0-0", StatusActive)
	var moves []string
	for _, h := range history(t, s, "org-0-0") {
		if h.ToStatus != "" {
			moves = append(moves, string(h.FromStatus)+">"+string(h.ToStatus))
		}
	}
	if got := strings.Join(moves, " "); got != "suspended>active active>suspended >active" {
		t.Errorf("status history, newest first: %s", got)
	}
}

// Provisioning, status changes and purges are also audit events, written
// with the change; other changes are in the history only.
func TestLifecycleChangesAreAlsoAuditEvents(t *testing.T) {
	t.Parallel()
	d := newControlDB(t)
	s := d.store()
	ctx := testpg.Context(t)
	mustCreate(t, s, NewOrg{ID: "acme", Name: "Acme"})
	if _, err := s.SetStatus(ctx, "ops@example.com", "acme", StatusSuspended, "unpaid"); err != nil {
		t.Fatal(err)
	}
	mustSetStatus(t, s, "acme", StatusActive)
	if _, err := s.Update(ctx, admin, "acme", 0, Patch{Name: ptr("Acme Corp")}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.PutMember(ctx, admin, Member{OrgID: "acme", Subject: "bob", Role: "member", Status: "active"}); err != nil {
		t.Fatal(err)
	}
	mustSetStatus(t, s, "acme", StatusDeprovisioned)
	if err := s.RecordPurge(ctx, admin, "acme", map[string]int{"rows": 3}); err != nil {
		t.Fatal(err)
	}
	rows, err := d.connect(d.owner).Query(ctx, `SELECT subject || ' ' || rule || ': ' || detail FROM tenancy.audit_events
		WHERE org = 'acme' AND reason = 'tenant_lifecycle' ORDER BY id`)
	if err != nil {
		t.Fatal(err)
	}
	got, err := pgx.CollectRows(rows, pgx.RowTo[string])
	want := []string{
		admin + " create: create",
		"ops@example.com suspend: suspend active -> suspended: unpaid",
		admin + " resume: resume suspended -> active",
		admin + " deprovision: deprovision active -> deprovisioned",
		admin + ` purge: purge {"rows":3}`,
	}
	if err != nil || !slices.Equal(got, want) {
		t.Errorf("lifecycle audit events %q, %v; want %q", got, err, want)
	}
}

func mustSetStatus(t *testing.T, s *Store, id string, to Status) {
	t.Helper()
	if _, err := s.SetStatus(testpg.Context(t), admin, id, to, ""); err != nil {
		t.Fatalf("SetStatus(%s, %s): %v", id, to, err)
	}
}

func history(t *testing.T, s *Store, id string) []HistoryEntry {
	t.Helper()
	h, err := s.History(testpg.Context(t), id, 0)
	if err != nil || len(h) == 0 {
		t.Fatalf("History(%s) = %v, %v", id, h, err)
	}
	return h
}

func TestSecondUpdateWithTheSameVersionConflicts(t *testing.T) {
	t.Parallel()
	s := newControlDB(t).store()
	ctx := testpg.Context(t)
	o := mustCreate(t, s, NewOrg{ID: "acme", Name: "Acme"})
	first, err := s.Update(ctx, "alice", "acme", o.Version, Patch{Name: ptr("Acme Inc")})
	if err != nil || first.Version != o.Version+1 || first.Name != "Acme Inc" || first.UpdatedBy != "alice" || first.UpdatedAt.Before(o.UpdatedAt) {
		t.Fatalf("first update: %+v, %v", first, err)
	}
	_, err = s.Update(ctx, "bob", "acme", o.Version, Patch{Name: ptr("Acme Ltd")})
	if !errors.Is(err, ErrVersionConflict) || !strings.Contains(err.Error(), "version 2, not 1") {
		t.Errorf("second update with the same version: err = %v, want ErrVersionConflict naming both versions", err)
	}
	if got, _ := s.Get(ctx, "acme"); got.Name != "Acme Inc" {
		t.Errorf("the conflicting update changed the name to %q", got.Name)
	}
	// Version 0 skips the check.
	if got, err := s.Update(ctx, "bob", "acme", 0, Patch{Flags: map[string]any{"x": 1.5}}); err != nil || got.Version != 3 || got.Flags["x"] != 1.5 {
		t.Errorf("unconditional update: %+v, %v", got, err)
	}
	if _, err := s.Update(ctx, "bob", "nobody", 0, Patch{Name: ptr("x")}); !errors.Is(err, ErrNotFound) {
		t.Errorf("update of a missing org: err = %v, want ErrNotFound", err)
	}
	if _, err := s.Update(ctx, "bob", "acme", 0, Patch{}); !errors.Is(err, ErrInvalid) {
		t.Errorf("empty patch: err = %v, want ErrInvalid", err)
	}
	if _, err := s.Update(ctx, "bob", "acme", 0, Patch{Pool: &Pool{Size: ptr(0)}}); !errors.Is(err, ErrInvalid) {
		t.Errorf("invalid pool: err = %v, want ErrInvalid", err)
	}
}

func TestUpdateChangesOnlyThePatchedFieldsAndRecordsThePatch(t *testing.T) {
	t.Parallel()
	s := newControlDB(t).store()
	ctx := testpg.Context(t)
	mustCreate(t, s, NewOrg{ID: "acme", Name: "Acme", Settings: Settings{ReadOnly: true}, Flags: map[string]any{"a": true}, Pool: Pool{Size: ptr(3)}})
	got, err := s.Update(ctx, "carol", "acme", 1, Patch{Settings: &Settings{MaxConnections: 7}, Flags: map[string]any{"b": "on"}})
	if err != nil {
		t.Fatal(err)
	}
	if got.Name != "Acme" || got.Settings != (Settings{MaxConnections: 7}) || len(got.Flags) != 1 || got.Flags["b"] != "on" || *got.Pool.Size != 3 {
		t.Errorf("after the patch: %+v", got)
	}
	h := history(t, s, "acme")
	if len(h) != 2 || h[0].Action != ActionUpdate || h[0].Actor != "carol" || h[1].Action != ActionCreate || h[1].Actor != admin {
		t.Fatalf("history = %+v", h)
	}
	var detail Patch
	if err := json.Unmarshal(h[0].Detail, &detail); err != nil || detail.Settings == nil || detail.Settings.MaxConnections != 7 || detail.Name != nil {
		t.Errorf("update detail %s (%v), want the patch", h[0].Detail, err)
	}
	if _, err := s.History(ctx, "nobody", 0); !errors.Is(err, ErrNotFound) {
		t.Errorf("history of a missing org: err = %v, want ErrNotFound", err)
	}
}

func TestMembersArePutReadAndDeletedWithHistory(t *testing.T) {
	t.Parallel()
	s := newControlDB(t).store()
	ctx := testpg.Context(t)
	mustCreate(t, s, NewOrg{ID: "acme", Name: "Acme"})

	m, err := s.PutMember(ctx, admin, Member{OrgID: "acme", Subject: "user-1"})
	if err != nil || m.Role != RoleMember || m.Status != MemberActive || m.CreatedBy != admin {
		t.Fatalf("PutMember with defaults = %+v, %v", m, err)
	}
	m, err = s.PutMember(ctx, "dave", Member{OrgID: "acme", Subject: "user-1", Role: RoleAdmin, Status: MemberDisabled})
	if err != nil || m.Role != RoleAdmin || m.Status != MemberDisabled || m.UpdatedBy != "dave" || m.CreatedBy != admin {
		t.Fatalf("PutMember update = %+v, %v", m, err)
	}
	// The same again changes nothing and records nothing.
	before := len(history(t, s, "acme"))
	if again, err := s.PutMember(ctx, "erin", Member{OrgID: "acme", Subject: "user-1", Role: RoleAdmin, Status: MemberDisabled}); err != nil || again.UpdatedBy != "dave" {
		t.Errorf("repeated PutMember = %+v, %v", again, err)
	}
	if after := len(history(t, s, "acme")); after != before {
		t.Errorf("a PutMember that changed nothing wrote history")
	}
	if _, err := s.PutMember(ctx, admin, Member{OrgID: "acme", Subject: "user-2"}); err != nil {
		t.Fatal(err)
	}
	members, err := s.Members(ctx, "acme")
	if err != nil || len(members) != 2 || members[0].Subject != "user-1" || members[1].Subject != "user-2" {
		t.Errorf("Members = %+v, %v", members, err)
	}
	if got, err := s.Member(ctx, "acme", "user-2"); err != nil || got.Role != RoleMember {
		t.Errorf("Member = %+v, %v", got, err)
	}
	if err := s.DeleteMember(ctx, "frank", "acme", "user-2"); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Member(ctx, "acme", "user-2"); !errors.Is(err, ErrNotFound) {
		t.Errorf("deleted member: err = %v, want ErrNotFound", err)
	}
	if err := s.DeleteMember(ctx, "frank", "acme", "user-2"); !errors.Is(err, ErrNotFound) {
		t.Errorf("second delete: err = %v, want ErrNotFound", err)
	}
	var actions []string
	for _, h := range history(t, s, "acme") {
		actions = append(actions, h.Action+" by "+h.Actor)
	}
	want := "member_delete by frank,member_put by admin@example.com,member_put by dave,member_put by admin@example.com,create by admin@example.com"
	if got := strings.Join(actions, ","); got != want {
		t.Errorf("history:\n%s\nwant\n%s", got, want)
	}

	for _, tc := range []struct {
		name string
		m    Member
		want error
	}{
		{"unknown org", Member{OrgID: "nobody", Subject: "u"}, ErrNotFound},
		{"empty subject", Member{OrgID: "acme"}, ErrInvalid},
		{"long subject", Member{OrgID: "acme", Subject: strings.Repeat("s", MaxSubjectLen+1)}, ErrInvalid},
		{"bad role", Member{OrgID: "acme", Subject: "u", Role: "owner"}, ErrInvalid},
		{"bad status", Member{OrgID: "acme", Subject: "u", Status: "banned"}, ErrInvalid},
	} {
		if _, err := s.PutMember(ctx, admin, tc.m); !errors.Is(err, tc.want) {
			t.Errorf("%s: err = %v, want %v", tc.name, err, tc.want)
		}
	}
	if _, err := s.Members(ctx, "nobody"); !errors.Is(err, ErrNotFound) {
		t.Errorf("Members of a missing org: err = %v, want ErrNotFound", err)
	}
}

func TestApplicationRolesGetNothingInTheRegistry(t *testing.T) {
	t.Parallel()
	d := newControlDB(t)
	mustCreate(t, d.store(), NewOrg{ID: "acme", Name: "Acme"})
	app := d.connect(d.app)
	ctx := testpg.Context(t)
	for _, sql := range []string{
		"SELECT * FROM tenancy.orgs",
		"UPDATE tenancy.orgs SET status = 'active'",
		"SELECT * FROM tenancy.org_members",
		"INSERT INTO tenancy.org_members (org_id, subject, created_by, updated_by) VALUES ('acme', 'me', 'me', 'me')",
		"SELECT * FROM tenancy.org_history",
		"SELECT nextval('tenancy.org_history_id_seq')",
	} {
		if _, err := app.Exec(ctx, sql); testpg.SQLState(err) != "42501" {
			t.Errorf("%s as the application role: err = %v, want SQLSTATE 42501", sql, err)
		}
	}
}

func TestDurationReadsStringsAndMillisecondsAndWritesStrings(t *testing.T) {
	t.Parallel()
	var s Settings
	if err := json.Unmarshal([]byte(`{"statement_timeout": "1m30s", "idle_in_transaction_timeout": 250}`), &s); err != nil {
		t.Fatal(err)
	}
	if s.StatementTimeout != Duration(90*time.Second) || s.IdleInTransactionTimeout != Duration(250*time.Millisecond) {
		t.Errorf("decoded %+v", s)
	}
	b, _ := json.Marshal(s)
	if string(b) != `{"statement_timeout":"1m30s","idle_in_transaction_timeout":"250ms"}` {
		t.Errorf("encoded %s", b)
	}
	for _, bad := range []string{`"soon"`, `true`, `1e300`} {
		var d Duration
		if err := json.Unmarshal([]byte(bad), &d); err == nil {
			t.Errorf("%s decoded as %s, want an error", bad, d)
		}
	}
}
