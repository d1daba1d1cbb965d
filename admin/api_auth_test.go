package admin

import (
	"net/http"
	"strconv"
	"strings"
	"testing"

	"github.com/golang-jwt/jwt/v5"

	"github.com/pgtenant/pgtenant/poolmgr"
)

// The callers of the authorization matrix.
const (
	asPlatform    = "platform admin"
	asOrgAdmin    = "admin of the org"
	asOtherAdmin  = "admin of another org"
	asMember      = "member"
	asNoToken     = "no token"
	asExpired     = "expired token"
	statusDenied  = http.StatusForbidden
	statusNoLogin = http.StatusUnauthorized
)

var matrixCallers = []string{asPlatform, asOrgAdmin, asOtherAdmin, asMember, asNoToken, asExpired}

// matrixEndpoint is one route of the matrix: the request (built when the
// case runs, for versions and members that have to exist) and the status
// each caller gets.
type matrixEndpoint struct {
	method, path string // path as registered, for the coverage check
	request      func(f *fixture) (url string, body any, header []string)
	allowed      map[string]int // caller -> status; callers not listed get 403 (401 without a valid token)
}

func fixed(url string, body any) func(*fixture) (string, any, []string) {
	return func(*fixture) (string, any, []string) { return url, body, nil }
}

// okFor answers status for the callers listed.
func okFor(status int, callers ...string) map[string]int {
	m := map[string]int{}
	for _, c := range callers {
		m[c] = status
	}
	return m
}

func TestEveryEndpointAnswersEachKindOfCallerAsTheRulesSay(t *testing.T) {
	f := newFixture(t)
	f.createOrg("acme")
	f.createOrg("globex")
	f.putMember("acme", "mel", "member", "active")
	f.pools = []poolmgr.PoolStat{{Key: poolmgr.Key{Database: "app", Tenant: "acme"}, Size: 5, Total: 2, InUse: 1, Idle: 1}}
	tokens := map[string]string{
		asPlatform:   platformToken(t),
		asOrgAdmin:   acmeAdminToken(t),
		asOtherAdmin: globexAdminToken(t),
		asMember:     acmeMemberToken(t),
		asExpired:    expiredToken(t),
	}
	seq := 0
	endpoints := []matrixEndpoint{
		{"GET", "/openapi.yaml", fixed("/openapi.yaml", nil),
			okFor(200, matrixCallers...)},
		{"GET", "/me", fixed("/me", nil),
			okFor(200, asPlatform, asOrgAdmin, asOtherAdmin, asMember)},
		// An admin of another org lists its own org.
		{"GET", "/orgs", fixed("/orgs", nil),
			okFor(200, asPlatform, asOrgAdmin, asOtherAdmin)},
		{"POST", "/orgs", func(*fixture) (string, any, []string) {
			seq++
			return "/orgs", map[string]any{"id": "new-" + strconv.Itoa(seq), "name": "New"}, nil
		}, okFor(201, asPlatform)},
		{"GET", "/orgs/{id}", fixed("/orgs/acme", nil),
			okFor(200, asPlatform, asOrgAdmin)},
		{"PATCH", "/orgs/{id}", func(f *fixture) (string, any, []string) {
			return "/orgs/acme", map[string]any{"name": "Acme Inc"}, []string{"If-Match", etag(f.version("acme"))}
		}, okFor(200, asPlatform, asOrgAdmin)},
		{"GET", "/orgs/{id}/history", fixed("/orgs/acme/history", nil),
			okFor(200, asPlatform, asOrgAdmin)},
		{"GET", "/orgs/{id}/members", fixed("/orgs/acme/members", nil),
			okFor(200, asPlatform, asOrgAdmin)},
		{"PUT", "/orgs/{id}/members/{subject}", fixed("/orgs/acme/members/bob", map[string]any{"role": "member"}),
			okFor(200, asPlatform, asOrgAdmin)},
		{"DELETE", "/orgs/{id}/members/{subject}", func(f *fixture) (string, any, []string) {
			f.putMember("acme", "leaver", "member", "active")
			return "/orgs/acme/members/leaver", nil, nil
		}, okFor(204, asPlatform, asOrgAdmin)},
		{"GET", "/orgs/{id}/pools", fixed("/orgs/acme/pools", nil),
			okFor(200, asPlatform, asOrgAdmin)},
		{"GET", "/pools", fixed("/pools", nil),
			okFor(200, asPlatform)},
		{"GET", "/audit/events", fixed("/audit/events?org=acme", nil),
			okFor(200, asPlatform, asOrgAdmin)},
		{"GET", "/policies", fixed("/policies", nil),
			okFor(200, asPlatform)},
		// Status changes last, in an order that leaves acme usable until the
		// end: suspend, resume, then deprovision.
		{"POST", "/orgs/{id}/suspend", fixed("/orgs/acme/suspend", map[string]any{"reason": "matrix"}),
			okFor(200, asPlatform)},
		{"POST", "/orgs/{id}/resume", fixed("/orgs/acme/resume", nil),
			okFor(200, asPlatform)},
		{"POST", "/orgs/{id}/deprovision", fixed("/orgs/acme/deprovision", nil),
			okFor(200, asPlatform)},
	}

	covered := map[string]bool{}
	for _, ep := range endpoints {
		covered[ep.method+" "+ep.path] = true
		for _, who := range matrixCallers {
			t.Run(ep.method+" "+ep.path+"/"+who, func(t *testing.T) {
				want, ok := ep.allowed[who]
				switch {
				case ok:
				case who == asNoToken || who == asExpired:
					want = statusNoLogin
				default:
					want = statusDenied
				}
				url, body, header := ep.request(f)
				r := f.do(ep.method, APIPrefix+url, tokens[who], body, header...)
				if r.status != want {
					t.Fatalf("status %d, want %d; body %s", r.status, want, r.body)
				}
				if r.status >= 400 {
					code, msg := r.errorCode(t)
					if code == "" || msg == "" {
						t.Errorf("error without code or message: %s", r.body)
					}
				}
				if r.status != statusNoLogin {
					return
				}
				if !strings.HasPrefix(r.header.Get("WWW-Authenticate"), "Bearer") {
					t.Errorf("401 without WWW-Authenticate: Bearer (got %q)", r.header.Get("WWW-Authenticate"))
				}
				if _, msg := r.errorCode(t); who == asExpired && !strings.Contains(msg, "expired") {
					t.Errorf("the message does not say the token expired: %q", msg)
				}
			})
		}
	}
	for _, rt := range f.api.routes() {
		if !covered[rt.method+" "+rt.path] {
			t.Errorf("route %s %s is not in the authorization matrix", rt.method, rt.path)
		}
	}
	// No token ever reaches the log.
	for who, tok := range tokens {
		if strings.Contains(f.log.String(), tok) {
			t.Errorf("the log contains the token of %s", who)
		}
	}
}

