package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/pgtenant/pgtenant/admin"
	"github.com/pgtenant/pgtenant/audit"
	"github.com/pgtenant/pgtenant/auth"
	"github.com/pgtenant/pgtenant/test/testpg"
)

// The browser tests drive the admin UI in a real headless Chromium, against
// a full pgtenant and a real PostgreSQL. Steps wait by polling the page, never
// by sleeping a fixed time, so a loaded CI machine only makes them slower.

// uiStepTimeout bounds one step (a navigation, a click and what it shows).
const uiStepTimeout = 45 * time.Second

// uiArtifacts is where the tests save a screenshot of each page.
var uiArtifacts = filepath.Join("..", "..", "test", "artifacts", "ui")

// chromiumPath finds Chromium: $PGTENANT_CHROMIUM, else chromium,
// chromium-browser or google-chrome on PATH. Without one the test skips
// loudly, or fails on CI (CI=true).
func chromiumPath(t *testing.T) string {
	t.Helper()
	if p := os.Getenv("PGTENANT_CHROMIUM"); p != "" {
		if _, err := exec.LookPath(p); err != nil {
			t.Fatalf("PGTENANT_CHROMIUM=%s: %v; fix or unset it", p, err)
		}
		return p
	}
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	const msg = "Chromium is not installed: run scripts/ensure-chromium.sh (Debian package chromium) or set PGTENANT_CHROMIUM"
	if os.Getenv("CI") == "true" {
		t.Fatal(msg + " (CI=true: failing instead of skipping the admin UI browser tests)")
	}
	fmt.Fprintln(os.Stderr, "\n*** SKIPPING the admin UI browser tests: "+msg+" ***")
	t.Skip("SKIPPING: " + msg)
	return ""
}

// browser is one headless Chromium tab at a laptop's screen size.
type browser struct {
	t    *testing.T
	ctx  context.Context
	base string // http://host:port of the admin listener serving /ui/
	// loginURL is the admin.login_url the sign-in page should offer.
	loginURL string

	mu       sync.Mutex
	problems []string // exceptions and CSP violations the page reported
}

// newBrowser starts Chromium (chrome, from chromiumPath) for the test.
func newBrowser(ctx context.Context, t *testing.T, chrome, base string) *browser {
	t.Helper()
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(chrome),
		chromedp.NoSandbox, // tests may run as root, where the sandbox cannot start
		chromedp.Flag("disable-gpu", true),
		chromedp.WindowSize(1280, 720),
		chromedp.UserDataDir(t.TempDir()),
	)
	actx, cancelAlloc := chromedp.NewExecAllocator(ctx, opts...)
	bctx, cancelTab := chromedp.NewContext(actx)
	b := &browser{t: t, ctx: bctx, base: base}
	messages := chromedp.Console(bctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		for m, err := range messages {
			if err != nil {
				return
			}
			if m.IsException() || strings.Contains(m.Text, "Content Security Policy") {
				b.mu.Lock()
				b.problems = append(b.problems, m.Text)
				b.mu.Unlock()
			}
		}
	}()
	t.Cleanup(func() {
		cancelTab()
		cancelAlloc()
		<-done
		b.mu.Lock()
		defer b.mu.Unlock()
		for _, p := range b.problems {
			t.Errorf("the page reported: %s", p)
		}
	})
	return b
}

// do runs actions as one step, failing the test with what the page shows
// when they do not complete in time.
func (b *browser) do(what string, actions ...chromedp.Action[chromedp.Void]) {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, uiStepTimeout)
	defer cancel()
	if err := chromedp.Do(ctx, actions...); err != nil {
		b.t.Fatalf("%s: %v\nthe page shows:\n%s", what, err, b.pageText())
	}
}

// waitFor polls a JavaScript expression until it is truthy.
func (b *browser) waitFor(what, expr string) {
	b.t.Helper()
	b.do(what, chromedp.Poll[chromedp.Void](expr,
		chromedp.WithPollingInterval(100*time.Millisecond), chromedp.WithPollingTimeout(uiStepTimeout)))
}

