package auth

import (
	"crypto"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/pgtenant/pgtenant/pgerr"
)

// allKeysPEM holds one public key of every asymmetric type.
func allKeysPEM(t testing.TB) []byte {
	ks := testKeys()
	var pems []byte
	for _, pub := range []any{&ks.rsa.PublicKey, &ks.p256.PublicKey, &ks.p384.PublicKey, &ks.p521.PublicKey, ks.ed.Public()} {
		pems = append(pems, pemPublic(t, pub, "")...)
	}
	return pems
}

// secretAndPEMVerifier trusts the HMAC secret and every key of allKeysPEM.
func secretAndPEMVerifier(t testing.TB) *Verifier {
	return newTestVerifier(t, JWTConfig{
		Secret:        string(testKeys().secret),
		PublicKeyFile: writeFile(t, "keys.pem", allKeysPEM(t)),
	})
}

func TestVerifyAcceptsTokensSignedWithEachConfiguredKeyType(t *testing.T) {
	t.Parallel()
	ks := testKeys()
	v := secretAndPEMVerifier(t)
	for _, tc := range []struct {
		method jwt.SigningMethod
		key    any
	}{
		{jwt.SigningMethodHS256, ks.secret},
		{jwt.SigningMethodHS384, ks.secret},
		{jwt.SigningMethodHS512, ks.secret},
		{jwt.SigningMethodRS256, ks.rsa},
		{jwt.SigningMethodRS384, ks.rsa},
		{jwt.SigningMethodRS512, ks.rsa},
		{jwt.SigningMethodPS256, ks.rsa},
		{jwt.SigningMethodPS384, ks.rsa},
		{jwt.SigningMethodPS512, ks.rsa},
		{jwt.SigningMethodES256, ks.p256},
		{jwt.SigningMethodES384, ks.p384},
		{jwt.SigningMethodES512, ks.p521},
		{jwt.SigningMethodEdDSA, ks.ed},
	} {
		t.Run(tc.method.Alg(), func(t *testing.T) {
			t.Parallel()
			id, err := v.Verify(sign(t, tc.method, tc.key, nil, claims(nil)))
			if err != nil {
				t.Fatalf("Verify: %v", err)
			}
			want := Identity{Org: "acme", Subject: "user-1", ExpiresAt: testNow.Add(time.Hour)}
			if id != want {
				t.Errorf("identity %+v, want %+v", id, want)
			}
		})
	}
}

