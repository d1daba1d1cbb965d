package auth

import (
	"encoding/base64"
	"encoding/json"
	"reflect"
	"strings"
	"testing"
	"time"
)

func TestMintedTokensVerify(t *testing.T) {
	t.Parallel()
	ks := testKeys()
	for _, tc := range []struct {
		name      string
		cfg       JWTConfig
		claims    MintClaims
		wantShape map[string]any // the org claim as written, top level
	}{
		{"the default org claim",
			JWTConfig{},
			MintClaims{Org: "acme", Subject: "alice", TTL: time.Hour},
			map[string]any{"org_id": "acme"}},
		{"a nested org claim is written nested",
			JWTConfig{OrgClaim: "app_metadata.org"},
			MintClaims{Org: "acme", TTL: time.Hour, OrgClaim: "app_metadata.org"},
			map[string]any{"app_metadata": map[string]any{"org": "acme"}}},
		{"a namespaced URL claim is written literally",
			JWTConfig{OrgClaim: "https://example.com/org"},
			MintClaims{Org: "acme", TTL: time.Hour, OrgClaim: "https://example.com/org"},
			map[string]any{"https://example.com/org": "acme"}},
		{"issuer and audience are written",
			JWTConfig{Issuer: "pgtenant", Audience: "db"},
			MintClaims{Org: "acme", TTL: time.Hour, Issuer: "pgtenant", Audience: "db"},
			map[string]any{"org_id": "acme", "iss": "pgtenant", "aud": "db"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			token, err := mint(ks.secret, tc.claims, testNow)
			if err != nil {
				t.Fatalf("mint: %v", err)
			}
			cfg := tc.cfg
			cfg.Secret = string(ks.secret)
			id, err := newTestVerifier(t, cfg).Verify(token)
			if err != nil {
				t.Fatalf("Verify: %v", err)
			}
			want := Identity{Org: "acme", Subject: tc.claims.Subject, ExpiresAt: testNow.Add(time.Hour)}
			if id != want {
				t.Errorf("identity %+v, want %+v", id, want)
			}
			payload := decodeClaims(t, token)
			if payload["exp"] != float64(testNow.Add(time.Hour).Unix()) || payload["iat"] != float64(testNow.Unix()) {
				t.Errorf("exp/iat = %v/%v", payload["exp"], payload["iat"])
			}
			for k, v := range tc.wantShape {
				if !reflect.DeepEqual(payload[k], v) {
					t.Errorf("claim %q = %#v, want %#v", k, payload[k], v)
				}
			}
		})
	}
}

func TestMintedTokensExpire(t *testing.T) {
	t.Parallel()
	ks := testKeys()
	token, err := Mint(ks.secret, MintClaims{Org: "acme", TTL: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	v, err := NewVerifier(JWTConfig{Secret: string(ks.secret), Leeway: time.Nanosecond}, nil,
		WithClock(func() time.Time { return time.Now().Add(time.Hour) }))
	if err != nil {
		t.Fatal(err)
	}
	_, err = v.Verify(token)
	checkRefused(t, err, token, "28P01", ReasonExpired)
}

func TestMintRefusesBadInput(t *testing.T) {
	t.Parallel()
	ks := testKeys()
	short := []byte("short-but-secret")
	for _, tc := range []struct {
		name   string
		secret []byte
		claims MintClaims
		want   string
	}{
		{"a short secret is refused", short, MintClaims{Org: "acme", TTL: time.Hour}, "at least 32 bytes"},
		{"an empty org is refused", ks.secret, MintClaims{TTL: time.Hour}, "organization id is required"},
		{"an org with a quote is refused", ks.secret, MintClaims{Org: "a'b", TTL: time.Hour}, "must not contain quotes"},
		{"a zero TTL is refused", ks.secret, MintClaims{Org: "acme"}, "at least 1s"},
		{"an org claim that collides with sub is refused", ks.secret, MintClaims{Org: "acme", TTL: time.Hour, OrgClaim: "sub"}, "collides"},
		{"an org claim nested under exp is refused", ks.secret, MintClaims{Org: "acme", TTL: time.Hour, OrgClaim: "exp.org"}, "collides"},
		{"an org claim with an empty segment is refused", ks.secret, MintClaims{Org: "acme", TTL: time.Hour, OrgClaim: "a..b"}, "empty path segment"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			_, err := Mint(tc.secret, tc.claims)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Mint error %v; want one containing %q", err, tc.want)
			}
			if strings.Contains(err.Error(), string(tc.secret)) {
				t.Errorf("error %q contains the secret", err)
			}
		})
	}
}

func decodeClaims(t testing.TB, token string) map[string]any {
	t.Helper()
	parts := strings.Split(token, ".")
	data, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(data, &m); err != nil {
		t.Fatal(err)
	}
	return m
}