func TestAMemberWithTheAdminRoleInTheStoreAdministersItsOrgOnly(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	f.createOrg("acme")
	f.createOrg("globex")
	f.putMember("acme", "sam", "admin", "active")
	f.putMember("acme", "dora", "admin", "disabled")
	f.putMember("acme", "mo", "member", "active")
	sam := token(t, "sam", nil) // names no org: its membership decides
	f.want(f.do("GET", APIPrefix+"/orgs/acme", sam, nil), 200, "admin member reads its org")
	f.want(f.do("PUT", APIPrefix+"/orgs/acme/members/newbie", sam, map[string]any{}), 200, "admin member adds a member")
	f.want(f.do("GET", APIPrefix+"/orgs/globex", sam, nil), 403, "admin member reads another org")
	f.want(f.do("GET", APIPrefix+"/audit/events?org=acme", sam, nil), 200, "admin member reads its org's audit events")
	f.want(f.do("GET", APIPrefix+"/audit/events", sam, nil), 403, "audit events without an org, from a token naming none")
	f.want(f.do("POST", APIPrefix+"/orgs/acme/suspend", sam, nil), 403, "admin member suspends its org")
	f.want(f.do("GET", APIPrefix+"/orgs/acme", token(t, "dora", nil), nil), 403, "disabled admin member")
	f.want(f.do("GET", APIPrefix+"/orgs/acme", token(t, "mo", nil), nil), 403, "plain member")
	// A token that names an org acts for that org only, whatever the
	// subject's memberships elsewhere.
	f.putMember("globex", "sam", "admin", "active")
	samAcme := token(t, "sam", map[string]any{"org_id": "acme"})
	r := f.do("GET", APIPrefix+"/orgs/globex", samAcme, nil)
	f.want(r, 403, "token for acme, on globex")
	if _, msg := r.errorCode(t); !strings.Contains(msg, `this token is for org "acme"`) {
		t.Errorf("message %q", msg)
	}
	// An admin role without an org claim is nobody's admin.
	f.want(f.do("GET", APIPrefix+"/orgs/acme", token(t, "x", map[string]any{"roles": "admin"}), nil), 403, "admin role without an org")
}

