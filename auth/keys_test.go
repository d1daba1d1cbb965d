package auth

import (
	"crypto/ed25519"
	"testing"

	"github.com/golang-jwt/jwt/v5"

	"github.com/pgtenant/pgtenant/pgerr"
)

// mixedJWKS trusts an RSA, three EC, an Ed25519 and an oct key, each with a
// kid, plus keys that must be ignored.
func mixedJWKS(t testing.TB) *Verifier {
	ks := testKeys()
	return newTestVerifier(t, JWTConfig{JWKSFile: jwksFile(t,
		with(rsaJWK(&ks.rsa.PublicKey, "rsa"), map[string]any{"use": "sig"}),
		with(rsaJWK(&ks.rsa2.PublicKey, "rsa-rs256"), map[string]any{"alg": "RS256"}),
		ecJWK(t, &ks.p256.PublicKey, "p256"),
		with(ecJWK(t, &ks.p384.PublicKey, "p384"), map[string]any{"alg": "ES384"}),
		ecJWK(t, &ks.p521.PublicKey, "p521"),
		edJWK(ks.ed.Public().(ed25519.PublicKey), "ed"),
		with(octJWK(ks.secret, "oct"), map[string]any{"alg": "HS256"}),
		// Ignored: an encryption key, a key limited to other operations, a
		// key for an encryption algorithm, an X25519 key, an unknown type.
		with(rsaJWK(&ks.rsa2.PublicKey, "enc"), map[string]any{"use": "enc"}),
		with(ecJWK(t, &ks.p256b.PublicKey, "wrap"), map[string]any{"key_ops": []string{"wrapKey"}}),
		with(rsaJWK(&ks.rsa2.PublicKey, "oaep"), map[string]any{"alg": "RSA-OAEP"}),
		map[string]any{"kty": "OKP", "crv": "X25519", "kid": "x25519", "x": b64u(make([]byte, 32))},
		map[string]any{"kty": "AKP", "kid": "pq"},
	)})
}

func TestJWKSFileWithRSAECEd25519AndOctKeys(t *testing.T) {
	t.Parallel()
	ks := testKeys()
	v := mixedJWKS(t)
	kid := func(k string) map[string]any { return map[string]any{"kid": k} }
	for _, tc := range []struct {
		name   string
		token  string
		reason string // "" = accepted
	}{
		{"an RS256 token with the RSA kid is accepted", sign(t, jwt.SigningMethodRS256, ks.rsa, kid("rsa"), claims(nil)), ""},
		{"a PS512 token with the RSA kid is accepted", sign(t, jwt.SigningMethodPS512, ks.rsa, kid("rsa"), claims(nil)), ""},
		{"an ES256 token with the P-256 kid is accepted", sign(t, jwt.SigningMethodES256, ks.p256, kid("p256"), claims(nil)), ""},
		{"an ES384 token with the P-384 kid is accepted", sign(t, jwt.SigningMethodES384, ks.p384, kid("p384"), claims(nil)), ""},
		{"an ES512 token with the P-521 kid is accepted", sign(t, jwt.SigningMethodES512, ks.p521, kid("p521"), claims(nil)), ""},
		{"an EdDSA token with the Ed25519 kid is accepted", sign(t, jwt.SigningMethodEdDSA, ks.ed, kid("ed"), claims(nil)), ""},
		{"an HS256 token with the oct kid is accepted", sign(t, jwt.SigningMethodHS256, ks.secret, kid("oct"), claims(nil)), ""},
		{"a token without kid is tried against the keys of its type", sign(t, jwt.SigningMethodRS256, ks.rsa2, nil, claims(nil)), ""},
		{"a token without kid signed by no listed key is refused", sign(t, jwt.SigningMethodES256, ks.p256b, nil, claims(nil)), ReasonBadSignature},
		{"an unknown kid is refused", sign(t, jwt.SigningMethodRS256, ks.rsa, kid("gone"), claims(nil)), ReasonUnknownKID},
		{"a kid of an encryption key is unknown", sign(t, jwt.SigningMethodRS256, ks.rsa2, kid("enc"), claims(nil)), ReasonUnknownKID},
		{"a kid of a key for other operations is unknown", sign(t, jwt.SigningMethodES256, ks.p256b, kid("wrap"), claims(nil)), ReasonUnknownKID},
		{"a kid of an RSA-OAEP key is unknown", sign(t, jwt.SigningMethodRS256, ks.rsa2, kid("oaep"), claims(nil)), ReasonUnknownKID},
		{"a kid naming one key does not fall back to the key that signed", sign(t, jwt.SigningMethodRS256, ks.rsa2, kid("rsa"), claims(nil)), ReasonBadSignature},
		{"a kid naming an RSA key with an HS256 token is refused", sign(t, jwt.SigningMethodHS256, ks.secret, kid("rsa"), claims(nil)), ReasonAlgNotAllowed},
		{"HS256 signed with the RSA key's modulus under its kid is refused", sign(t, jwt.SigningMethodHS256, ks.rsa.PublicKey.N.Bytes(), kid("rsa"), claims(nil)), ReasonAlgNotAllowed},
		{"a kid naming the oct key with an RS256 token is refused", sign(t, jwt.SigningMethodRS256, ks.rsa, kid("oct"), claims(nil)), ReasonAlgNotAllowed},
		{"a kid naming the P-256 key with an ES384 token is refused", sign(t, jwt.SigningMethodES384, ks.p384, kid("p256"), claims(nil)), ReasonAlgNotAllowed},
		{"a kid naming the Ed25519 key with an ES256 token is refused", sign(t, jwt.SigningMethodES256, ks.p256, kid("ed"), claims(nil)), ReasonAlgNotAllowed},
		{"a key's declared alg must equal the token's", sign(t, jwt.SigningMethodPS256, ks.rsa2, kid("rsa-rs256"), claims(nil)), ReasonAlgNotAllowed},
		{"the oct key's declared alg must equal the token's", sign(t, jwt.SigningMethodHS512, ks.secret, kid("oct"), claims(nil)), ReasonAlgNotAllowed},
		{"a kid that tries path traversal is unknown", sign(t, jwt.SigningMethodHS256, ks.secret, kid("../../etc/passwd"), claims(nil)), ReasonUnknownKID},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			_, err := v.Verify(tc.token)
			checkOutcome(t, err, tc.token, tc.reason)
		})
	}
}

