package admin

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/rs/zerolog"

	"github.com/pgtenant/pgtenant/auth"
	"github.com/pgtenant/pgtenant/policies"
	"github.com/pgtenant/pgtenant/poolmgr"
	"github.com/pgtenant/pgtenant/tenants"
	"github.com/pgtenant/pgtenant/test/testpg"
)

func TestMain(m *testing.M) { testpg.Main(m) }

// testSecret signs every test token (HS256).
var testSecret = []byte("admin-api-test-secret-of-at-least-32-bytes")

// rolePassword is the password of the roles the tests create.
const rolePassword = "admin-api-test-password"

var contextKey = policies.ContextKey{ID: "primary", Secret: bytes.Repeat([]byte("k"), 32)}

// testName derives an identifier of the test's own from its name.
func testName(t testing.TB) string { return testpg.Name(t, "adm") }

// fixture is an API served by an httptest server over a control database of
// the test's own, with the tenancy schema installed by its owner role.
type fixture struct {
	t        *testing.T
	api      *API
	srv      *httptest.Server
	pool     *pgxpool.Pool
	store    *tenants.Store
	log      *testpg.SyncBuffer
	pools    []poolmgr.PoolStat
	sessions map[string]int
	dsn      string // the control database, as its owner
}

// newFixture creates the database, installs the schema, and serves the API.
// opts may adjust the API before it is registered.
func newFixture(t *testing.T, opts ...func(*API)) *fixture {
	t.Helper()
	ctx := testpg.Context(t)
	c := testpg.Cluster(t)
	base := testName(t)
	owner, app := base+"_owner", base+"_app"
	for _, role := range []string{owner, app} {
		if err := c.CreateRole(ctx, role, rolePassword); err != nil {
			t.Fatal(err)
		}
	}
	if err := c.Exec(ctx, "CREATE DATABASE "+ident(base)+" OWNER "+ident(owner)); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if err := c.Exec(ctx, "DROP DATABASE IF EXISTS "+ident(base)+" WITH (FORCE)"); err != nil {
			t.Errorf("dropping %s: %v", base, err)
		}
		for _, role := range []string{app, owner} {
			if err := c.Exec(ctx, "DROP ROLE IF EXISTS "+ident(role)); err != nil {
				t.Errorf("dropping %s: %v", role, err)
			}
		}
	})
	dsn := c.DSN(owner, rolePassword, base)
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	err = policies.Install(ctx, conn, policies.InstallOptions{Keys: []policies.ContextKey{contextKey}, AppRoles: []string{app}})
	conn.Close(context.Background())
	if err != nil {
		t.Fatalf("Install: %v", err)
	}
	pool, err := pgxpool.New(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	verifier, err := auth.NewVerifier(auth.JWTConfig{Secret: string(testSecret)}, nil)
	if err != nil {
		t.Fatal(err)
	}
	f := &fixture{t: t, pool: pool, store: tenants.NewStore(pool), log: &testpg.SyncBuffer{}}
	f.api = &API{
		Store:    f.store,
		Verifier: verifier,
		Audit:    pool,
		Pools:    func() []poolmgr.PoolStat { return f.pools },
		Sessions: func() map[string]int { return f.sessions },
		Policies: DatabasePolicies{DSN: dsn, Options: policies.VerifyOptions{AppRole: app}},
		Log:      zerolog.New(f.log),
	}
	f.dsn = dsn
	for _, o := range opts {
		o(f.api)
	}
	mux := http.NewServeMux()
	f.api.Register(mux)
	f.srv = httptest.NewServer(mux)
	t.Cleanup(func() {
		f.srv.Close()
		pool.Close()
	})
	return f
}

func ident(s string) string { return pgx.Identifier{s}.Sanitize() }

