package auth

import (
	"crypto/ed25519"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestSetDefaultsFillsOnlyEmptyFields(t *testing.T) {
	t.Parallel()
	var c JWTConfig
	c.SetDefaults()
	if c.OrgClaim != DefaultOrgClaim || c.Leeway != DefaultLeeway {
		t.Errorf("defaults %+v", c)
	}
	c = JWTConfig{OrgClaim: "tenant", Leeway: 5 * time.Second}
	c.SetDefaults()
	if c.OrgClaim != "tenant" || c.Leeway != 5*time.Second {
		t.Errorf("SetDefaults overwrote settings: %+v", c)
	}
}

func TestValidateNamesTheBadKey(t *testing.T) {
	t.Parallel()
	good := strings.Repeat("s", MinSecretLen)
	for _, tc := range []struct {
		name string
		cfg  JWTConfig
		want string // substring of the error; "" = valid
	}{
		{"a secret of the minimum length is valid", JWTConfig{Secret: good}, ""},
		{"a public key file alone is valid", JWTConfig{PublicKeyFile: "keys.pem"}, ""},
		{"a JWKS file alone is valid", JWTConfig{JWKSFile: "jwks.json"}, ""},
		{"no key source is refused", JWTConfig{Issuer: "x"}, "auth.jwt: no verification key configured"},
		{"secret and secret_file together are refused", JWTConfig{Secret: good, SecretFile: "s"}, "auth.jwt.secret: set either secret or secret_file"},
		{"a short secret is refused with the minimum", JWTConfig{Secret: "short"}, "auth.jwt.secret: the HMAC secret is 5 bytes; it must be at least 32 bytes"},
		{"a negative leeway is refused", JWTConfig{Secret: good, Leeway: -time.Second}, "auth.jwt.leeway:"},
		{"an org claim with an empty segment is refused", JWTConfig{Secret: good, OrgClaim: "app..org"}, "auth.jwt.org_claim:"},
		{"an org claim ending in a dot is refused", JWTConfig{Secret: good, OrgClaim: "org."}, "auth.jwt.org_claim:"},
		{"an org claim with surrounding spaces is refused", JWTConfig{Secret: good, OrgClaim: " org"}, "auth.jwt.org_claim:"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			err := tc.cfg.Validate()
			switch {
			case tc.want == "" && err != nil:
				t.Fatalf("Validate: %v", err)
			case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
				t.Fatalf("Validate = %v; want an error containing %q", err, tc.want)
			}
			if err != nil && tc.cfg.Secret != "" && strings.Contains(err.Error(), tc.cfg.Secret) {
				t.Errorf("error %q contains the secret", err)
			}
		})
	}
}

