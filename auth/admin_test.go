package auth

import (
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/pgtenant/pgtenant/pgerr"
)

func TestVerifyAdminReadsSubjectOptionalOrgAndRoles(t *testing.T) {
	t.Parallel()
	ks := testKeys()
	v := newTestVerifier(t, JWTConfig{Secret: string(ks.secret)})
	for _, tc := range []struct {
		name       string
		extra      map[string]any
		rolesClaim string
		wantOrg    string
		wantRoles  []string
	}{
		{"platform operator without org", map[string]any{"org_id": nil, "roles": []any{"platform_admin"}}, "", "", []string{"platform_admin"}},
		{"tenant admin", map[string]any{"roles": []any{"admin", "viewer"}}, "", "acme", []string{"admin", "viewer"}},
		{"roles as a space-separated string", map[string]any{"roles": "admin  viewer"}, "", "acme", []string{"admin", "viewer"}},
		{"no roles claim", nil, "", "acme", nil},
		{"null roles", map[string]any{"roles": nil}, "", "acme", nil},
		{"null org is no org", map[string]any{"org_id": nil}, "", "", nil},
		{"empty array elements are dropped", map[string]any{"roles": []any{"", "admin"}}, "", "acme", []string{"admin"}},
		{"custom dotted roles claim", map[string]any{"app": map[string]any{"roles": []any{"admin"}}}, "app.roles", "acme", []string{"admin"}},
		{"custom claim ignores the default one", map[string]any{"roles": []any{"platform_admin"}, "grants": "admin"}, "grants", "acme", []string{"admin"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			id, err := v.VerifyAdmin(sign(t, jwt.SigningMethodHS256, ks.secret, nil, claims(tc.extra)), tc.rolesClaim)
			if err != nil {
				t.Fatalf("VerifyAdmin: %v", err)
			}
			if id.Subject != "user-1" || id.Org != tc.wantOrg || !slices.Equal(id.Roles, tc.wantRoles) || !id.ExpiresAt.Equal(testNow.Add(time.Hour)) {
				t.Errorf("identity %+v; want subject user-1, org %q, roles %q", id, tc.wantOrg, tc.wantRoles)
			}
		})
	}
}