func (b *browser) eval(expr string) string {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, uiStepTimeout)
	defer cancel()
	s, err := chromedp.Run(ctx, chromedp.Evaluate[string](expr))
	if err != nil {
		b.t.Fatalf("evaluating %s: %v", expr, err)
	}
	return s
}

func (b *browser) pageText() string {
	ctx, cancel := context.WithTimeout(b.ctx, 5*time.Second)
	defer cancel()
	s, err := chromedp.Run(ctx, chromedp.Evaluate[string](`document.body ? document.body.innerText : ""`))
	if err != nil {
		return "(unreadable: " + err.Error() + ")"
	}
	return s
}

// open goes to a route of the UI (such as "#/orgs") and waits for the
// page's main element to show something other than "Loading…".
func (b *browser) open(route string) {
	b.t.Helper()
	b.do("opening "+route, chromedp.Navigate(b.base+"/ui/"+route))
	b.waitFor("the page "+route, `document.querySelector('main') && document.querySelector('main').children.length > 0 && !document.querySelector('main .loading')`)
}

// route changes the hash without reloading the page.
func (b *browser) route(route string) {
	b.t.Helper()
	b.do("going to "+route, chromedp.Evaluate[chromedp.Void](`location.hash = `+jsString(route)))
	b.waitFor("the page "+route, `!document.querySelector('main .loading')`)
}

// fill types value into an input as a user would: it fires input events.
func (b *browser) fill(selector, value string) {
	b.t.Helper()
	b.do("filling "+selector, chromedp.Evaluate[chromedp.Void](`(() => {
		const el = document.querySelector(`+jsString(selector)+`);
		el.value = `+jsString(value)+`;
		el.dispatchEvent(new Event('input', { bubbles: true }));
	})()`))
}

// screenshot saves the whole page as test/artifacts/ui/<name>.png.
func (b *browser) screenshot(name string) { b.saveScreenshot(name, chromedp.FullScreenshot(100)) }

// screenshotViewport saves what a 1280×720 screen shows (a modal dialog
// covers only that).
func (b *browser) screenshotViewport(name string) {
	b.saveScreenshot(name, chromedp.CaptureScreenshot())
}

func (b *browser) saveScreenshot(name string, capture chromedp.Action[[]byte]) {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, uiStepTimeout)
	defer cancel()
	png, err := chromedp.Run(ctx, capture)
	if err != nil {
		b.t.Fatalf("screenshot %s: %v", name, err)
	}
	if err := os.MkdirAll(uiArtifacts, 0o755); err != nil {
		b.t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(uiArtifacts, name+".png"), png, 0o644); err != nil {
		b.t.Fatal(err)
	}
}

func jsString(s string) string { return fmt.Sprintf("%q", s) }

// css is a shorthand for a CSS selector.
func css(s string) chromedp.CSS { return chromedp.CSS(s) }

// uiBase is the base URL of the UI: serve registers it on the admin
// listener, next to the API.
func uiBase(addrs listening) string { return "http://" + addrs.Admin }