func TestVerifyRefusesUntrustworthyTokens(t *testing.T) {
	t.Parallel()
	ks := testKeys()
	rsaPEM := pemPublic(t, &ks.rsa.PublicKey, "")
	both := secretAndPEMVerifier(t)
	rsaOnly := newTestVerifier(t, JWTConfig{PublicKeyFile: writeFile(t, "rsa.pem", rsaPEM)})
	secretOnly := newTestVerifier(t, JWTConfig{Secret: string(ks.secret)})
	p256Only := newTestVerifier(t, JWTConfig{PublicKeyFile: writeFile(t, "p256.pem", pemPublic(t, &ks.p256.PublicKey, ""))})
	p384Only := newTestVerifier(t, JWTConfig{PublicKeyFile: writeFile(t, "p384.pem", pemPublic(t, &ks.p384.PublicKey, ""))})

	valid := sign(t, jwt.SigningMethodHS256, ks.secret, nil, claims(nil))
	parts := strings.Split(valid, ".")
	hs256 := func(header, payload string, key []byte) string {
		unsigned := rawToken(header, payload, nil)
		unsigned = unsigned[:len(unsigned)-1] // drop the dot and empty signature
		mac := hmac.New(sha256.New, key)
		mac.Write([]byte(unsigned))
		return rawToken(header, payload, mac.Sum(nil))
	}
	payload := `{"org_id":"acme","sub":"user-1","exp":1893456000}`

	// Algorithm confusion: an HS256 token whose "secret" is the RSA public
	// key as the verifier would read it from its PEM file, and as DER.
	der, err := x509.MarshalPKIXPublicKey(&ks.rsa.PublicKey)
	if err != nil {
		t.Fatal(err)
	}

	for _, tc := range []struct {
		name   string
		v      *Verifier
		token  string
		reason string
	}{
		{"an empty password is refused", both, "", ReasonNoToken},
		{"a whitespace password is refused", both, " \t\n", ReasonNoToken},
		{"a token over 16 KiB is refused before parsing", both, strings.Repeat("a", MaxTokenSize+1), ReasonMalformed},
		{"a plain password is refused", both, "correct horse battery staple", ReasonMalformed},
		{"a token with two segments is refused", both, parts[0] + "." + parts[1], ReasonMalformed},
		{"a token with four segments is refused", both, valid + ".x", ReasonMalformed},
		{"a header that is not base64url is refused", both, "!!!." + parts[1] + "." + parts[2], ReasonMalformed},
		{"a header that is not JSON is refused", both, rawToken("nope", payload, []byte("sig")), ReasonMalformed},
		{"claims that are not a JSON object are refused", both, rawToken(`{"alg":"HS256"}`, `[1,2]`, []byte("sig")), ReasonMalformed},
		{"a header without alg is refused", both, rawToken(`{"typ":"JWT"}`, payload, []byte("sig")), ReasonMalformed},
		{"an unknown alg is refused", both, rawToken(`{"alg":"HS1"}`, payload, []byte("sig")), ReasonAlgNotAllowed},
		{"alg none without a signature is refused", both, rawToken(`{"alg":"none"}`, payload, nil), ReasonAlgNotAllowed},
		{"alg none with a signature is refused", both, rawToken(`{"alg":"none"}`, payload, []byte("sig")), ReasonAlgNotAllowed},
		{"alg None spelled differently is refused", both, rawToken(`{"alg":"None"}`, payload, nil), ReasonAlgNotAllowed},
		{"alg none is refused when only a secret is configured", secretOnly, rawToken(`{"alg":"none"}`, payload, nil), ReasonAlgNotAllowed},
		{"HS256 signed with the RSA public key PEM is refused when only RSA is configured", rsaOnly, hs256(`{"alg":"HS256"}`, payload, rsaPEM), ReasonAlgNotAllowed},
		{"HS256 signed with the RSA public key PEM is refused next to a secret", both, hs256(`{"alg":"HS256"}`, payload, rsaPEM), ReasonBadSignature},
		{"HS256 signed with the RSA public key DER is refused", both, hs256(`{"alg":"HS256"}`, payload, der), ReasonBadSignature},
		{"an HS256 token is refused when only RSA is configured", rsaOnly, valid, ReasonAlgNotAllowed},
		{"an RS256 token is refused when only a secret is configured", secretOnly, sign(t, jwt.SigningMethodRS256, ks.rsa, nil, claims(nil)), ReasonAlgNotAllowed},
		{"a token signed with another secret is refused", both, sign(t, jwt.SigningMethodHS256, ks.secret2, nil, claims(nil)), ReasonBadSignature},
		{"a token signed with another RSA key is refused", both, sign(t, jwt.SigningMethodRS256, ks.rsa2, nil, claims(nil)), ReasonBadSignature},
		{"a token signed with another EC key is refused", both, sign(t, jwt.SigningMethodES256, ks.p256b, nil, claims(nil)), ReasonBadSignature},
		{"a token signed with another Ed25519 key is refused", both, sign(t, jwt.SigningMethodEdDSA, ks.ed2, nil, claims(nil)), ReasonBadSignature},
		{"an ES384 token is refused when only RSA is configured", rsaOnly, sign(t, jwt.SigningMethodES384, ks.p384, nil, claims(nil)), ReasonAlgNotAllowed},
		{"an ES384 token is refused when only a P-256 key is configured", p256Only, sign(t, jwt.SigningMethodES384, ks.p384, nil, claims(nil)), ReasonAlgNotAllowed},
		{"an ES256 token is refused when only a P-384 key is configured", p384Only, sign(t, jwt.SigningMethodES256, ks.p256, nil, claims(nil)), ReasonAlgNotAllowed},
		{"a token whose claims were changed after signing is refused", both, parts[0] + "." + b64u([]byte(`{"org_id":"evil","exp":1893456000}`)) + "." + parts[2], ReasonBadSignature},
		{"a token with an empty signature is refused", both, parts[0] + "." + parts[1] + ".", ReasonBadSignature},
		{"a token with a padded signature is refused", both, valid + "=", ReasonMalformed},
		{"an unknown kid is refused", both, sign(t, jwt.SigningMethodHS256, ks.secret, map[string]any{"kid": "nobody"}, claims(nil)), ReasonUnknownKID},
		{"a kid that is not a string is refused", both, sign(t, jwt.SigningMethodHS256, ks.secret, map[string]any{"kid": 7}, claims(nil)), ReasonMalformed},
		{"a crit header is refused", both, sign(t, jwt.SigningMethodHS256, ks.secret, map[string]any{"crit": []string{"b64"}, "b64": false}, claims(nil)), ReasonMalformed},
		{"a key embedded in the jwk header is ignored", both, sign(t, jwt.SigningMethodRS256, ks.rsa2, map[string]any{"jwk": rsaJWK(&ks.rsa2.PublicKey, "")}, claims(nil)), ReasonBadSignature},
		{"a key URL in the jku header is ignored", both, sign(t, jwt.SigningMethodRS256, ks.rsa2, map[string]any{"jku": "https://attacker.example/jwks.json"}, claims(nil)), ReasonBadSignature},
		{"an expired token is refused", both, sign(t, jwt.SigningMethodHS256, ks.secret, nil, claims(map[string]any{"exp": testNow.Add(-time.Hour).Unix()})), ReasonExpired},
		{"exp 0 is expired, not absent", both, sign(t, jwt.SigningMethodHS256, ks.secret, nil, claims(map[string]any{"exp": 0})), ReasonExpired},
		{"an exp that is not a number is refused", both, sign(t, jwt.SigningMethodHS256, ks.secret, nil, claims(map[string]any{"exp": "tomorrow"})), ReasonMalformed},
		{"an exp of null is refused", both, hs256(`{"alg":"HS256"}`, `{"org_id":"acme","exp":null}`, ks.secret), ReasonMalformed},
		{"a token not yet valid is refused", both, sign(t, jwt.SigningMethodHS256, ks.secret, nil, claims(map[string]any{"nbf": testNow.Add(time.Hour).Unix()})), ReasonNotYetValid},
		{"a token issued in the future is refused", both, sign(t, jwt.SigningMethodHS256, ks.secret, nil, claims(map[string]any{"iat": testNow.Add(time.Hour).Unix()})), ReasonIssuedInFuture},
		{"a sub that is not a string is refused", both, sign(t, jwt.SigningMethodHS256, ks.secret, nil, claims(map[string]any{"sub": 42})), ReasonMalformed},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			_, err := tc.v.Verify(tc.token)
			checkRefused(t, err, tc.token, pgerr.InvalidPassword, tc.reason)
		})
	}
}