func TestPEMFileWithSeveralBlocks(t *testing.T) {
	t.Parallel()
	ks := testKeys()
	var pems []byte
	pems = append(pems, "# keys of the issuer\n"...)
	pems = append(pems, pemPublic(t, &ks.rsa.PublicKey, "")...)
	pems = append(pems, pemPublic(t, ks.ed.Public(), "ed-2026")...)
	pems = append(pems, pemCertificate(t, ks.p384)...)
	pems = append(pems, pemPublic(t, &ks.p256.PublicKey, "p256-2026")...)
	v := newTestVerifier(t, JWTConfig{PublicKeyFile: writeFile(t, "keys.pem", pems), Secret: string(ks.secret)})
	kid := func(k string) map[string]any { return map[string]any{"kid": k} }
	for _, tc := range []struct {
		name   string
		token  string
		reason string // "" = accepted
	}{
		{"the first block verifies RS256", sign(t, jwt.SigningMethodRS256, ks.rsa, nil, claims(nil)), ""},
		{"a block's kid header names its key", sign(t, jwt.SigningMethodEdDSA, ks.ed, kid("ed-2026"), claims(nil)), ""},
		{"a key without kid is also tried for kid-less tokens", sign(t, jwt.SigningMethodEdDSA, ks.ed, nil, claims(nil)), ""},
		{"a certificate block verifies ES384", sign(t, jwt.SigningMethodES384, ks.p384, nil, claims(nil)), ""},
		{"the last block verifies ES256 by kid", sign(t, jwt.SigningMethodES256, ks.p256, kid("p256-2026"), claims(nil)), ""},
		{"the secret still verifies HS256", sign(t, jwt.SigningMethodHS256, ks.secret, nil, claims(nil)), ""},
		{"a kid that no block carries is refused", sign(t, jwt.SigningMethodRS256, ks.rsa, kid("rsa"), claims(nil)), ReasonUnknownKID},
		{"a kid naming the Ed25519 block with an ES256 token is refused", sign(t, jwt.SigningMethodES256, ks.p256, kid("ed-2026"), claims(nil)), ReasonAlgNotAllowed},
		{"an ES512 token is refused without a P-521 key", sign(t, jwt.SigningMethodES512, ks.p521, nil, claims(nil)), ReasonAlgNotAllowed},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			_, err := v.Verify(tc.token)
			checkOutcome(t, err, tc.token, tc.reason)
		})
	}
}

func TestSecretFileHasItsTrailingNewlineTrimmed(t *testing.T) {
	t.Parallel()
	secret := []byte("0123456789abcdef0123456789abcdef-secret")
	for _, tc := range []struct {
		name string
		file string
	}{
		{"a newline is trimmed", string(secret) + "\n"},
		{"a CRLF is trimmed", string(secret) + "\r\n"},
		{"a file without newline is used as is", string(secret)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			v := newTestVerifier(t, JWTConfig{SecretFile: writeFile(t, "secret", []byte(tc.file))})
			if _, err := v.Verify(sign(t, jwt.SigningMethodHS256, secret, nil, claims(nil))); err != nil {
				t.Fatalf("token signed with the trimmed secret refused: %v", err)
			}
			if tc.file != string(secret) {
				token := sign(t, jwt.SigningMethodHS256, []byte(tc.file), nil, claims(nil))
				_, err := v.Verify(token)
				checkRefused(t, err, token, pgerr.InvalidPassword, ReasonBadSignature)
			}
		})
	}
}
