package auth

import (
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"math/big"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/pgtenant/pgtenant/pgerr"
)

// testNow is the clock of every test verifier.
var testNow = time.Date(2026, 11, 27, 10, 0, 0, 0, time.UTC)

// keySet holds keys generated once per test binary; RSA generation is slow.
type keySet struct {
	secret, secret2 []byte
	rsa, rsa2       *rsa.PrivateKey
	p256, p256b     *ecdsa.PrivateKey
	p384, p521      *ecdsa.PrivateKey
	ed, ed2         ed25519.PrivateKey
}

var testKeys = sync.OnceValue(func() *keySet {
	must := func(err error) {
		if err != nil {
			panic(err)
		}
	}
	ks := &keySet{secret: make([]byte, 48), secret2: make([]byte, 32)}
	_, err := rand.Read(ks.secret)
	must(err)
	_, err = rand.Read(ks.secret2)
	must(err)
	ks.rsa, err = rsa.GenerateKey(rand.Reader, 2048)
	must(err)
	ks.rsa2, err = rsa.GenerateKey(rand.Reader, 2048)
	must(err)
	ks.p256, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	must(err)
	ks.p256b, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	must(err)
	ks.p384, err = ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	must(err)
	ks.p521, err = ecdsa.GenerateKey(elliptic.P521(), rand.Reader)
	must(err)
	_, ks.ed, err = ed25519.GenerateKey(rand.Reader)
	must(err)
	_, ks.ed2, err = ed25519.GenerateKey(rand.Reader)
	must(err)
	return ks
})

// claims returns the claims of a valid token at testNow; extra entries
// replace them, and a nil value deletes the claim.
func claims(extra map[string]any) jwt.MapClaims {
	c := jwt.MapClaims{
		"sub":    "user-1",
		"org_id": "acme",
		"iat":    testNow.Add(-time.Minute).Unix(),
		"exp":    testNow.Add(time.Hour).Unix(),
	}
	for k, v := range extra {
		if v == nil {
			delete(c, k)
			continue
		}
		c[k] = v
	}
	return c
}

// sign returns a token for c signed by key with method; header entries are
// added to the header (a nil value deletes the entry).
func sign(t testing.TB, method jwt.SigningMethod, key any, header map[string]any, c jwt.MapClaims) string {
	t.Helper()
	tok := jwt.NewWithClaims(method, c)
	for k, v := range header {
		if v == nil {
			delete(tok.Header, k)
			continue
		}
		tok.Header[k] = v
	}
	s, err := tok.SignedString(key)
	if err != nil {
		t.Fatalf("sign: %v", err)
	}
	return s
}

// rawToken assembles a token from JSON header and claims and a raw signature,
// for tokens the library would refuse to produce.
func rawToken(header, claims string, sig []byte) string {
	enc := base64.RawURLEncoding
	return enc.EncodeToString([]byte(header)) + "." + enc.EncodeToString([]byte(claims)) + "." + enc.EncodeToString(sig)
}

func writeFile(t testing.TB, name string, data []byte) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// pemPublic encodes pub as a PUBLIC KEY block, with a kid header when kid != "".
func pemPublic(t testing.TB, pub any, kid string) []byte {
	t.Helper()
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		t.Fatal(err)
	}
	block := &pem.Block{Type: "PUBLIC KEY", Bytes: der}
	if kid != "" {
		block.Headers = map[string]string{"kid": kid}
	}
	return pem.EncodeToMemory(block)
}

func pemCertificate(t testing.TB, key *ecdsa.PrivateKey) []byte {
	t.Helper()
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		Subject:      pkix.Name{CommonName: "issuer"},
		NotBefore:    testNow.Add(-time.Hour),
		NotAfter:     testNow.Add(time.Hour),
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
}

// JWK builders for JWKS files written by tests.
func b64u(b []byte) string { return base64.RawURLEncoding.EncodeToString(b) }

func rsaJWK(pub *rsa.PublicKey, kid string) map[string]any {
	return map[string]any{"kty": "RSA", "kid": kid, "n": b64u(pub.N.Bytes()), "e": b64u(big.NewInt(int64(pub.E)).Bytes())}
}

func ecJWK(t testing.TB, pub *ecdsa.PublicKey, kid string) map[string]any {
	t.Helper()
	point, err := pub.Bytes()
	if err != nil {
		t.Fatal(err)
	}
	size := (len(point) - 1) / 2
	return map[string]any{"kty": "EC", "kid": kid, "crv": pub.Curve.Params().Name,
		"x": b64u(point[1 : 1+size]), "y": b64u(point[1+size:])}
}

func edJWK(pub ed25519.PublicKey, kid string) map[string]any {
	return map[string]any{"kty": "OKP", "kid": kid, "crv": "Ed25519", "x": b64u(pub)}
}

func octJWK(secret []byte, kid string) map[string]any {
	return map[string]any{"kty": "oct", "kid": kid, "k": b64u(secret)}
}

// with returns a copy of m with extra members.
func with(m map[string]any, extra map[string]any) map[string]any {
	out := make(map[string]any, len(m)+len(extra))
	for k, v := range m {
		out[k] = v
	}
	for k, v := range extra {
		out[k] = v
	}
	return out
}

func jwksFile(t testing.TB, keys ...map[string]any) string {
	t.Helper()
	data, err := json.Marshal(map[string]any{"keys": keys})
	if err != nil {
		t.Fatal(err)
	}
	return writeFile(t, "jwks.json", data)
}

func newTestVerifier(t testing.TB, cfg JWTConfig) *Verifier {
	t.Helper()
	v, err := NewVerifier(cfg, nil, WithClock(func() time.Time { return testNow }))
	if err != nil {
		t.Fatalf("NewVerifier: %v", err)
	}
	return v
}

// checkRefused asserts err is a FATAL *pgerr.Error with code and reason, and
// that nothing of the token shows in any text the error carries.
// checkOutcome checks that a token was accepted (reason "") or refused as a
// bad token (28P01) for reason.
func checkOutcome(t testing.TB, err error, token, reason string) {
	t.Helper()
	if reason == "" {
		if err != nil {
			t.Fatalf("refused: %v", err)
		}
		return
	}
	checkRefused(t, err, token, pgerr.InvalidPassword, reason)
}

func checkRefused(t testing.TB, err error, token, code, reason string) {
	t.Helper()
	if err == nil {
		t.Fatalf("token accepted; want %s %s", code, reason)
	}
	var pe *pgerr.Error
	if !errors.As(err, &pe) {
		t.Fatalf("error %T is not a *pgerr.Error: %v", err, err)
	}
	if !pe.Fatal() || pe.Code != code || pe.Reason != reason {
		t.Errorf("got %s %s %s (%q); want FATAL %s %s", pe.Severity, pe.Code, pe.Reason, pe.Message, code, reason)
	}
	checkNoLeak(t, pe, token)
}

// checkNoLeak asserts that no text of e contains the token or one of its
// segments longer than a few bytes.
func checkNoLeak(t testing.TB, e *pgerr.Error, token string) {
	t.Helper()
	texts := []string{e.Error(), e.Message, e.Detail, e.Hint}
	pieces := []string{strings.TrimSpace(token)}
	for _, seg := range strings.Split(token, ".") {
		if len(seg) >= 8 {
			pieces = append(pieces, seg)
		}
	}
	for _, text := range texts {
		for _, p := range pieces {
			if len(p) >= 8 && strings.Contains(text, p) {
				t.Errorf("error text %q contains part of the token", text)
			}
		}
	}
}