func TestVerifyMessagesSayWhatToFix(t *testing.T) {
	t.Parallel()
	ks := testKeys()
	v := newTestVerifier(t, JWTConfig{Secret: string(ks.secret), Issuer: "https://issuer.example", Audience: "pgtenant"})
	ok := map[string]any{"iss": "https://issuer.example", "aud": "pgtenant"}
	claimsWith := func(extra map[string]any) jwt.MapClaims {
		c := claims(ok)
		for k, val := range extra {
			if val == nil {
				delete(c, k)
				continue
			}
			c[k] = val
		}
		return c
	}
	for _, tc := range []struct {
		name  string
		token string
		want  string
	}{
		{"an empty password asks for a JWT", "", "password authentication failed: a JWT is required as the password"},
		{"an expired token names its exp and asks for a new token",
			sign(t, jwt.SigningMethodHS256, ks.secret, nil, claimsWith(map[string]any{"exp": testNow.Add(-time.Hour).Unix()})),
			"password authentication failed: the token has expired (exp 2026-11-27T09:00:00Z); obtain a new token"},
		{"a bad signature says no accepted key signed it",
			sign(t, jwt.SigningMethodHS256, ks.secret2, nil, claimsWith(nil)),
			"password authentication failed: the token was not signed with an accepted key; obtain a token from the configured issuer"},
		{"a wrong issuer names the accepted issuer",
			sign(t, jwt.SigningMethodHS256, ks.secret, nil, claimsWith(map[string]any{"iss": "https://evil.example"})),
			`password authentication failed: the token was issued by a different issuer; this server accepts tokens issued by "https://issuer.example"`},
		{"a disallowed alg lists the accepted ones",
			rawToken(`{"alg":"RS256"}`, `{}`, []byte("sig")),
			"password authentication failed: the token is signed with RS256, which is not accepted; accepted algorithms: HS256, HS384, HS512"},
		{"a missing org claim names the claim",
			sign(t, jwt.SigningMethodHS256, ks.secret, nil, claimsWith(map[string]any{"org_id": nil})),
			`the token has no "org_id" claim; the token must name the tenant organization`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			_, err := v.Verify(tc.token)
			if err == nil {
				t.Fatal("token accepted")
			}
			if got := pgerr.As(err).Message; got != tc.want {
				t.Errorf("message\n got %q\nwant %q", got, tc.want)
			}
		})
	}
}

