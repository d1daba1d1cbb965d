package auth

import (
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/pgtenant/pgtenant/pgerr"
)

func TestVerifyRequiresAUsableOrgClaim(t *testing.T) {
	t.Parallel()
	ks := testKeys()
	v := newTestVerifier(t, JWTConfig{Secret: string(ks.secret)})
	for _, tc := range []struct {
		name   string
		org    any // nil = claim absent
		reason string
	}{
		{"a missing org claim is refused", nil, ReasonMissingOrg},
		{"an org with a quote is refused", "acme'; DROP TABLE t; --", ReasonInvalidOrg},
		{"an org with a double quote is refused", `acme"`, ReasonInvalidOrg},
		{"an org with a backslash is refused", `acme\`, ReasonInvalidOrg},
		{"an org with a space is refused", "acme corp", ReasonInvalidOrg},
		{"an org with a newline is refused", "acme\n", ReasonInvalidOrg},
		{"an org with a NUL is refused", "acme\x00", ReasonInvalidOrg},
		{"an org with unicode letters is refused", "acmé", ReasonInvalidOrg},
		{"an org with a zero-width space is refused", "ac\u200bme", ReasonInvalidOrg},
		{"an empty org is refused", "", ReasonInvalidOrg},
		{"an org starting with a dash is refused", "-acme", ReasonInvalidOrg},
		{"an org of 64 characters is refused", strings.Repeat("a", 64), ReasonInvalidOrg},
		{"a numeric org is refused", 42, ReasonInvalidOrg},
		{"a boolean org is refused", true, ReasonInvalidOrg},
		{"an object org is refused", map[string]any{"id": "acme"}, ReasonInvalidOrg},
		{"an array org is refused", []string{"acme"}, ReasonInvalidOrg},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			c := claims(map[string]any{"org_id": tc.org})
			if tc.org == nil {
				delete(c, "org_id")
			}
			token := sign(t, jwt.SigningMethodHS256, ks.secret, nil, c)
			_, err := v.Verify(token)
			checkRefused(t, err, token, pgerr.InvalidAuthorization, tc.reason)
			if s, ok := tc.org.(string); ok && len(s) > 3 && strings.Contains(pgerr.As(err).Message, s) {
				t.Errorf("message %q echoes the org value", pgerr.As(err).Message)
			}
		})
	}
}

func TestVerifyAcceptsTenantIDsOfTheDefaultFormat(t *testing.T) {
	t.Parallel()
	ks := testKeys()
	v := newTestVerifier(t, JWTConfig{Secret: string(ks.secret)})
	for _, org := range []string{"acme", "7", "0b6f8a52-3c1e-4d0a-9f2e-5b7c1a2d3e4f", "acme_corp.eu-1", strings.Repeat("a", 63)} {
		t.Run(org, func(t *testing.T) {
			t.Parallel()
			id, err := v.Verify(sign(t, jwt.SigningMethodHS256, ks.secret, nil, claims(map[string]any{"org_id": org})))
			if err != nil || id.Org != org {
				t.Fatalf("Verify = %+v, %v; want org %q", id, err, org)
			}
		})
	}
}

func TestVerifyMessageTellsToIssueANumericOrgAsAString(t *testing.T) {
	t.Parallel()
	ks := testKeys()
	v := newTestVerifier(t, JWTConfig{Secret: string(ks.secret)})
	_, err := v.Verify(sign(t, jwt.SigningMethodHS256, ks.secret, nil, claims(map[string]any{"org_id": 42})))
	want := `the token's "org_id" claim is a number; issue the tenant organization id as a JSON string`
	if got := pgerr.As(err).Message; got != want {
		t.Errorf("message %q, want %q", got, want)
	}
}

func TestOrgClaimPath(t *testing.T) {
	t.Parallel()
	ks := testKeys()
	nested := newTestVerifier(t, JWTConfig{Secret: string(ks.secret), OrgClaim: "app_metadata.org"})
	deep := newTestVerifier(t, JWTConfig{Secret: string(ks.secret), OrgClaim: "a.b.c"})
	url := newTestVerifier(t, JWTConfig{Secret: string(ks.secret), OrgClaim: "https://example.com/org"})
	for _, tc := range []struct {
		name    string
		v       *Verifier
		claims  map[string]any
		wantOrg string // "" = refused with missing_org
	}{
		{"a nested claim is found by its dotted path", nested, map[string]any{"app_metadata": map[string]any{"org": "acme"}}, "acme"},
		{"a literal dotted key is found", nested, map[string]any{"app_metadata.org": "acme"}, "acme"},
		{"a literal dotted key wins over the nested path", nested, map[string]any{"app_metadata.org": "literal", "app_metadata": map[string]any{"org": "nested"}}, "literal"},
		{"a deep path is followed", deep, map[string]any{"a": map[string]any{"b": map[string]any{"c": "acme"}}}, "acme"},
		{"a dotted key inside a nested object is found", deep, map[string]any{"a": map[string]any{"b.c": "acme"}}, "acme"},
		{"a namespaced URL claim is found by its literal name", url, map[string]any{"https://example.com/org": "acme"}, "acme"},
		{"a path through a string is missing", nested, map[string]any{"app_metadata": "acme"}, ""},
		{"a path through an array is missing", nested, map[string]any{"app_metadata": []any{map[string]any{"org": "acme"}}}, ""},
		{"the top-level org_id does not satisfy a nested path", nested, map[string]any{}, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			token := sign(t, jwt.SigningMethodHS256, ks.secret, nil, claims(tc.claims))
			id, err := tc.v.Verify(token)
			if tc.wantOrg == "" {
				checkRefused(t, err, token, pgerr.InvalidAuthorization, ReasonMissingOrg)
				return
			}
			if err != nil || id.Org != tc.wantOrg {
				t.Fatalf("Verify = %+v, %v; want org %q", id, err, tc.wantOrg)
			}
		})
	}
}

func TestCustomOrgPatternMustMatchWholeValueAndCannotAllowQuotes(t *testing.T) {
	t.Parallel()
	ks := testKeys()
	unanchored, err := NewVerifier(JWTConfig{Secret: string(ks.secret)}, regexp.MustCompile(`[a-z]+`),
		WithClock(func() time.Time { return testNow }))
	if err != nil {
		t.Fatal(err)
	}
	permissive, err := NewVerifier(JWTConfig{Secret: string(ks.secret)}, regexp.MustCompile(`.*`),
		WithClock(func() time.Time { return testNow }))
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		v    *Verifier
		org  string
		ok   bool
	}{
		{"a value the unanchored pattern matches in full is accepted", unanchored, "acme", true},
		{"a value the unanchored pattern matches only in part is refused", unanchored, "acme-1", false},
		{"a permissive pattern accepts unicode", permissive, "acmé", true},
		{"a permissive pattern still refuses a quote", permissive, "acme'", false},
		{"a permissive pattern still refuses a backslash", permissive, `ac\me`, false},
		{"a permissive pattern still refuses a space", permissive, "ac me", false},
		{"a permissive pattern still refuses a control character", permissive, "ac\x1bme", false},
		{"a permissive pattern still refuses an empty org", permissive, "", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			token := sign(t, jwt.SigningMethodHS256, ks.secret, nil, claims(map[string]any{"org_id": tc.org}))
			id, err := tc.v.Verify(token)
			if tc.ok {
				if err != nil || id.Org != tc.org {
					t.Fatalf("Verify = %+v, %v; want org %q", id, err, tc.org)
				}
				return
			}
			checkRefused(t, err, token, pgerr.InvalidAuthorization, ReasonInvalidOrg)
		})
	}
}