func adminToken(t *testing.T, claims auth.MintClaims) string {
	t.Helper()
	claims.TTL = time.Hour
	tok, err := auth.Mint([]byte(testSecret), claims)
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

// signIn pastes a token on the sign-in page.
func (b *browser) signIn(tok, who string) {
	b.t.Helper()
	b.open("")
	b.do("the sign-in form", chromedp.WaitVisible(css(`textarea[name="token"]`)))
	b.screenshot("signin")
	if link := b.eval(`document.querySelector('form.signin a.button')?.href || ''`); link != b.loginURL {
		b.t.Errorf("the sign-in page links to %q, want the configured admin.login_url %q", link, b.loginURL)
	}
	b.do("signing in",
		chromedp.SetValue(css(`textarea[name="token"]`), tok),
		chromedp.Click(css(`form.signin button[type="submit"]`)))
	b.waitFor("the signed-in user", `document.getElementById('who-text').textContent.includes(`+jsString(who)+`)`)
}

func TestUIPlatformAdminManagesOrgsAndSeesAuditPoliciesAndPools(t *testing.T) {
	chrome := chromiumPath(t)
	ctx, cancel := context.WithTimeout(context.Background(), 6*time.Minute)
	defer cancel()
	e := startRegistryEnv(ctx, t)
	e.cfg.Audit.DSN = e.control
	e.cfg.Audit.SpoolDir = t.TempDir()
	e.cfg.Admin.LoginURL = "https://idp.example.test/authorize?client_id=pgtenant"
	e.cli("create", "globex", "--name", "Globex")
	e.cli("create", "initech", "--name", "Initech")
	// A tenant table whose RLS is enabled but not forced and has no policy.
	if err := e.c.ExecIn(ctx, "app", `
		CREATE TABLE broken_notes (id bigint PRIMARY KEY, org_id text NOT NULL, body text);
		ALTER TABLE broken_notes ENABLE ROW LEVEL SECURITY;
		GRANT SELECT ON broken_notes TO shop_app;`); err != nil {
		t.Fatal(err)
	}
	// 10,000 more orgs: the list pages and searches on the server.
	if err := e.c.ExecIn(ctx, "app", `
		INSERT INTO tenancy.orgs (id, slug, name, created_by, updated_by)
		SELECT 'org-' || lpad(i::text, 5, '0'), 'org-' || lpad(i::text, 5, '0'), 'Company ' || i, 'seed', 'seed'
		FROM generate_series(1, 10000) AS i`); err != nil {
		t.Fatal(err)
	}
	addrs := e.serve(ctx)
	b := newBrowser(ctx, t, chrome, uiBase(addrs))
	b.loginURL = e.cfg.Admin.LoginURL
	b.signIn(adminToken(t, auth.MintClaims{Subject: "ops@example.test", Roles: []string{"platform_admin"}}), "ops@example.test")

	// The token never reaches a cookie or the address bar.
	if got := b.eval(`document.cookie + '|' + location.href`); strings.Contains(got, "eyJ") {
		t.Fatalf("the token is in a cookie or the URL: %s", got)
	}

	// Create an org in the list page.
	b.waitFor("the org list", `document.querySelector('tr[data-org="globex"]')`)
	b.do("creating acme",
		chromedp.Click(css(`details.create summary`)),
		chromedp.SetValue(css(`form.inline-form input[name="id"]`), "acme"),
		chromedp.SetValue(css(`form.inline-form input[name="name"]`), "Acme Corp"),
		chromedp.Click(css(`form.inline-form button[type="submit"]`)))
	b.waitFor("acme in the list", `document.querySelector('tr[data-org="acme"]')`)
	b.do("closing the form", chromedp.Click(css(`details.create summary`)))
	b.screenshot("organizations")
	b.waitFor("the page count", `document.querySelector('.pager-label').textContent === '1–50 of 10003'`)
	b.do("the next page", chromedp.Click(css(`.pager button:last-child`)))
	b.waitFor("the second page", `document.querySelector('tbody tr[data-org]')?.dataset.org === 'org-00048'`)
	b.fill(`input[name="search"]`, "company 9999")
	b.waitFor("the search result", `[...document.querySelectorAll('tr[data-org]')].map(r => r.dataset.org).join() === 'org-09999'`)
	b.fill(`input[name="search"]`, "")
	b.waitFor("the whole list again", `document.querySelector('.pager-label').textContent === '1–50 of 10003'`)

	conn := e.connect(ctx, addrs, "acme")
	psql := startPsql(ctx, t, addrs, clientToken(t, "acme", "alice"))

	// Turn a flag on in the settings page; the tenant's SQL reads it.
	b.route("#/orgs/acme")
	b.do("adding the flag beta",
		chromedp.WaitVisible(css(`form.settings`)),
		chromedp.SetValue(css(`input[name="new-flag"]`), "beta"),
		chromedp.Click(css(`button[name="add-flag"]`)))
	b.waitFor("the beta toggle", `document.querySelector('input[name="flag-beta"]')`)
	b.do("saving", chromedp.Click(css(`form.settings button[type="submit"]`)))
	b.waitFor("the save confirmation", `document.querySelector('form.settings .msg.ok')`)
	within(t, 30*time.Second, "the flag in app.org_flags", func() bool {
		return strings.Contains(strings.ReplaceAll(flags(ctx, conn), " ", ""), `"beta":true`)
	})
	// Toggle it off.
	b.do("turning beta off", chromedp.Click(css(`input[name="flag-beta"]`)), chromedp.Click(css(`form.settings button[type="submit"]`)))
	within(t, 30*time.Second, "beta off in app.org_flags", func() bool {
		return strings.Contains(strings.ReplaceAll(flags(ctx, conn), " ", ""), `"beta":false`)
	})
	b.screenshot("tenant-settings")

	// The API's validation message shows next to the field it names.
	b.do("saving a pool of size 0",
		chromedp.SetValue(css(`input[name="pool_size"]`), "0"),
		chromedp.Click(css(`form.settings button[type="submit"]`)))
	b.waitFor("the message next to pool size", `document.getElementById(document.querySelector('input[name="pool_size"]').id + '-err').textContent.includes('pool.size')`)
	b.do("clearing pool size", chromedp.SetValue(css(`input[name="pool_size"]`), ""))

	// Another admin saves meanwhile: the UI says so and keeps the edits.
	e.cli("update", "acme", "--name", "Acme by someone else")
	b.do("saving a stale version",
		chromedp.SetValue(css(`form.settings input[name="name"]`), "Acme edited in the UI"),
		chromedp.Click(css(`form.settings button[type="submit"]`)))
	b.waitFor("the conflict message", `(document.querySelector('form.settings .msg.conflict')||{}).textContent?.toLowerCase().includes('another admin saved first')`)
	if got := b.eval(`document.querySelector('form.settings input[name="name"]').value`); got != "Acme edited in the UI" {
		t.Fatalf("the edit was lost after a conflict: name is %q", got)
	}
	if out := e.cli("get", "acme"); !strings.Contains(out, "Acme by someone else") {
		t.Fatalf("the other admin's change was overwritten:\n%s", out)
	}

	// Suspend acme from the list, through the confirmation dialog; its live
	// session ends.
	b.route("#/orgs")
	b.do("suspending acme", chromedp.Click(css(`button[aria-label="Suspend acme"]`)))
	b.waitFor("the confirmation dialog naming acme", `document.querySelector('dialog[open] .org-id')?.textContent === 'acme'`)
	b.do("confirming", chromedp.Click(css(`dialog[open] button[type="submit"]`)))
	b.waitFor("acme suspended", `document.querySelector('tr[data-org="acme"] .badge-suspended')`)
	within(t, 30*time.Second, "the end of acme's live session", func() bool {
		_, err := conn.Exec(ctx, "SELECT 1")
		if err != nil {
			t.Logf("after the suspension in the UI, acme's session got: %v", err)
		}
		return err != nil
	})
	// The interactive psql session too: its next statement finds the
	// connection ended with the reason.
	psql.send("SELECT 1;")
	within(t, 30*time.Second, "the end of acme's psql session", func() bool {
		return strings.Contains(psql.out.String(), "tenant acme was suspended")
	})

	// Resuming lets acme in again.
	b.do("resuming acme", chromedp.Click(css(`button[aria-label="Resume acme"]`)))
	b.waitFor("the resume dialog naming acme", `document.querySelector('dialog[open] .org-id')?.textContent === 'acme'`)
	b.do("confirming", chromedp.Click(css(`dialog[open] button[type="submit"]`)))
	b.waitFor("acme active", `document.querySelector('tr[data-org="acme"] .badge-active')`)
	within(t, 30*time.Second, "a login of acme after the resume", func() bool {
		c, err := connectAs(ctx, addrs, clientToken(t, "acme", "alice"))
		if err == nil {
			c.Close(ctx)
		}
		return err == nil
	})

	// Deprovisioning says it is irreversible and needs the org id typed.
	b.do("deprovisioning initech", chromedp.Click(css(`button[aria-label="Deprovision initech"]`)))
	b.waitFor("the irreversible warning", `document.querySelector('dialog[open]')?.textContent.includes('irreversible')`)
	if got := b.eval(`String(document.querySelector('dialog[open] button[type="submit"]').disabled)`); got != "true" {
		t.Fatalf("deprovisioning can be confirmed without typing the org id (disabled = %s)", got)
	}
	b.fill(`dialog[open] input[name="confirm-id"]`, "initech")
	b.screenshotViewport("confirm-deprovision")
	b.do("confirming", chromedp.Click(css(`dialog[open] button[type="submit"]`)))
	b.waitFor("initech deprovisioned", `document.querySelector('tr[data-org="initech"] .badge-deprovisioned')`)

	// A blocked statement shows in the audit log.
	globex := e.connect(ctx, addrs, "globex")
	if _, err := globex.Exec(ctx, "SET app.current_org = 'initech'"); testpg.SQLState(err) != "42501" {
		t.Fatalf("SET app.current_org as a tenant: %v", err)
	}
	b.route("#/audit")
	b.waitFor("the blocked statement in the audit log", `[...document.querySelectorAll('table.audit tbody tr')].some(r =>
		r.textContent.includes('globex') && r.textContent.includes('blocked_statement'))`)
	b.screenshot("audit-log")

	// CSV export: fetched with the bearer token and handed to the browser as
	// a Blob; the download itself is held back.
	b.do("capturing downloads", chromedp.Evaluate[chromedp.Void](`
		URL.createObjectURL = (blob) => { window.exported = blob; return 'blob:held'; };
		HTMLAnchorElement.prototype.click = function () { window.exportedName = this.download; };`))
	b.do("exporting CSV", chromedp.Click(css(`main button[data-export="csv"]`)))
	b.waitFor("the CSV download", `window.exportedName === 'pgtenant-audit.csv'`)
	evalCtx, cancelEval := context.WithTimeout(b.ctx, uiStepTimeout)
	csv, err := chromedp.Run(evalCtx, chromedp.Evaluate[string](`window.exported.text()`, chromedp.EvalAwaitPromise))
	cancelEval()
	if err != nil || !strings.Contains(csv, "blocked_statement") || !strings.Contains(csv, "globex") {
		t.Fatalf("the exported CSV (%v):\n%s", err, csv)
	}
	b.do("exporting JSON", chromedp.Click(css(`main button[data-export="json"]`)))
	b.waitFor("the JSON download", `window.exportedName === 'pgtenant-audit.json'`)
	evalCtx, cancelEval = context.WithTimeout(b.ctx, uiStepTimeout)
	exported, err := chromedp.Run(evalCtx, chromedp.Evaluate[string](`window.exported.text()`, chromedp.EvalAwaitPromise))
	cancelEval()
	var page struct{ Events []audit.Event }
	if err == nil {
		err = json.Unmarshal([]byte(exported), &page)
	}
	if err != nil || !slices.ContainsFunc(page.Events, func(ev audit.Event) bool { return ev.Reason == "blocked_statement" && ev.Org == "globex" }) {
		t.Fatalf("the exported JSON (%v):\n%s", err, exported)
	}

	// The policy viewer flags the broken table.
	b.route("#/policies")
	b.waitFor("broken_notes flagged", `document.querySelector('section.table-card.state-fail[data-table$="broken_notes"]')`)
	b.waitFor("the SQL that fixes it", `document.querySelector('section.table-card.state-fail[data-table$="broken_notes"] .fix pre')`)
	// Copy SQL puts exactly the fix on the clipboard (held back in the page).
	b.do("copying the fix", chromedp.Evaluate[chromedp.Void](`
		Object.defineProperty(navigator, 'clipboard', { value: { writeText: async (t) => { window.copied = t; } } });
		document.querySelector('section.table-card.state-fail[data-table$="broken_notes"] .fix button').click();`))
	b.waitFor("the fix on the clipboard", `window.copied && window.copied === document.querySelector('section.table-card.state-fail[data-table$="broken_notes"] .fix pre').textContent`)
	b.screenshot("policies")

	// Pools: live figures and the chart.
	b.route("#/pools")
	b.waitFor("globex's pool", `document.querySelector('tr[data-tenant="globex"]')`)
	b.waitFor("a chart with two samples", `[...document.querySelectorAll('svg.linechart polyline')].some(p => p.getAttribute('points').split(' ').length >= 2)`)
	b.screenshot("pools")

	// Signing out forgets the token.
	b.do("signing out", chromedp.Click(css(`#signout`)))
	b.waitFor("the sign-in page", `document.querySelector('textarea[name="token"]') && !sessionStorage.length`)
}

func TestUITenantAdminSeesOnlyItsOwnOrg(t *testing.T) {
	chrome := chromiumPath(t)
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	e := startRegistryEnv(ctx, t)
	e.cli("create", "acme", "--name", "Acme Corp")
	e.cli("create", "globex", "--name", "Globex")
	addrs := e.serve(ctx)
	b := newBrowser(ctx, t, chrome, uiBase(addrs))

	// The identity provider's redirect: the token arrives in the fragment,
	// moves to sessionStorage and leaves the address bar.
	tok := adminToken(t, auth.MintClaims{Org: "acme", Subject: "alice@acme.test", Roles: []string{"admin"}})
	b.open("#token=" + tok)
	b.waitFor("the signed-in tenant admin", `document.getElementById('who-text').textContent.includes('admin of acme')`)
	if href := b.eval(`location.href`); strings.Contains(href, tok) {
		t.Fatalf("the token stayed in the address bar: %s", href)
	}
	b.waitFor("the list", `document.querySelector('tr[data-org]')`)
	if got := b.eval(`[...document.querySelectorAll('tr[data-org]')].map(r => r.dataset.org).join(',')`); got != "acme" {
		t.Fatalf("a tenant admin's list shows %q, want acme only", got)
	}
	if got := b.eval(`[...document.querySelectorAll('#nav a')].filter(a => !a.hidden).map(a => a.textContent).join(',')`); strings.Contains(got, "Pools") || strings.Contains(got, "RLS") {
		t.Errorf("platform-only pages are offered to a tenant admin: %s", got)
	}

	b.route("#/orgs/globex")
	b.waitFor("the not-allowed message", `document.querySelector('main .denied')?.textContent.includes('Not allowed')`)
	b.screenshot("not-allowed")

	// Its own org: settings editable, pool overrides not.
	b.route("#/orgs/acme")
	b.waitFor("acme's settings", `document.querySelector('form.settings')`)
	if got := b.eval(`String(document.querySelector('input[name="pool_size"]').disabled) + ',' + String(document.querySelector('input[name="name"]').disabled)`); got != "true,false" {
		t.Errorf("pool size disabled, name disabled = %s; want true,false", got)
	}
	b.do("adding a member",
		chromedp.SetValue(css(`input[name="member-subject"]`), "bob@acme.test"),
		chromedp.Click(css(`form.row button[type="submit"]`)))
	b.waitFor("the new member", `[...document.querySelectorAll('td')].some(td => td.textContent === 'bob@acme.test')`)
	if out := e.cli("members", "list", "acme"); !strings.Contains(out, "bob@acme.test") {
		t.Errorf("the member added in the UI is not in the registry:\n%s", out)
	}
	b.do("making bob an admin",
		chromedp.SetValue(css(`select[aria-label="Role of bob@acme.test"]`), "admin"),
		chromedp.Click(css(`button[aria-label="Save bob@acme.test"]`)))
	within(t, 30*time.Second, "bob's new role in the registry", func() bool {
		return strings.Contains(e.cli("members", "list", "acme"), `"admin"`)
	})
	// The save reloads the members table: click whichever Remove button is
	// there, in one step in the page.
	b.do("removing bob", chromedp.Evaluate[chromedp.Void](`window.confirm = () => true;
		document.querySelector('button[aria-label="Remove bob@acme.test"]').click()`))
	b.waitFor("no members", `document.querySelector('td.empty')?.textContent === 'No members.'`)
	if out := e.cli("members", "list", "acme"); strings.Contains(out, "bob@acme.test") {
		t.Errorf("the member removed in the UI is still in the registry:\n%s", out)
	}

	// After signing out, a link to the org asks for a token and then
	// opens the org.
	b.do("signing out", chromedp.Click(css(`#signout`)))
	b.waitFor("the sign-in page", `document.querySelector('textarea[name="token"]') && !sessionStorage.length`)
	b.open("#/orgs/acme")
	b.do("signing in again",
		chromedp.SetValue(css(`textarea[name="token"]`), tok),
		chromedp.Click(css(`form.signin button[type="submit"]`)))
	b.waitFor("acme's page after signing in", `document.querySelector('form.settings input[name="name"]')?.value === 'Acme Corp'`)
}

// TestUIResponsesCarrySecurityHeaders checks the headers without a browser.
func TestUIResponsesCarrySecurityHeaders(t *testing.T) {
	mux := http.NewServeMux()
	admin.RegisterUI(mux, admin.UIConfig{LoginURL: "https://idp.example/login"})
	srv := httptest.NewServer(mux)
	defer srv.Close()
	client := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	for _, path := range []string{"/ui/", "/ui/app.js", "/ui/config.json", "/"} {
		res, err := client.Get(srv.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		res.Body.Close()
		h := res.Header
		if csp := h.Get("Content-Security-Policy"); !strings.Contains(csp, "default-src 'self'") || strings.Contains(csp, "unsafe") {
			t.Errorf("%s: Content-Security-Policy %q", path, csp)
		}
		for k, want := range map[string]string{"X-Content-Type-Options": "nosniff", "Referrer-Policy": "no-referrer", "X-Frame-Options": "DENY"} {
			if got := h.Get(k); got != want {
				t.Errorf("%s: %s = %q, want %q", path, k, got, want)
			}
		}
		if path == "/" && (res.StatusCode != http.StatusFound || h.Get("Location") != "/ui/") {
			t.Errorf("/ answers %d to %q, want a redirect to /ui/", res.StatusCode, h.Get("Location"))
		}
	}
}

// psqlSession is an interactive psql connected through pgtenant, fed on
// stdin like a person at a terminal.
type psqlSession struct {
	stdin io.WriteCloser
	out   *testpg.SyncBuffer
}

func startPsql(ctx context.Context, t *testing.T, addrs listening, token string) *psqlSession {
	t.Helper()
	host, port, _ := net.SplitHostPort(addrs.Client)
	cmd := exec.CommandContext(ctx, "psql", "-X", "-v", "ON_ERROR_STOP=0",
		"host="+host+" port="+port+" dbname=app user=app sslmode=disable")
	cmd.Env = append(os.Environ(), "PGPASSWORD="+token)
	s := &psqlSession{out: &testpg.SyncBuffer{}}
	cmd.Stdout, cmd.Stderr = s.out, s.out
	var err error
	if s.stdin, err = cmd.StdinPipe(); err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatalf("psql: %v", err)
	}
	t.Cleanup(func() { s.stdin.Close(); _ = cmd.Wait() })
	s.send("SELECT 'psql' || ' ready';")
	within(t, 30*time.Second, "psql connected", func() bool { return strings.Contains(s.out.String(), "psql ready") })
	return s
}

func (s *psqlSession) send(sql string) { _, _ = io.WriteString(s.stdin, sql+"\n") }