func TestVerifyAppliesLeewayAtTheEdges(t *testing.T) {
	t.Parallel()
	ks := testKeys()
	leeway := DefaultLeeway
	v := newTestVerifier(t, JWTConfig{Secret: string(ks.secret)}) // leeway defaults to 30s
	strict := newTestVerifier(t, JWTConfig{Secret: string(ks.secret), Leeway: time.Nanosecond})
	for _, tc := range []struct {
		name   string
		v      *Verifier
		claims map[string]any
		reason string // "" = accepted
	}{
		{"exp one second inside the leeway is accepted", v, map[string]any{"exp": testNow.Add(-leeway + time.Second).Unix()}, ""},
		{"exp exactly at the leeway is expired", v, map[string]any{"exp": testNow.Add(-leeway).Unix()}, ReasonExpired},
		{"exp one second ago is expired with a tiny leeway", strict, map[string]any{"exp": testNow.Add(-time.Second).Unix()}, ReasonExpired},
		{"exp one second ahead is accepted with a tiny leeway", strict, map[string]any{"exp": testNow.Add(time.Second).Unix()}, ""},
		{"nbf exactly at the leeway is accepted", v, map[string]any{"nbf": testNow.Add(leeway).Unix()}, ""},
		{"nbf one second beyond the leeway is refused", v, map[string]any{"nbf": testNow.Add(leeway + time.Second).Unix()}, ReasonNotYetValid},
		{"nbf one second ahead is refused with a tiny leeway", strict, map[string]any{"nbf": testNow.Add(time.Second).Unix()}, ReasonNotYetValid},
		{"iat exactly at the leeway is accepted", v, map[string]any{"iat": testNow.Add(leeway).Unix()}, ""},
		{"iat one second beyond the leeway is refused", v, map[string]any{"iat": testNow.Add(leeway + time.Second).Unix()}, ReasonIssuedInFuture},
		{"fractional exp inside the leeway is accepted", v, map[string]any{"exp": float64(testNow.Add(-leeway).Unix()) + 0.5}, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			token := sign(t, jwt.SigningMethodHS256, ks.secret, nil, claims(tc.claims))
			_, err := tc.v.Verify(token)
			checkOutcome(t, err, token, tc.reason)
		})
	}
}

