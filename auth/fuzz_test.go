package auth

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"regexp"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/pgtenant/pgtenant/pgerr"
)

var defaultOrgRE = regexp.MustCompile(DefaultOrgPattern)

var allReasons = []string{
	ReasonNoToken, ReasonMalformed, ReasonBadSignature, ReasonAlgNotAllowed, ReasonUnknownKID,
	ReasonExpired, ReasonNotYetValid, ReasonIssuedInFuture, ReasonWrongIssuer, ReasonWrongAudience,
	ReasonMissingOrg, ReasonInvalidOrg,
}

// fuzzSetup is built once per process: key generation is too slow for every input.
type fuzzSetup struct {
	v      *Verifier
	secret []byte
	seeds  []string
}

var fuzzState struct {
	once sync.Once
	s    fuzzSetup
}

func fuzzVerifier(t testing.TB) fuzzSetup {
	fuzzState.once.Do(func() {
		ks := testKeys()
		pems := append(pemPublic(t, &ks.rsa.PublicKey, "rsa"), pemPublic(t, ks.ed.Public(), "")...)
		v, err := NewVerifier(JWTConfig{
			Secret:        string(ks.secret),
			PublicKeyFile: writeFile(t, "keys.pem", pems),
			Issuer:        "issuer",
			Audience:      "pgtenant",
		}, nil, WithClock(func() time.Time { return testNow }))
		if err != nil {
			panic(err)
		}
		ok := claims(map[string]any{"iss": "issuer", "aud": "pgtenant"})
		fuzzState.s = fuzzSetup{v: v, secret: ks.secret, seeds: []string{
			sign(t, jwt.SigningMethodHS256, ks.secret, nil, ok),
			sign(t, jwt.SigningMethodRS256, ks.rsa, map[string]any{"kid": "rsa"}, ok),
			sign(t, jwt.SigningMethodEdDSA, ks.ed, nil, ok),
			sign(t, jwt.SigningMethodHS256, ks.secret, nil, claims(map[string]any{"exp": 0})),
			rawToken(`{"alg":"none"}`, `{"org_id":"acme"}`, nil),
			rawToken(`{"alg":"HS256","kid":7}`, `{"org_id":1}`, []byte("x")),
			"", "a.b.c", "..", "eyJ.eyJ.", "not a jwt",
		}}
	})
	return fuzzState.s
}

// checkFuzzResult holds for every input: a success names a tenant id of the
// default format; a failure is a FATAL auth error with a known reason whose
// text is plain ASCII (so it cannot carry raw bytes of the input).
func checkFuzzResult(t *testing.T, id Identity, err error) {
	if err == nil {
		if !safeOrg(id.Org) || !defaultOrgRE.MatchString(id.Org) {
			t.Fatalf("accepted unusable org %q", id.Org)
		}
		return
	}
	var pe *pgerr.Error
	if !errors.As(err, &pe) {
		t.Fatalf("error %T is not a *pgerr.Error: %v", err, err)
	}
	if !pe.Fatal() || (pe.Code != pgerr.InvalidPassword && pe.Code != pgerr.InvalidAuthorization) {
		t.Fatalf("error %s %s: %v", pe.Severity, pe.Code, pe)
	}
	if !slices.Contains(allReasons, pe.Reason) {
		t.Fatalf("unknown reason %q", pe.Reason)
	}
	for _, r := range err.Error() {
		if r < 0x20 || r > 0x7e {
			t.Fatalf("error text %q has a non-printable or non-ASCII character", err)
		}
	}
}

func FuzzVerify(f *testing.F) {
	s := fuzzVerifier(f)
	for _, seed := range s.seeds {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, token string) {
		id, err := s.v.Verify(token)
		checkFuzzResult(t, id, err)
	})
}

// FuzzSignedClaims signs arbitrary header and claims JSON with the
// configured secret, so that the claim checks see inputs a plain string
// fuzzer would never get past the signature.
func FuzzSignedClaims(f *testing.F) {
	s := fuzzVerifier(f)
	f.Add(`{"alg":"HS256"}`, `{"org_id":"acme","iss":"issuer","aud":["x","pgtenant"],"exp":1893456000}`)
	f.Add(`{"alg":"HS256","kid":"rsa"}`, `{"org_id":"acme"}`)
	f.Add(`{"alg":"HS512"}`, `{"app":{"org":"a"},"org_id":1e400}`)
	f.Add(`{"alg":"HS256","crit":["exp"]}`, `{"org_id":null,"exp":-1e300,"nbf":"x"}`)
	f.Fuzz(func(t *testing.T, header, payload string) {
		enc := base64.RawURLEncoding
		unsigned := enc.EncodeToString([]byte(header)) + "." + enc.EncodeToString([]byte(payload))
		mac := hmac.New(sha256.New, s.secret)
		mac.Write([]byte(unsigned))
		id, err := s.v.Verify(unsigned + "." + enc.EncodeToString(mac.Sum(nil)))
		checkFuzzResult(t, id, err)
	})
}