func TestMeSaysWhoTheCallerIsAndWhatItMayDo(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	f.createOrg("acme")
	f.putMember("acme", "sam", "admin", "active")
	for _, tc := range []struct {
		name          string
		token         string
		platform, org bool
		perms         int
	}{
		{"platform admin", platformToken(t), true, true, 9},
		{"org admin", acmeAdminToken(t), false, true, 5},
		{"member", acmeMemberToken(t), false, false, 0},
		{"admin by membership, asking about its org", token(t, "sam", nil), false, true, 5},
	} {
		r := f.do("GET", APIPrefix+"/me?org=acme", tc.token, nil)
		f.want(r, 200, tc.name)
		var me meJSON
		r.json(t, &me)
		if me.PlatformAdmin != tc.platform || me.OrgAdmin != tc.org || len(me.Permissions) != tc.perms || me.Subject == "" || me.ExpiresAt == nil {
			t.Errorf("%s: %+v", tc.name, me)
		}
	}
}

func TestRefusedTokensGet401SayingWhyAndNeverReachTheLog(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	for _, tc := range []struct {
		name, header, inMessage string
	}{
		{"no header", "", "Authorization: Bearer"},
		{"basic auth", "Basic dXNlcjpwYXNz", "Authorization: Bearer"},
		{"empty bearer", "Bearer ", "Authorization: Bearer"},
		{"not a JWT", "Bearer not.a.jwt", "not a well-formed JWT"},
		{"expired", "Bearer " + expiredToken(t), "expired"},
		{"no subject", "Bearer " + token(t, "", map[string]any{"sub": nil, "roles": "platform_admin"}), `no "sub"`},
		{"other key", "Bearer " + foreignToken(t), "not signed with an accepted key"},
	} {
		var header []string
		if tc.header != "" {
			header = []string{"Authorization", tc.header}
		}
		r := f.do("GET", APIPrefix+"/me", "", nil, header...)
		f.want(r, 401, tc.name)
		if !strings.HasPrefix(r.header.Get("WWW-Authenticate"), "Bearer") {
			t.Errorf("%s: WWW-Authenticate %q", tc.name, r.header.Get("WWW-Authenticate"))
		}
		if _, msg := r.errorCode(t); !strings.Contains(msg, tc.inMessage) {
			t.Errorf("%s: message %q does not say %q", tc.name, msg, tc.inMessage)
		}
		if tok := strings.TrimPrefix(tc.header, "Bearer "); len(tok) > 8 && (strings.Contains(f.log.String(), tok) || strings.Contains(string(r.body), tok)) {
			t.Errorf("%s: the token shows in the log or the answer", tc.name)
		}
	}
}

func TestUnknownPathsAndMethodsGetJSONErrors(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	r := f.do("GET", APIPrefix+"/nope", platformToken(t), nil)
	f.want(r, 404, "unknown path")
	if code, _ := r.errorCode(t); code != "no_such_endpoint" {
		t.Errorf("code %q", code)
	}
	r = f.do("DELETE", APIPrefix+"/orgs", platformToken(t), nil)
	f.want(r, 405, "DELETE /orgs")
	if allow := r.header.Get("Allow"); !strings.Contains(allow, "GET") || !strings.Contains(allow, "POST") {
		t.Errorf("Allow %q", allow)
	}
	if code, _ := r.errorCode(t); code != "method_not_allowed" {
		t.Errorf("code %q", code)
	}
}

// foreignToken is a platform admin token signed with a key the API does not
// trust.
func foreignToken(t testing.TB) string {
	t.Helper()
	s, err := jwt.NewWithClaims(jwt.SigningMethodHS256, jwt.MapClaims{"sub": "root", "roles": RolePlatformAdmin}).
		SignedString([]byte("some-other-secret-of-at-least-32-bytes!"))
	if err != nil {
		t.Fatal(err)
	}
	return s
}