func TestVerifyAcceptsATokenWithoutExpAndReportsNoExpiry(t *testing.T) {
	t.Parallel()
	ks := testKeys()
	v := newTestVerifier(t, JWTConfig{Secret: string(ks.secret)})
	id, err := v.Verify(sign(t, jwt.SigningMethodHS256, ks.secret, nil, claims(map[string]any{"exp": nil, "iat": nil, "sub": nil})))
	if err != nil {
		t.Fatalf("Verify: %v", err)
	}
	if !id.ExpiresAt.IsZero() || id.Subject != "" || id.Org != "acme" {
		t.Errorf("identity %+v; want org acme, no subject, zero ExpiresAt", id)
	}
}

func TestVerifyChecksIssuerAndAudienceWhenConfigured(t *testing.T) {
	t.Parallel()
	ks := testKeys()
	v := newTestVerifier(t, JWTConfig{Secret: string(ks.secret), Issuer: "https://issuer.example", Audience: "pgtenant"})
	open := newTestVerifier(t, JWTConfig{Secret: string(ks.secret)})
	for _, tc := range []struct {
		name   string
		v      *Verifier
		claims map[string]any
		reason string // "" = accepted
	}{
		{"matching iss and aud are accepted", v, map[string]any{"iss": "https://issuer.example", "aud": "pgtenant"}, ""},
		{"aud as an array containing ours is accepted", v, map[string]any{"iss": "https://issuer.example", "aud": []string{"api", "pgtenant"}}, ""},
		{"aud as an array without ours is refused", v, map[string]any{"iss": "https://issuer.example", "aud": []string{"api", "web"}}, ReasonWrongAudience},
		{"aud as an array with a non-string is refused", v, map[string]any{"iss": "https://issuer.example", "aud": []any{"pgtenant", 1}}, ReasonWrongAudience},
		{"a wrong aud is refused", v, map[string]any{"iss": "https://issuer.example", "aud": "api"}, ReasonWrongAudience},
		{"a missing aud is refused", v, map[string]any{"iss": "https://issuer.example"}, ReasonWrongAudience},
		{"an aud that differs only in case is refused", v, map[string]any{"iss": "https://issuer.example", "aud": "PGTENANT"}, ReasonWrongAudience},
		{"a wrong iss is refused", v, map[string]any{"iss": "https://evil.example", "aud": "pgtenant"}, ReasonWrongIssuer},
		{"a missing iss is refused", v, map[string]any{"aud": "pgtenant"}, ReasonWrongIssuer},
		{"an iss that is not a string is refused", v, map[string]any{"iss": 1, "aud": "pgtenant"}, ReasonWrongIssuer},
		{"a wrong issuer is reported before expiry", v, map[string]any{"iss": "https://evil.example", "aud": "pgtenant", "exp": testNow.Add(-time.Hour).Unix()}, ReasonWrongIssuer},
		{"any iss and aud pass when none is configured", open, map[string]any{"iss": "https://anyone.example", "aud": "anything"}, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			token := sign(t, jwt.SigningMethodHS256, ks.secret, nil, claims(tc.claims))
			_, err := tc.v.Verify(token)
			checkOutcome(t, err, token, tc.reason)
		})
	}
}

func TestVerifyIgnoresSurroundingWhitespace(t *testing.T) {
	t.Parallel()
	ks := testKeys()
	v := newTestVerifier(t, JWTConfig{Secret: string(ks.secret)})
	if _, err := v.Verify(" " + sign(t, jwt.SigningMethodHS256, ks.secret, nil, claims(nil)) + "\n"); err != nil {
		t.Fatalf("Verify: %v", err)
	}
}

