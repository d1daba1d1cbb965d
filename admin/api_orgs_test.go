package admin

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/pgtenant/pgtenant/poolmgr"
	"github.com/pgtenant/pgtenant/tenants"
	"github.com/pgtenant/pgtenant/test/testpg"
)

func TestCreateAnswers201WithLocationAndETagAndRecordsTheActor(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	r := f.do("POST", APIPrefix+"/orgs", platformToken(t), map[string]any{
		"id": "acme", "name": "Acme", "settings": map[string]any{"statement_timeout": "30s", "max_connections": 10},
		"flags": map[string]any{"beta": true}, "pool": map[string]any{"size": 4},
	})
	f.want(r, 201, "create")
	var o tenants.Org
	r.json(t, &o)
	if o.ID != "acme" || o.Status != tenants.StatusActive || o.CreatedBy != "root" || o.Settings.StatementTimeout != tenants.Duration(30*time.Second) {
		t.Errorf("created %+v", o)
	}
	if loc := r.header.Get("Location"); loc != APIPrefix+"/orgs/acme" {
		t.Errorf("Location %q", loc)
	}
	if r.header.Get("ETag") != etag(o.Version) || r.header.Get("Content-Type") != "application/json" {
		t.Errorf("headers %v", r.header)
	}
	if !strings.Contains(f.log.String(), `"actor":"root"`) || !strings.Contains(f.log.String(), `"action":"create"`) ||
		!strings.Contains(f.log.String(), `"tenant":"acme"`) {
		t.Errorf("the creation is not logged with actor, action and tenant:\n%s", f.log)
	}

	again := f.do("POST", APIPrefix+"/orgs", platformToken(t), map[string]any{"id": "acme", "name": "Acme again"})
	f.want(again, 409, "create an existing org")
	if code, _ := again.errorCode(t); code != "already_exists" {
		t.Errorf("code %q", code)
	}
	invalid := f.do("POST", APIPrefix+"/orgs", platformToken(t), map[string]any{"id": "bad id", "name": "x"})
	f.want(invalid, 400, "create with an invalid id")
	if _, msg := invalid.errorCode(t); !strings.Contains(msg, "bad id") {
		t.Errorf("message %q does not name the value", msg)
	}
	get := f.do("GET", APIPrefix+"/orgs/acme", platformToken(t), nil)
	f.want(get, 200, "get")
	if get.header.Get("ETag") != etag(o.Version) {
		t.Errorf("GET ETag %q, want %q", get.header.Get("ETag"), etag(o.Version))
	}
	f.want(f.do("GET", APIPrefix+"/orgs/initech", platformToken(t), nil), 404, "get an unknown org")
}