func TestVerifyAdminRefusesUnusableTokensSayingWhatToFix(t *testing.T) {
	t.Parallel()
	ks := testKeys()
	v := newTestVerifier(t, JWTConfig{Secret: string(ks.secret), Issuer: "https://idp.example", Audience: "pgtenant-admin"})
	good := map[string]any{"iss": "https://idp.example", "aud": "pgtenant-admin"}
	token := func(extra map[string]any) string {
		return sign(t, jwt.SigningMethodHS256, ks.secret, nil, claims(with(good, extra)))
	}
	for _, tc := range []struct {
		name      string
		token     string
		code      string
		reason    string
		inMessage string
	}{
		{"no token", "  ", pgerr.InvalidPassword, ReasonNoToken, "Authorization: Bearer"},
		{"not a JWT", "not-a-jwt", pgerr.InvalidPassword, ReasonMalformed, "bearer token is not a well-formed JWT"},
		{"too large", strings.Repeat("a", MaxTokenSize+1), pgerr.InvalidPassword, ReasonMalformed, "larger than"},
		{"wrong key", sign(t, jwt.SigningMethodHS256, ks.secret2, nil, claims(good)), pgerr.InvalidPassword, ReasonBadSignature, "accepted key"},
		{"alg none", rawToken(`{"alg":"none","typ":"JWT"}`, `{"sub":"x"}`, nil), pgerr.InvalidPassword, ReasonAlgNotAllowed, "unsigned"},
		{"expired", token(map[string]any{"exp": testNow.Add(-time.Hour).Unix()}), pgerr.InvalidPassword, ReasonExpired, "obtain a new token"},
		{"not yet valid", token(map[string]any{"nbf": testNow.Add(time.Hour).Unix()}), pgerr.InvalidPassword, ReasonNotYetValid, "not valid before"},
		{"wrong issuer", token(map[string]any{"iss": "https://other.example"}), pgerr.InvalidPassword, ReasonWrongIssuer, "https://idp.example"},
		{"wrong audience", token(map[string]any{"aud": "pgtenant-clients"}), pgerr.InvalidPassword, ReasonWrongAudience, "pgtenant-admin"},
		{"no subject", token(map[string]any{"sub": nil}), pgerr.InvalidAuthorization, ReasonMissingSubject, `no "sub"`},
		{"empty subject", token(map[string]any{"sub": " "}), pgerr.InvalidAuthorization, ReasonMissingSubject, "empty"},
		{"numeric subject", token(map[string]any{"sub": 42}), pgerr.InvalidAuthorization, ReasonMissingSubject, "JSON string"},
		{"invalid org", token(map[string]any{"org_id": "acme'; --"}), pgerr.InvalidAuthorization, ReasonInvalidOrg, "must match"},
		{"empty org", token(map[string]any{"org_id": ""}), pgerr.InvalidAuthorization, ReasonInvalidOrg, "empty"},
		{"numeric org", token(map[string]any{"org_id": 7}), pgerr.InvalidAuthorization, ReasonInvalidOrg, "JSON string"},
		{"roles of numbers", token(map[string]any{"roles": []any{"admin", 1}}), pgerr.InvalidAuthorization, ReasonInvalidRoles, "array of strings"},
		{"roles as an object", token(map[string]any{"roles": map[string]any{"admin": true}}), pgerr.InvalidAuthorization, ReasonInvalidRoles, "neither a string"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			_, err := v.VerifyAdmin(tc.token, "")
			checkRefused(t, err, tc.token, tc.code, tc.reason)
			msg := pgerr.As(err).Message
			if !strings.Contains(msg, tc.inMessage) {
				t.Errorf("message %q does not say %q", msg, tc.inMessage)
			}
			// The API is not a PostgreSQL login: nothing about passwords.
			if strings.Contains(msg, "password") {
				t.Errorf("message %q talks about a password", msg)
			}
		})
	}
}

func TestVerifyAdminDoesNotChangeVerifyMessages(t *testing.T) {
	t.Parallel()
	ks := testKeys()
	v := newTestVerifier(t, JWTConfig{Secret: string(ks.secret)})
	expired := sign(t, jwt.SigningMethodHS256, ks.secret, nil, claims(map[string]any{"exp": testNow.Add(-time.Hour).Unix()}))
	_, adminErr := v.VerifyAdmin(expired, "")
	_, err := v.Verify(expired)
	if !strings.HasPrefix(pgerr.As(err).Message, passwordFailed) || strings.HasPrefix(pgerr.As(adminErr).Message, passwordFailed) {
		t.Fatalf("Verify says %q, VerifyAdmin says %q", pgerr.As(err).Message, pgerr.As(adminErr).Message)
	}
}

func TestAdminIdentityHasRole(t *testing.T) {
	t.Parallel()
	id := AdminIdentity{Roles: []string{"admin", "viewer"}}
	if !id.HasRole("admin") || id.HasRole("platform_admin") || (AdminIdentity{}).HasRole("admin") {
		t.Fatal("HasRole")
	}
}

func FuzzVerifyAdmin(f *testing.F) {
	ks := testKeys()
	v := newTestVerifier(f, JWTConfig{Secret: string(ks.secret)})
	f.Add(sign(f, jwt.SigningMethodHS256, ks.secret, nil, claims(map[string]any{"roles": []any{"admin"}})), "roles")
	f.Add("a.b.c", "app.roles")
	f.Fuzz(func(t *testing.T, token, rolesClaim string) {
		id, err := v.VerifyAdmin(token, rolesClaim)
		if err != nil {
			checkNoLeak(t, pgerr.As(err), token)
			return
		}
		if id.Subject == "" {
			t.Fatal("accepted a token without a subject")
		}
	})
}