func TestVerifierIsSafeForConcurrentUse(t *testing.T) {
	t.Parallel()
	ks := testKeys()
	v := secretAndPEMVerifier(t)
	tokens := []string{
		sign(t, jwt.SigningMethodHS256, ks.secret, nil, claims(nil)),
		sign(t, jwt.SigningMethodRS256, ks.rsa, nil, claims(nil)),
		sign(t, jwt.SigningMethodES256, ks.p256, nil, claims(nil)),
		sign(t, jwt.SigningMethodEdDSA, ks.ed, nil, claims(map[string]any{"org_id": "bad org"})),
	}
	var wg sync.WaitGroup
	for i := range 16 {
		wg.Go(func() {
			for j := range 20 {
				tok := tokens[(i+j)%len(tokens)]
				_, err := v.Verify(tok)
				if (err != nil) != (tok == tokens[3]) {
					t.Errorf("Verify(token %d): %v", (i+j)%len(tokens), err)
				}
			}
		})
	}
	wg.Wait()
}

// A PKCS#1 v1.5 signature must not verify under the PSS algorithm name.
func TestVerifyRefusesAnRS256SignatureRelabelledAsPS256(t *testing.T) {
	t.Parallel()
	ks := testKeys()
	v := newTestVerifier(t, JWTConfig{PublicKeyFile: writeFile(t, "rsa.pem", pemPublic(t, &ks.rsa.PublicKey, ""))})
	header := `{"alg":"PS256","typ":"JWT"}`
	payload := `{"org_id":"acme"}`
	unsigned := rawToken(header, payload, nil)
	unsigned = unsigned[:len(unsigned)-1]
	h := sha256.Sum256([]byte(unsigned))
	sig, err := ks.rsa.Sign(rand.Reader, h[:], crypto.SHA256)
	if err != nil {
		t.Fatal(err)
	}
	token := rawToken(header, payload, sig)
	_, err = v.Verify(token)
	checkRefused(t, err, token, pgerr.InvalidPassword, ReasonBadSignature)
}

func TestNoErrorEchoesTheTokenOrWhatItClaims(t *testing.T) {
	t.Parallel()
	ks := testKeys()
	v := newTestVerifier(t, JWTConfig{Secret: string(ks.secret), Issuer: "https://issuer.example", Audience: "pgtenant"})
	const marker = "MARKER-7f3a9c"
	good := map[string]any{"iss": "https://issuer.example", "aud": "pgtenant"}
	for _, tc := range []struct {
		name   string
		header map[string]any
		claims map[string]any
		key    []byte
	}{
		{"a kid", map[string]any{"kid": marker}, good, ks.secret},
		{"an issuer", nil, map[string]any{"iss": marker, "aud": "pgtenant"}, ks.secret},
		{"an audience", nil, map[string]any{"iss": "https://issuer.example", "aud": marker}, ks.secret},
		{"an org", nil, with(good, map[string]any{"org_id": marker + " x"}), ks.secret},
		{"an org claim of another type", nil, with(good, map[string]any{"org_id": []string{marker}}), ks.secret},
		{"a subject of another type", nil, with(good, map[string]any{"sub": []string{marker}}), ks.secret},
		{"an exp of another type", nil, with(good, map[string]any{"exp": marker}), ks.secret},
		{"a typ header", map[string]any{"typ": marker}, good, ks.secret2},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			token := sign(t, jwt.SigningMethodHS256, tc.key, tc.header, claims(tc.claims))
			_, err := v.Verify(token)
			if err == nil {
				t.Fatal("token accepted")
			}
			e := pgerr.As(err)
			checkNoLeak(t, e, token)
			for _, text := range []string{e.Error(), e.Message, e.Detail, e.Hint} {
				if strings.Contains(text, marker) {
					t.Errorf("error text %q echoes %s from the token", text, tc.name)
				}
			}
		})
	}
}