// token mints an HS256 token for sub with the claims given (org_id, roles
// ...), valid for an hour; a nil value drops the claim.
func token(t testing.TB, sub string, extra map[string]any) string {
	t.Helper()
	c := jwt.MapClaims{"sub": sub, "iat": time.Now().Add(-time.Minute).Unix(), "exp": time.Now().Add(time.Hour).Unix()}
	for k, v := range extra {
		if v == nil {
			delete(c, k)
			continue
		}
		c[k] = v
	}
	s, err := jwt.NewWithClaims(jwt.SigningMethodHS256, c).SignedString(testSecret)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// Tokens of the callers the tests use. acme and globex are orgs.
func platformToken(t testing.TB) string {
	return token(t, "root", map[string]any{"roles": []any{RolePlatformAdmin}})
}
func acmeAdminToken(t testing.TB) string {
	return token(t, "alice", map[string]any{"org_id": "acme", "roles": []any{"admin"}})
}
func globexAdminToken(t testing.TB) string {
	return token(t, "gina", map[string]any{"org_id": "globex", "roles": "admin"})
}
func acmeMemberToken(t testing.TB) string {
	return token(t, "mel", map[string]any{"org_id": "acme"})
}
func expiredToken(t testing.TB) string {
	return token(t, "root", map[string]any{"roles": []any{RolePlatformAdmin},
		"iat": time.Now().Add(-2 * time.Hour).Unix(), "exp": time.Now().Add(-time.Hour).Unix()})
}

// response is an answer read whole.
type response struct {
	status int
	header http.Header
	body   []byte
}

// json decodes the body into v, failing the test if it is not JSON.
func (r response) json(t testing.TB, v any) {
	t.Helper()
	if err := json.Unmarshal(r.body, v); err != nil {
		t.Fatalf("body %q: %v", r.body, err)
	}
}

// errorCode returns the error code and message of an error answer.
func (r response) errorCode(t testing.TB) (string, string) {
	t.Helper()
	var e errorBody
	r.json(t, &e)
	return e.Error.Code, e.Error.Message
}

// do sends a request with tok as bearer token ("" for none); body is
// JSON-encoded unless it is a string or nil. header entries are added.
func (f *fixture) do(method, path, tok string, body any, header ...string) response {
	f.t.Helper()
	var rd io.Reader
	switch b := body.(type) {
	case nil:
	case string:
		rd = strings.NewReader(b)
	default:
		data, err := json.Marshal(b)
		if err != nil {
			f.t.Fatal(err)
		}
		rd = bytes.NewReader(data)
	}
	req, err := http.NewRequestWithContext(testpg.Context(f.t), method, f.srv.URL+path, rd)
	if err != nil {
		f.t.Fatal(err)
	}
	if rd != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if tok != "" {
		req.Header.Set("Authorization", "Bearer "+tok)
	}
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	resp, err := f.srv.Client().Do(req)
	if err != nil {
		f.t.Fatal(err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		f.t.Fatal(err)
	}
	return response{resp.StatusCode, resp.Header, data}
}

// want fails the test unless r has status.
func (f *fixture) want(r response, status int, what string) {
	f.t.Helper()
	if r.status != status {
		f.t.Fatalf("%s: status %d, want %d; body %s", what, r.status, status, r.body)
	}
}

// createOrg creates an org through the store.
func (f *fixture) createOrg(id string) tenants.Org {
	f.t.Helper()
	o, err := f.store.Create(testpg.Context(f.t), "fixture", tenants.NewOrg{ID: id, Name: strings.ToUpper(id[:1]) + id[1:]})
	if err != nil {
		f.t.Fatal(err)
	}
	return o
}

// putMember stores a membership through the store.
func (f *fixture) putMember(org, subject, role, status string) {
	f.t.Helper()
	if _, err := f.store.PutMember(testpg.Context(f.t), "fixture",
		tenants.Member{OrgID: org, Subject: subject, Role: role, Status: status}); err != nil {
		f.t.Fatal(err)
	}
}

// version returns the org's stored version.
func (f *fixture) version(id string) int64 {
	f.t.Helper()
	o, err := f.store.Get(testpg.Context(f.t), id)
	if err != nil {
		f.t.Fatal(err)
	}
	return o.Version
}

// recordAudit inserts audit events as the writer would.
func (f *fixture) recordAudit(events ...auditRow) {
	f.t.Helper()
	for _, e := range events {
		_, err := f.pool.Exec(testpg.Context(f.t),
			`INSERT INTO tenancy.audit_events (at, org, subject, reason, detail, fingerprint) VALUES ($1, NULLIF($2, ''), NULLIF($3, ''), $4, NULLIF($5, ''), NULLIF($6, ''))`,
			e.at, e.org, e.subject, e.reason, e.detail, e.fingerprint)
		if err != nil {
			f.t.Fatal(err)
		}
	}
}

type auditRow struct {
	at                                        time.Time
	org, subject, reason, detail, fingerprint string
}