func TestNewVerifierReportsBadKeyFiles(t *testing.T) {
	t.Parallel()
	ks := testKeys()
	shortSecret := "tooshort-but-secret"
	small, err := rsa.GenerateKey(rand.Reader, 1024)
	if err != nil {
		t.Fatal(err)
	}
	privDER, err := x509.MarshalPKCS8PrivateKey(ks.p256)
	if err != nil {
		t.Fatal(err)
	}
	privPEM := pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: privDER})
	octSecret := []byte("short-oct-secret")
	jwks := func(keys ...map[string]any) []byte {
		data, err := json.Marshal(map[string]any{"keys": keys})
		if err != nil {
			t.Fatal(err)
		}
		return data
	}
	file := func(name string, data []byte) string { return writeFile(t, name, data) }

	for _, tc := range []struct {
		name   string
		cfg    JWTConfig
		want   string
		secret string // must not appear in the error
	}{
		{"a short secret file is refused with the minimum", JWTConfig{SecretFile: file("s", []byte(shortSecret+"\n"))},
			"auth.jwt.secret_file: ", shortSecret},
		{"an empty secret file is refused", JWTConfig{SecretFile: file("s", nil)},
			"the HMAC secret is 0 bytes; it must be at least 32 bytes", ""},
		{"a missing secret file is refused", JWTConfig{SecretFile: filepath.Join(t.TempDir(), "nope")},
			"auth.jwt.secret_file: open", ""},
		{"a missing public key file is refused", JWTConfig{PublicKeyFile: filepath.Join(t.TempDir(), "nope")},
			"auth.jwt.public_key_file: open", ""},
		{"a public key file without PEM is refused", JWTConfig{PublicKeyFile: file("k.pem", []byte("hello"))},
			"auth.jwt.public_key_file: ", ""},
		{"a private key in the public key file is refused", JWTConfig{PublicKeyFile: file("k.pem", privPEM)},
			"this is a private key; give pgtenant only the public key", ""},
		{"a corrupt second PEM block is refused", JWTConfig{PublicKeyFile: file("k.pem", append(pemPublic(t, &ks.rsa.PublicKey, ""), "-----BEGIN PUBLIC KEY-----\n!!\n"...))},
			"PEM block 2 could not be decoded", ""},
		{"an RSA key under 2048 bits is refused", JWTConfig{PublicKeyFile: file("k.pem", pemPublic(t, &small.PublicKey, ""))},
			"the RSA key has 1024 bits; at least 2048 are required", ""},
		{"a JWKS file that is not JSON is refused", JWTConfig{JWKSFile: file("j.json", []byte(`{"keys": [ {"kty":"oct","k":"c2VjcmV0`+"\x01"))},
			"auth.jwt.jwks_file: ", "c2VjcmV0"},
		{"a JWKS file without keys is refused", JWTConfig{JWKSFile: file("j.json", []byte(`{"foo":1}`))},
			`no "keys" array`, ""},
		{"a JWKS file with only encryption keys is refused", JWTConfig{JWKSFile: file("j.json", jwks(with(rsaJWK(&ks.rsa.PublicKey, "e"), map[string]any{"use": "enc"})))},
			"no signature verification key", ""},
		{"a JWKS key with private material is refused", JWTConfig{JWKSFile: file("j.json", jwks(with(ecJWK(t, &ks.p256.PublicKey, "p"), map[string]any{"d": "AAAA"})))},
			`key 0 (kid "p"): the key holds private key material`, ""},
		{"a JWKS key whose alg does not fit its type is refused", JWTConfig{JWKSFile: file("j.json", jwks(with(rsaJWK(&ks.rsa.PublicKey, "r"), map[string]any{"alg": "HS256"})))},
			"alg HS256 does not fit the key type", ""},
		{"a JWKS EC key whose alg does not fit its curve is refused", JWTConfig{JWKSFile: file("j.json", jwks(with(ecJWK(t, &ks.p256.PublicKey, "p"), map[string]any{"alg": "ES384"})))},
			"alg ES384 does not fit the key type", ""},
		{"a JWKS EC point off the curve is refused", JWTConfig{JWKSFile: file("j.json", jwks(with(ecJWK(t, &ks.p256.PublicKey, "p"), map[string]any{"y": b64u(make([]byte, 32))})))},
			"the EC point is not on the curve", ""},
		{"a short JWKS oct key is refused", JWTConfig{JWKSFile: file("j.json", jwks(octJWK(octSecret, "o")))},
			"the HMAC secret is 16 bytes; it must be at least 32 bytes", string(octSecret)},
		{"a JWKS file with only keys on unsupported curves is refused", JWTConfig{JWKSFile: file("j.json", jwks(map[string]any{"kty": "EC", "crv": "secp256k1", "x": "AA", "y": "AA"}))},
			"no signature verification key", ""},
		{"a JWKS EC coordinate of the wrong length is refused", JWTConfig{JWKSFile: file("j.json", jwks(with(ecJWK(t, &ks.p256.PublicKey, "p"), map[string]any{"x": b64u(make([]byte, 31))})))},
			`"x" and "y" of a P-256 key must be 32 bytes each`, ""},
		{"a JWKS Ed25519 key of the wrong length is refused", JWTConfig{JWKSFile: file("j.json", jwks(edJWK(make([]byte, 31), "e")))},
			`an Ed25519 key "x" must be 32 bytes`, ""},
		{"a JWKS member that is not base64url is refused", JWTConfig{JWKSFile: file("j.json", jwks(map[string]any{"kty": "oct", "k": "not base64!"}))},
			`member "k" is not base64url`, "not base64!"},
		{"a JWKS member of the wrong JSON type is refused", JWTConfig{JWKSFile: file("j.json", jwks(map[string]any{"kty": "RSA", "n": 12345, "e": "AQAB"}))},
			"key 0: invalid JSON: n must not be a JSON number", "12345"},
		{"a JWKS RSA key with an even exponent is refused", JWTConfig{JWKSFile: file("j.json", jwks(with(rsaJWK(&ks.rsa.PublicKey, "r"), map[string]any{"e": b64u([]byte{1, 0, 0})})))},
			`the RSA exponent "e" is invalid`, ""},
		{"a JWKS RSA key under 2048 bits is refused", JWTConfig{JWKSFile: file("j.json", jwks(rsaJWK(&small.PublicKey, "small")))},
			"the RSA key has 1024 bits", ""},
		{"an unsupported PEM block type is refused", JWTConfig{PublicKeyFile: file("k.pem", pem.EncodeToMemory(&pem.Block{Type: "DH PARAMETERS", Bytes: []byte{1}}))},
			"unsupported PEM block type", ""},
		{"a public key file of the wrong size is refused", JWTConfig{PublicKeyFile: file("big.pem", make([]byte, maxKeyFileSize+1))},
			"is larger than 1048576 bytes", ""},
		{"a JWKS RSA key without modulus is refused", JWTConfig{JWKSFile: file("j.json", jwks(map[string]any{"kty": "RSA", "e": "AQAB"}))},
			`member "n" is missing`, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			v, err := NewVerifier(tc.cfg, nil)
			if err == nil {
				t.Fatalf("NewVerifier accepted the config: %v", v)
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %q does not contain %q", err, tc.want)
			}
			if tc.secret != "" && strings.Contains(err.Error(), tc.secret) {
				t.Errorf("error %q contains the secret", err)
			}
		})
	}
}

func TestNewVerifierAcceptsASingleJWK(t *testing.T) {
	t.Parallel()
	ks := testKeys()
	data, err := json.Marshal(edJWK(ks.ed.Public().(ed25519.PublicKey), "ed"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := NewVerifier(JWTConfig{JWKSFile: writeFile(t, "jwk.json", data)}, nil); err != nil {
		t.Fatalf("NewVerifier: %v", err)
	}
}