func TestStatusTransitionsFollowTheLifecycleAndRefuseTheRestWith409(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	f.createOrg("acme")
	root := platformToken(t)
	for _, step := range []struct {
		action string
		body   any
		status int
		want   tenants.Status
	}{
		{"resume", nil, 200, tenants.StatusActive}, // already active: a no-op
		{"suspend", map[string]any{"reason": "unpaid invoice"}, 200, tenants.StatusSuspended},
		{"suspend", nil, 200, tenants.StatusSuspended},
		{"resume", `{}`, 200, tenants.StatusActive},
		{"deprovision", map[string]any{"reason": "contract ended"}, 200, tenants.StatusDeprovisioned},
		{"resume", nil, 409, ""},
		{"suspend", nil, 409, ""},
	} {
		r := f.do("POST", APIPrefix+"/orgs/acme/"+step.action, root, step.body)
		f.want(r, step.status, step.action)
		if step.status != 200 {
			if code, msg := r.errorCode(t); code != "invalid_transition" || !strings.Contains(msg, "acme") {
				t.Errorf("%s: %s %q", step.action, code, msg)
			}
			continue
		}
		var o tenants.Org
		r.json(t, &o)
		if o.Status != step.want {
			t.Errorf("%s: status %s by %s, want %s by root", step.action, o.Status, o.UpdatedBy, step.want)
		}
	}
	f.want(f.do("POST", APIPrefix+"/orgs/initech/suspend", root, nil), 404, "suspend an unknown org")
	f.want(f.do("POST", APIPrefix+"/orgs/acme/suspend", root, map[string]any{"why": "x"}), 400, "unknown field in a status change")

	r := f.do("GET", APIPrefix+"/orgs/acme/history", root, nil)
	f.want(r, 200, "history")
	var h historyPage
	r.json(t, &h)
	var got []string
	for _, e := range h.Entries {
		got = append(got, fmt.Sprintf("%s %s>%s %s %s", e.Action, e.FromStatus, e.ToStatus, e.Actor, e.Reason))
	}
	want := []string{
		"deprovision active>deprovisioned root contract ended",
		"resume suspended>active root ",
		"suspend active>suspended root unpaid invoice",
	}
	if len(got) < 3 || strings.Join(got[:3], "\n") != strings.Join(want, "\n") {
		t.Errorf("history:\n%s\nwant first:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	f.want(f.do("GET", APIPrefix+"/orgs/acme/history?limit=0", root, nil), 400, "history limit 0")
	f.want(f.do("GET", APIPrefix+"/orgs/initech/history", root, nil), 404, "history of an unknown org")
}

func TestTwoAdminsSavingTheSameVersionLoseNothing(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	v := f.createOrg("acme").Version
	alice, root := acmeAdminToken(t), platformToken(t)

	first := f.do("PATCH", APIPrefix+"/orgs/acme", alice, map[string]any{"name": "Acme Corporation"}, "If-Match", etag(v))
	f.want(first, 200, "first save")
	var o tenants.Org
	first.json(t, &o)
	if o.Name != "Acme Corporation" || o.Version <= v || o.UpdatedBy != "alice" || first.header.Get("ETag") != etag(o.Version) {
		t.Fatalf("after the first save: %+v, ETag %s", o, first.header.Get("ETag"))
	}

	second := f.do("PATCH", APIPrefix+"/orgs/acme", root, map[string]any{"flags": map[string]any{"beta": true}}, "If-Match", etag(v))
	f.want(second, 412, "second save of the same version")
	code, msg := second.errorCode(t)
	if code != "version_conflict" || !strings.Contains(msg, "another admin saved") || !strings.Contains(msg, fmt.Sprintf("version %d", o.Version)) {
		t.Errorf("412 says %s %q", code, msg)
	}
	cur, err := f.store.Get(testpg.Context(t), "acme")
	if err != nil {
		t.Fatal(err)
	}
	if cur.Name != "Acme Corporation" || len(cur.Flags) != 0 || cur.Version != o.Version {
		t.Fatalf("the refused save changed the org: %+v", cur)
	}

	// Reloaded, the second admin's change goes through on top of the first.
	retry := f.do("PATCH", APIPrefix+"/orgs/acme", root, map[string]any{"flags": map[string]any{"beta": true}, "version": o.Version})
	f.want(retry, 200, "retry with the new version in the body")
	retry.json(t, &o)
	if o.Name != "Acme Corporation" || o.Flags["beta"] != true {
		t.Errorf("after the retry: %+v", o)
	}
}

func TestPatchNeedsTheVersionItWasMadeAgainst(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	v := f.createOrg("acme").Version
	root := platformToken(t)
	r := f.do("PATCH", APIPrefix+"/orgs/acme", root, map[string]any{"name": "X"})
	f.want(r, 428, "no If-Match, no version")
	if code, msg := r.errorCode(t); code != "precondition_required" || !strings.Contains(msg, "If-Match") {
		t.Errorf("428 says %s %q", code, msg)
	}
	for _, tc := range []struct {
		name   string
		header []string
		body   map[string]any
		status int
	}{
		{"If-Match star", []string{"If-Match", "*"}, nil, 400},
		{"weak ETag", []string{"If-Match", `W/"1"`}, nil, 400},
		{"two ETags", []string{"If-Match", `"1", "2"`}, nil, 400},
		{"not a version", []string{"If-Match", `"abc"`}, nil, 400},
		{"body version zero", nil, map[string]any{"version": 0}, 400},
		{"If-Match and body disagree", []string{"If-Match", etag(v)}, map[string]any{"version": v + 1}, 400},
		{"stale unquoted If-Match", []string{"If-Match", fmt.Sprint(v + 7)}, nil, 412},
		{"unquoted If-Match", []string{"If-Match", fmt.Sprint(v)}, nil, 200},
	} {
		body := map[string]any{"name": "Acme " + tc.name}
		for k, val := range tc.body {
			body[k] = val
		}
		f.want(f.do("PATCH", APIPrefix+"/orgs/acme", root, body, tc.header...), tc.status, tc.name)
	}
	f.want(f.do("PATCH", APIPrefix+"/orgs/initech", root, map[string]any{"name": "X"}, "If-Match", `"1"`), 404, "patch an unknown org")
	f.want(f.do("PATCH", APIPrefix+"/orgs/acme", root, map[string]any{}, "If-Match", etag(f.version("acme"))), 400, "empty patch")
}

func TestOrgAdminsMayNotChangePoolOverridesOrMaxConnections(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	if _, err := f.store.Create(testpg.Context(t), "fixture", tenants.NewOrg{ID: "acme", Name: "Acme",
		Settings: tenants.Settings{MaxConnections: 20}}); err != nil {
		t.Fatal(err)
	}
	alice := acmeAdminToken(t)
	patch := func(body map[string]any) response {
		return f.do("PATCH", APIPrefix+"/orgs/acme", alice, body, "If-Match", etag(f.version("acme")))
	}
	r := patch(map[string]any{"pool": map[string]any{"size": 50}})
	f.want(r, 403, "org admin sets a pool override")
	if _, msg := r.errorCode(t); !strings.Contains(msg, "platform admins") {
		t.Errorf("message %q", msg)
	}
	f.want(patch(map[string]any{"settings": map[string]any{"max_connections": 1000}}), 403, "org admin raises max_connections")
	f.want(patch(map[string]any{"settings": map[string]any{"max_connections": 20, "read_only": true, "statement_timeout": 5000}}), 200,
		"org admin changes settings, keeping max_connections")
	f.want(patch(map[string]any{"name": "Acme Two", "flags": map[string]any{"theme": "dark"}}), 200, "org admin renames and sets flags")
	o, err := f.store.Get(testpg.Context(t), "acme")
	if err != nil {
		t.Fatal(err)
	}
	if !o.Settings.ReadOnly || o.Settings.StatementTimeout != tenants.Duration(5*time.Second) || o.Name != "Acme Two" || o.UpdatedBy != "alice" || o.Pool.Size != nil {
		t.Errorf("org after the org admin's changes: %+v", o)
	}
	f.want(f.do("PATCH", APIPrefix+"/orgs/acme", platformToken(t), map[string]any{"pool": map[string]any{"size": 50}},
		"If-Match", etag(o.Version)), 200, "platform admin sets a pool override")
}

func TestBadRequestsAre400NamingWhatIsWrong(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	f.createOrg("acme")
	root := platformToken(t)
	for _, tc := range []struct {
		name, method, path string
		body               any
		header             []string
		status             int
		code, inMessage    string
	}{
		{"unknown field", "POST", "/orgs", `{"id":"x","name":"X","colour":"red"}`, nil, 400, "unknown_field", `"colour"`},
		{"unknown nested field", "POST", "/orgs", `{"id":"x","name":"X","settings":{"max_conns":3}}`, nil, 400, "unknown_field", `"max_conns"`},
		{"not JSON", "POST", "/orgs", `{"id": x}`, nil, 400, "invalid_json", "not valid JSON"},
		{"cut short", "POST", "/orgs", `{"id": "x"`, nil, 400, "invalid_json", "ends in the middle"},
		{"two objects", "POST", "/orgs", `{"id":"x","name":"X"} {}`, nil, 400, "bad_request", "more after the JSON object"},
		{"an array", "POST", "/orgs", `[]`, nil, 400, "invalid_json", "must be a JSON object"},
		{"wrong type", "POST", "/orgs", `{"id":"x","name":"X","settings":{"max_connections":"ten"}}`, nil, 400, "invalid_field", "settings.max_connections"},
		{"bad duration", "POST", "/orgs", `{"id":"x","name":"X","settings":{"statement_timeout":"soon"}}`, nil, 400, "invalid_field", "soon"},
		{"empty body", "POST", "/orgs", ``, nil, 400, "bad_request", "empty"},
		{"not JSON content type", "POST", "/orgs", `{"id":"x","name":"X"}`, []string{"Content-Type", "text/plain"}, 415, "unsupported_media_type", "application/json"},
		{"too large", "POST", "/orgs", `{"name":"` + strings.Repeat("a", MaxRequestBody) + `"}`, nil, 413, "body_too_large", "larger than"},
		{"negative timeout", "POST", "/orgs", `{"id":"x","name":"X","settings":{"statement_timeout":"-1s"}}`, nil, 400, "invalid", "statement_timeout"},
		{"bad status filter", "GET", "/orgs?status=sleeping", nil, nil, 400, "bad_request", "sleeping"},
		{"bad limit", "GET", "/orgs?limit=many", nil, nil, 400, "bad_request", "limit"},
		{"limit too large", "GET", "/orgs?limit=100000", nil, nil, 400, "bad_request", "limit"},
		{"negative offset", "GET", "/orgs?offset=-1", nil, nil, 400, "bad_request", "offset"},
		{"bad member role", "PUT", "/orgs/acme/members/bob", map[string]any{"role": "owner"}, nil, 400, "invalid", "owner"},
		{"unknown member field", "PUT", "/orgs/acme/members/bob", map[string]any{"role": "member", "subject": "eve"}, nil, 400, "unknown_field", `"subject"`},
	} {
		r := f.do(tc.method, APIPrefix+tc.path, root, tc.body, tc.header...)
		if r.status != tc.status {
			t.Errorf("%s: status %d, want %d; body %.300s", tc.name, r.status, tc.status, r.body)
			continue
		}
		if code, msg := r.errorCode(t); code != tc.code || !strings.Contains(msg, tc.inMessage) {
			t.Errorf("%s: %s %q, want %s naming %q", tc.name, code, msg, tc.code, tc.inMessage)
		}
	}
}

func TestListShowsLiveSessionsAndPoolUsageAndOrgAdminsSeeTheirOwnOrg(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	for _, id := range []string{"acme", "globex", "initech"} {
		f.createOrg(id)
	}
	if _, err := f.store.SetStatus(testpg.Context(t), "fixture", "initech", tenants.StatusSuspended, ""); err != nil {
		t.Fatal(err)
	}
	// Blocked in 24 h counts attempts, not the lifecycle events of the
	// creations and the suspension above.
	f.recordAudit(auditRow{at: time.Now(), org: "acme", subject: "u1", reason: "blocked_statement", detail: "x"},
		auditRow{at: time.Now().Add(-25 * time.Hour), org: "acme", subject: "u1", reason: "blocked_statement", detail: "old"})
	f.sessions = map[string]int{"acme": 3, "globex": 1}
	f.pools = []poolmgr.PoolStat{
		{Key: poolmgr.Key{Database: "app", Tenant: "acme"}, Size: 5, Total: 3, InUse: 2, Idle: 1, Waiting: 4},
		{Key: poolmgr.Key{Database: "reports", Tenant: "acme"}, Size: 2, Total: 1, Idle: 1},
	}
	list := func(tok, query string) orgPage {
		t.Helper()
		r := f.do("GET", APIPrefix+"/orgs"+query, tok, nil)
		f.want(r, 200, "list "+query)
		var p orgPage
		r.json(t, &p)
		return p
	}
	all := list(platformToken(t), "")
	if all.Total != 3 || len(all.Orgs) != 3 || all.Orgs[0].ID != "acme" {
		t.Fatalf("platform list: %+v", all)
	}
	acme := all.Orgs[0]
	if acme.LiveSessions != 3 || acme.PoolUsage != (poolUsage{Size: 7, Total: 4, Active: 2, Idle: 2, Waiting: 4}) || acme.Name != "Acme" {
		t.Errorf("acme in the list: %+v", acme)
	}
	for _, o := range all.Orgs {
		got := "null"
		if o.Blocked24h != nil {
			got = fmt.Sprint(*o.Blocked24h)
		}
		if want := fmt.Sprint(map[string]int64{"acme": 1}[o.ID]); got != want {
			t.Errorf("%s blocked in 24 h: %s, want %s", o.ID, got, want)
		}
	}
	if p := list(platformToken(t), "?status=suspended"); len(p.Orgs) != 1 || p.Orgs[0].ID != "initech" {
		t.Errorf("suspended: %+v", p)
	}
	if p := list(platformToken(t), "?limit=1&offset=1"); len(p.Orgs) != 1 || p.Orgs[0].ID != "globex" || p.Total != 3 || p.Limit != 1 || p.Offset != 1 {
		t.Errorf("second page: %+v", p)
	}
	if p := list(platformToken(t), "?search=GLOB"); len(p.Orgs) != 1 || p.Orgs[0].ID != "globex" {
		t.Errorf("search: %+v", p)
	}
	own := list(acmeAdminToken(t), "")
	if own.Total != 1 || len(own.Orgs) != 1 || own.Orgs[0].ID != "acme" || own.Orgs[0].LiveSessions != 3 {
		t.Errorf("org admin's list: %+v", own)
	}
	if p := list(acmeAdminToken(t), "?status=suspended"); p.Total != 0 || len(p.Orgs) != 0 {
		t.Errorf("org admin's list of suspended orgs: %+v", p)
	}
	if p := list(acmeAdminToken(t), "?search=glob"); len(p.Orgs) != 0 {
		t.Errorf("org admin's search for another org: %+v", p)
	}

	r := f.do("GET", APIPrefix+"/orgs/acme/pools", acmeAdminToken(t), nil)
	f.want(r, 200, "org pools")
	var pools poolsPage
	r.json(t, &pools)
	if len(pools.Pools) != 2 || pools.Pools[0].Database != "app" || pools.Pools[0].Active != 2 || pools.Pools[0].Waiting != 4 {
		t.Errorf("acme pools: %+v", pools)
	}
	r = f.do("GET", APIPrefix+"/orgs/globex/pools", platformToken(t), nil)
	r.json(t, &pools)
	if len(pools.Pools) != 0 {
		t.Errorf("globex pools: %+v", pools)
	}
	f.want(f.do("GET", APIPrefix+"/orgs/nowhere/pools", platformToken(t), nil), 404, "pools of an unknown org")
}

func TestMembersAreManagedThroughTheAPIWithTheCallerAsActor(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	f.createOrg("acme")
	alice := acmeAdminToken(t)
	r := f.do("PUT", APIPrefix+"/orgs/acme/members/bob%2Fext", alice, map[string]any{"role": "admin"})
	f.want(r, 200, "add bob/ext")
	var m tenants.Member
	r.json(t, &m)
	if m.Subject != "bob/ext" || m.Role != "admin" || m.Status != "active" || m.CreatedBy != "alice" {
		t.Errorf("member %+v", m)
	}
	f.want(f.do("PUT", APIPrefix+"/orgs/acme/members/bob%2Fext", alice, map[string]any{"role": "admin", "status": "disabled"}), 200, "disable bob")
	r = f.do("GET", APIPrefix+"/orgs/acme/members", alice, nil)
	f.want(r, 200, "members")
	var ms membersPage
	r.json(t, &ms)
	if len(ms.Members) != 1 || ms.Members[0].Status != "disabled" || ms.Members[0].UpdatedBy != "alice" {
		t.Errorf("members %+v", ms)
	}
	f.want(f.do("DELETE", APIPrefix+"/orgs/acme/members/bob%2Fext", alice, nil), 204, "remove bob")
	f.want(f.do("DELETE", APIPrefix+"/orgs/acme/members/bob%2Fext", alice, nil), 404, "remove bob again")
	f.want(f.do("PUT", APIPrefix+"/orgs/initech/members/bob", platformToken(t), map[string]any{}), 404, "member of an unknown org")
	if !strings.Contains(f.log.String(), `"action":"delete_member"`) || !strings.Contains(f.log.String(), `"subject":"bob/ext"`) {
		t.Errorf("member changes are not logged:\n%s", f.log)
	}
}
