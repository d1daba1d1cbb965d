package admin

import (
	"context"
	_ "embed"
	"errors"
	"net/http"
	"strings"
	"time"

	"github.com/rs/zerolog"

	"github.com/pgtenant/pgtenant/audit"
	"github.com/pgtenant/pgtenant/auth"
	"github.com/pgtenant/pgtenant/pgerr"
	"github.com/pgtenant/pgtenant/poolmgr"
	"github.com/pgtenant/pgtenant/tenants"
)

// APIPrefix is where Register mounts the admin API.
const APIPrefix = "/api/v1"

// Roles the admin API knows.
const (
	// RolePlatformAdmin may do everything, in every org.
	RolePlatformAdmin = "platform_admin"
	// RoleOrgAdmin, in a token that names an org, makes the caller an admin
	// of that org. Org membership with this role does the same.
	RoleOrgAdmin = tenants.RoleAdmin
)

// Limits of the admin API.
const (
	// MaxRequestBody is the largest request body read, in bytes.
	MaxRequestBody = 1 << 20
	// requestTimeout bounds the database work of one request.
	requestTimeout = 30 * time.Second
)

// openAPISpec describes every route Register mounts.
//
//go:embed openapi.yaml
var openAPISpec []byte

// AdminVerifier checks bearer tokens; *auth.Verifier implements it.
type AdminVerifier interface {
	VerifyAdmin(token string, rolesClaim string) (auth.AdminIdentity, error)
}

var _ AdminVerifier = (*auth.Verifier)(nil)

// API is the admin HTTP API under APIPrefix: tenant orgs, their members and
// history, the audit log and live pool statistics. Fields are set before
// Register and not changed afterwards; the API is then safe for concurrent
// use. It owns nothing: the store, the audit querier and the functions are
// the caller's to close.
//
// Who may do what (see openapi.yaml for the per-route list):
//   - a platform admin (RolePlatformAdmin in the token's roles) may do
//     everything;
//   - an org admin (RoleOrgAdmin in a token naming the org, or a subject
//     that is an active admin member of the org) may read its org, its
//     history, pools and audit events, change its name, settings (except
//     max_connections) and flags, and manage its members. Pool overrides,
//     status changes, creating orgs and the pools of all tenants are for
//     platform admins. A token that names an org acts for that org only.
//   - any valid token may read /me; everything else is 403 for it.
type API struct {
	// Store holds the tenant orgs.
	Store *tenants.Store
	// Verifier checks bearer tokens.
	Verifier AdminVerifier
	// RolesClaim names the token claim holding the caller's roles; empty
	// means auth.DefaultRolesClaim.
	RolesClaim string
	// Audit queries the control database for /audit/events; nil makes that
	// endpoint answer 503.
	Audit audit.Querier
	// Pools returns live pool statistics; nil means none.
	Pools func() []poolmgr.PoolStat
	// Sessions returns the live client sessions per tenant id; nil means
	// none.
	Sessions func() map[string]int
	// Policies reads databases' Row-Level Security state for the policy
	// viewer; nil makes GET /policies answer 503.
	Policies PolicyInspector
	// WaitP99 returns the 99th percentile of each tenant's pool waits, in
	// seconds; nil means none.
	WaitP99 func() map[string]float64
	// Log receives one info event per change (actor, tenant, action) and
	// the internal errors. Tokens never reach it.
	Log zerolog.Logger
}

// access says who may call a route before its handler runs; handlers of
// accessAnyAdmin routes narrow it to the caller's org themselves.
type access int

const (
	accessPublic        access = iota // no token needed
	accessAuthenticated               // any valid token
	accessAnyAdmin                    // a platform admin, or an org admin: the handler calls requireOrgAdmin for the org it serves
	accessOrgAdmin                    // a platform admin, or an admin of the org in the path's {id}
	accessPlatform                    // platform admins only
)

// route is one endpoint of the API.
type route struct {
	method string
	path   string // under APIPrefix, with {wildcards}
	access access
	handle func(w http.ResponseWriter, r *http.Request, c *caller) error
}

func (a *API) routes() []route {
	return []route{
		{http.MethodGet, "/openapi.yaml", accessPublic, a.openAPI},
		{http.MethodGet, "/me", accessAuthenticated, a.me},
		{http.MethodGet, "/orgs", accessAnyAdmin, a.listOrgs},
		{http.MethodPost, "/orgs", accessPlatform, a.createOrg},
		{http.MethodGet, "/orgs/{id}", accessOrgAdmin, a.getOrg},
		{http.MethodPatch, "/orgs/{id}", accessOrgAdmin, a.patchOrg},
		{http.MethodPost, "/orgs/{id}/suspend", accessPlatform, a.setStatus(tenants.StatusSuspended, "suspend")},
		{http.MethodPost, "/orgs/{id}/resume", accessPlatform, a.setStatus(tenants.StatusActive, "resume")},
		{http.MethodPost, "/orgs/{id}/deprovision", accessPlatform, a.setStatus(tenants.StatusDeprovisioned, "deprovision")},
		{http.MethodGet, "/orgs/{id}/history", accessOrgAdmin, a.history},
		{http.MethodGet, "/orgs/{id}/members", accessOrgAdmin, a.listMembers},
		{http.MethodPut, "/orgs/{id}/members/{subject}", accessOrgAdmin, a.putMember},
		{http.MethodDelete, "/orgs/{id}/members/{subject}", accessOrgAdmin, a.deleteMember},
		{http.MethodGet, "/orgs/{id}/pools", accessOrgAdmin, a.orgPools},
		{http.MethodGet, "/pools", accessPlatform, a.allPools},
		{http.MethodGet, "/audit/events", accessAnyAdmin, a.auditEvents},
		{http.MethodGet, "/policies", accessPlatform, a.policyViewer},
	}
}

