package admin

import (
	"encoding/csv"
	"fmt"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"
)

func TestAuditEventsFilterPageAndExportAsCSV(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	f.createOrg("acme")
	f.createOrg("globex")
	base := time.Date(2026, 11, 1, 12, 0, 0, 0, time.UTC)
	f.recordAudit(
		auditRow{at: base, org: "acme", subject: "u1", reason: "blocked_statement", detail: "a0", fingerprint: "DROP TABLE t"},
		auditRow{at: base.Add(time.Minute), org: "globex", subject: "u9", reason: "auth_failed", detail: "g1"},
		auditRow{at: base.Add(2 * time.Minute), org: "acme", subject: "u2", reason: "rls_violation", detail: "a2"},
		auditRow{at: base.Add(3 * time.Minute), org: "acme", subject: "u1", reason: "blocked_statement", detail: "=HYPERLINK(\"x\")"},
		auditRow{at: base.Add(4 * time.Minute), org: "globex", subject: "u9", reason: "blocked_statement", detail: "g4"},
	)
	events := func(tok, query string) ([]string, *int64) {
		t.Helper()
		r := f.do("GET", APIPrefix+"/audit/events"+query, tok, nil)
		f.want(r, 200, "audit "+query)
		var p auditPage
		r.json(t, &p)
		var d []string
		for _, e := range p.Events {
			d = append(d, e.Detail)
		}
		return d, p.NextBeforeID
	}
	root := platformToken(t)
	for _, tc := range []struct {
		query string
		want  []string
	}{
		// The creation of each org is an event too, written before the others.
		{"", []string{"g4", `=HYPERLINK("x")`, "a2", "g1", "a0", "create", "create"}},
		{"?org=acme", []string{`=HYPERLINK("x")`, "a2", "a0", "create"}},
		{"?reason=tenant_lifecycle", []string{"create", "create"}},
		{"?reason=blocked_statement", []string{"g4", `=HYPERLINK("x")`, "a0"}},
		{"?subject=u1", []string{`=HYPERLINK("x")`, "a0"}},
		{"?since=" + url.QueryEscape(base.Add(time.Minute).Format(time.RFC3339)) + "&until=" + url.QueryEscape(base.Add(3*time.Minute).Format(time.RFC3339)),
			[]string{"a2", "g1"}},
		{"?org=initech", nil},
	} {
		if got, _ := events(root, tc.query); !slices.Equal(got, tc.want) {
			t.Errorf("%s: got %q, want %q", tc.query, got, tc.want)
		}
	}

	// Paging with next_before_id visits every event once.
	var paged []string
	query := "?limit=2"
	for range 10 {
		page, next := events(root, query)
		paged = append(paged, page...)
		if next == nil {
			break
		}
		query = fmt.Sprintf("?limit=2&before_id=%d", *next)
	}
	if want := []string{"g4", `=HYPERLINK("x")`, "a2", "g1", "a0", "create", "create"}; !slices.Equal(paged, want) {
		t.Errorf("paged %q, want %q", paged, want)
	}

	// An org admin reads its own org's events, and no other's.
	alice := acmeAdminToken(t)
	if got, _ := events(alice, ""); !slices.Equal(got, []string{`=HYPERLINK("x")`, "a2", "a0", "create"}) {
		t.Errorf("org admin without org: %q", got)
	}
	f.want(f.do("GET", APIPrefix+"/audit/events?org=globex", alice, nil), 403, "org admin asks for another org's events")
	f.want(f.do("GET", APIPrefix+"/audit/events?org=acme", acmeMemberToken(t), nil), 403, "member asks for its org's events")

	for _, bad := range []string{"?since=yesterday", "?until=2026-13-01T00:00:00Z", "?before_id=0", "?before_id=x", "?limit=0", "?limit=1001", "?format=xml"} {
		f.want(f.do("GET", APIPrefix+"/audit/events"+bad, root, nil), 400, bad)
	}

	// CSV: a header row, then one row per event; formulas are defused.
	r := f.do("GET", APIPrefix+"/audit/events?org=acme&format=csv&limit=2", root, nil)
	f.want(r, 200, "CSV")
	if ct := r.header.Get("Content-Type"); !strings.HasPrefix(ct, "text/csv") {
		t.Errorf("Content-Type %q", ct)
	}
	if r.header.Get("X-Next-Before-Id") == "" {
		t.Error("a full CSV page has no X-Next-Before-Id")
	}
	rows, err := csv.NewReader(strings.NewReader(string(r.body))).ReadAll()
	if err != nil {
		t.Fatalf("CSV %q: %v", r.body, err)
	}
	if len(rows) != 3 || !slices.Equal(rows[0], auditCSVHeader) {
		t.Fatalf("CSV rows %q", rows)
	}
	col := slices.Index(auditCSVHeader, "detail")
	if rows[1][col] != `'=HYPERLINK("x")` || rows[2][col] != "a2" || rows[1][slices.Index(auditCSVHeader, "org")] != "acme" {
		t.Errorf("CSV rows %q", rows[1:])
	}
}

func TestAuditEventsWithoutAControlDatabaseAre503(t *testing.T) {
	t.Parallel()
	f := newFixture(t, func(a *API) { a.Audit = nil })
	r := f.do("GET", APIPrefix+"/audit/events", platformToken(t), nil)
	f.want(r, 503, "no control database")
	if code, msg := r.errorCode(t); code != "audit_unavailable" || !strings.Contains(msg, "audit.dsn") {
		t.Errorf("503 says %s %q", code, msg)
	}
}

func TestOpenAPIDocumentIsServedAndDescribesEveryRoute(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	r := f.do("GET", APIPrefix+"/openapi.yaml", "", nil)
	f.want(r, 200, "openapi.yaml without a token")
	var doc struct {
		OpenAPI string                    `yaml:"openapi"`
		Paths   map[string]map[string]any `yaml:"paths"`
	}
	if err := yaml.Unmarshal(r.body, &doc); err != nil {
		t.Fatalf("openapi.yaml does not parse: %v", err)
	}
	if !strings.HasPrefix(doc.OpenAPI, "3.") {
		t.Errorf("openapi %q", doc.OpenAPI)
	}
	documented := 0
	for _, rt := range f.api.routes() {
		ops, ok := doc.Paths[rt.path]
		if !ok {
			t.Errorf("route %s %s: path missing from openapi.yaml", rt.method, rt.path)
			continue
		}
		op, ok := ops[strings.ToLower(rt.method)].(map[string]any)
		if !ok {
			t.Errorf("route %s %s: method missing from openapi.yaml", rt.method, rt.path)
			continue
		}
		documented++
		responses, _ := op["responses"].(map[string]any)
		if rt.access != accessPublic {
			if _, ok := responses["401"]; !ok {
				t.Errorf("route %s %s: the 401 answer is not documented", rt.method, rt.path)
			}
		}
		if rt.access > accessAuthenticated {
			if _, ok := responses["403"]; !ok {
				t.Errorf("route %s %s: the 403 answer is not documented", rt.method, rt.path)
			}
		}
	}
	// And nothing is documented that is not served.
	served := 0
	for _, ops := range doc.Paths {
		for m := range ops {
			if m != "parameters" {
				served++
			}
		}
	}
	if served != documented {
		t.Errorf("openapi.yaml documents %d operations, the API serves %d", served, documented)
	}
}