// Register mounts the API on mux under APIPrefix. Requests under the prefix
// that match no route get a JSON 404 or 405.
func (a *API) Register(mux *http.ServeMux) {
	own := http.NewServeMux() // to tell 405 from 404 for the catch-all
	for _, rt := range a.routes() {
		pattern := rt.method + " " + APIPrefix + rt.path
		h := a.serve(rt)
		mux.Handle(pattern, h)
		own.Handle(pattern, h)
	}
	mux.Handle(APIPrefix+"/", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		a.noRoute(w, r, own)
	}))
}

// caller is the verified identity of a request.
type caller struct {
	auth.AdminIdentity
	platform bool
}

// serve wraps a route: headers, authentication, the access check and the
// translation of the handler's error.
func (a *API) serve(rt route) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h.Set("Cache-Control", "no-store")
		h.Set("X-Content-Type-Options", "nosniff")
		ctx, cancel := context.WithTimeout(r.Context(), requestTimeout)
		defer cancel()
		r = r.WithContext(ctx)
		var c *caller
		if rt.access != accessPublic {
			var err error
			if c, err = a.authenticate(w, r); err != nil {
				a.writeError(w, r, err)
				return
			}
			if err := a.authorize(r, rt.access, c); err != nil {
				a.writeError(w, r, err)
				return
			}
		}
		if err := rt.handle(w, r, c); err != nil {
			a.writeError(w, r, err)
		}
	})
}

// authenticate verifies the bearer token. Its errors are 401s; the token is
// never logged or echoed.
func (a *API) authenticate(w http.ResponseWriter, r *http.Request) (*caller, error) {
	header := r.Header.Get("Authorization")
	scheme, token, _ := strings.Cut(strings.TrimSpace(header), " ")
	if header == "" || !strings.EqualFold(scheme, "Bearer") || strings.TrimSpace(token) == "" {
		w.Header().Set("WWW-Authenticate", `Bearer realm="pgtenant-admin"`)
		return nil, &apiError{http.StatusUnauthorized, "unauthenticated",
			"this endpoint needs a bearer token: send Authorization: Bearer <JWT>"}
	}
	id, err := a.Verifier.VerifyAdmin(token, a.RolesClaim)
	if err != nil {
		w.Header().Set("WWW-Authenticate", `Bearer realm="pgtenant-admin", error="invalid_token"`)
		message, reason := "the bearer token was refused", "invalid_token"
		var pe *pgerr.Error
		if errors.As(err, &pe) {
			message, reason = "the bearer token was refused: "+pe.Message, pe.Reason
		}
		a.Log.Info().Str("reason", reason).Str("path", r.URL.Path).Msg("admin API: bearer token refused")
		return nil, &apiError{http.StatusUnauthorized, "invalid_token", message}
	}
	return &caller{AdminIdentity: id, platform: id.HasRole(RolePlatformAdmin)}, nil
}

// authorize applies the route's access rule.
func (a *API) authorize(r *http.Request, acc access, c *caller) error {
	switch {
	case acc == accessAuthenticated || c.platform:
		return nil
	case acc == accessPlatform:
		return forbidden("only platform admins (role %q) may do this", RolePlatformAdmin)
	case acc == accessOrgAdmin:
		return a.requireOrgAdmin(r.Context(), c, r.PathValue("id"))
	case acc == accessAnyAdmin:
		return nil // the handler knows which org, and calls requireOrgAdmin
	}
	return forbidden("this endpoint is not available to this token")
}

// requireOrgAdmin returns a 403 unless c administers org.
func (a *API) requireOrgAdmin(ctx context.Context, c *caller, org string) error {
	if c.platform {
		return nil
	}
	if org == "" {
		return forbidden("the token names no org and has no role %q; name the org (an org admin's token names it in its org claim)", RolePlatformAdmin)
	}
	if c.Org != "" && c.Org != org {
		return forbidden("this token is for org %q; it may not act on org %q", c.Org, org)
	}
	ok, err := a.isOrgAdmin(ctx, c, org)
	if err != nil {
		return err
	}
	if !ok {
		return forbidden("subject %q is not an admin of org %q: the token needs role %q and the org in its org claim, "+
			"or the subject must be an active member of the org with role %q", c.Subject, org, RoleOrgAdmin, RoleOrgAdmin)
	}
	return nil
}

// isOrgAdmin reports whether c is an admin of org by its token or by its
// membership; platform admins are not asked about.
func (a *API) isOrgAdmin(ctx context.Context, c *caller, org string) (bool, error) {
	if c.Org != "" && c.Org != org {
		return false, nil
	}
	if c.Org == org && c.HasRole(RoleOrgAdmin) {
		return true, nil
	}
	m, err := a.Store.Member(ctx, org, c.Subject)
	switch {
	case errors.Is(err, tenants.ErrNotFound), errors.Is(err, tenants.ErrInvalid):
		return false, nil
	case err != nil:
		return false, err
	}
	return m.Role == tenants.RoleAdmin && m.Status == tenants.MemberActive, nil
}

// logChange records a change made through the API.
func (a *API) logChange(c *caller, org, action string) *zerolog.Event {
	return a.Log.Info().Str("actor", c.Subject).Str("tenant", org).Str("action", action)
}

func (a *API) openAPI(w http.ResponseWriter, _ *http.Request, _ *caller) error {
	w.Header().Set("Content-Type", "application/yaml")
	_, err := w.Write(openAPISpec)
	return err
}
