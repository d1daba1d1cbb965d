package auth

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rsa"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"math/big"
	"slices"
	"strings"
)

// jwk is one JSON Web Key (RFC 7517/7518/8037); only the members needed to
// verify signatures are read.
type jwk struct {
	Kty    string   `json:"kty"`
	Kid    string   `json:"kid"`
	Use    string   `json:"use"`
	Alg    string   `json:"alg"`
	KeyOps []string `json:"key_ops"`
	Crv    string   `json:"crv"`
	N      string   `json:"n"`
	E      string   `json:"e"`
	X      string   `json:"x"`
	Y      string   `json:"y"`
	K      string   `json:"k"`
	D      string   `json:"d"` // private; its presence is refused
}

// parseJWKS reads a JSON Web Key Set (or a single JWK) and returns its
// signature keys. Keys meant for other uses, of unsupported types or with
// non-signature algorithms are skipped; a usable key with bad material is an
// error, so a typo does not silently remove a key.
func parseJWKS(data []byte) ([]verifyKey, error) {
	var set struct {
		Keys []json.RawMessage `json:"keys"`
		Kty  string            `json:"kty"`
	}
	if err := json.Unmarshal(data, &set); err != nil {
		return nil, jsonError(err)
	}
	raws := set.Keys
	switch {
	case raws == nil && set.Kty != "":
		raws = []json.RawMessage{data}
	case raws == nil:
		return nil, errors.New(`not a JSON Web Key Set: no "keys" array`)
	}
	var keys []verifyKey
	for i, raw := range raws {
		var k jwk
		if err := json.Unmarshal(raw, &k); err != nil {
			return nil, fmt.Errorf("key %d: %w", i, jsonError(err))
		}
		vk, ok, err := k.verifyKey()
		if err != nil {
			if k.Kid != "" {
				return nil, fmt.Errorf("key %d (kid %q): %w", i, k.Kid, err)
			}
			return nil, fmt.Errorf("key %d: %w", i, err)
		}
		if ok {
			keys = append(keys, vk)
		}
	}
	if len(keys) == 0 {
		return nil, errors.New(`no signature verification key (keys whose use is not "sig", with non-signature algorithms or of unsupported types are ignored)`)
	}
	return keys, nil
}

// jsonError describes a JSON error without quoting the input, which may hold
// secret key material.
func jsonError(err error) error {
	var syn *json.SyntaxError
	if errors.As(err, &syn) {
		return fmt.Errorf("invalid JSON at byte offset %d", syn.Offset)
	}
	var typ *json.UnmarshalTypeError
	if errors.As(err, &typ) {
		return fmt.Errorf("invalid JSON: %s must not be a JSON %s", typ.Field, typ.Value)
	}
	return errors.New("invalid JSON")
}

// verifyKey converts k; ok is false for keys that are skipped.
func (k jwk) verifyKey() (vk verifyKey, ok bool, err error) {
	if k.Use != "" && k.Use != "sig" {
		return verifyKey{}, false, nil
	}
	if len(k.KeyOps) > 0 && !slices.Contains(k.KeyOps, "verify") {
		return verifyKey{}, false, nil
	}
	if k.Alg != "" && !supportedAlg(k.Alg) {
		return verifyKey{}, false, nil
	}
	if k.D != "" {
		return verifyKey{}, false, errors.New(`the key holds private key material ("d"); give pgtenant only public keys`)
	}
	switch k.Kty {
	case "RSA":
		vk, err = k.rsa()
	case "EC":
		if ecCurve(k.Crv) == nil { // secp256k1, brainpool...: not ours to verify
			return verifyKey{}, false, nil
		}
		vk, err = k.ecdsa()
	case "OKP":
		if k.Crv != "Ed25519" {
			return verifyKey{}, false, nil
		}
		vk, err = k.ed25519()
	case "oct":
		vk, err = k.oct()
	default:
		return verifyKey{}, false, nil
	}
	if err != nil {
		return verifyKey{}, false, err
	}
	vk, err = vk.restrictTo(k.Alg)
	return vk, err == nil, err
}

func (k jwk) rsa() (verifyKey, error) {
	n, err := b64(k.N, "n")
	if err != nil {
		return verifyKey{}, err
	}
	e, err := b64(k.E, "e")
	if err != nil {
		return verifyKey{}, err
	}
	e = bytes.TrimLeft(e, "\x00")
	if len(e) > 4 {
		return verifyKey{}, errors.New(`the RSA exponent "e" is too large`)
	}
	exp := 0
	for _, b := range e {
		exp = exp<<8 | int(b)
	}
	if exp < 3 || exp%2 == 0 {
		return verifyKey{}, errors.New(`the RSA exponent "e" is invalid`)
	}
	return publicKey(k.Kid, &rsa.PublicKey{N: new(big.Int).SetBytes(n), E: exp})
}

func (k jwk) ecdsa() (verifyKey, error) {
	curve := ecCurve(k.Crv)
	size := (curve.Params().BitSize + 7) / 8
	x, err := b64(k.X, "x")
	if err != nil {
		return verifyKey{}, err
	}
	y, err := b64(k.Y, "y")
	if err != nil {
		return verifyKey{}, err
	}
	if len(x) != size || len(y) != size {
		return verifyKey{}, fmt.Errorf(`the coordinates "x" and "y" of a %s key must be %d bytes each`, k.Crv, size)
	}
	point := append(append([]byte{4}, x...), y...)
	pub, err := ecdsa.ParseUncompressedPublicKey(curve, point)
	if err != nil {
		return verifyKey{}, errors.New("the EC point is not on the curve")
	}
	return publicKey(k.Kid, pub)
}

func (k jwk) ed25519() (verifyKey, error) {
	x, err := b64(k.X, "x")
	if err != nil {
		return verifyKey{}, err
	}
	if len(x) != ed25519.PublicKeySize {
		return verifyKey{}, fmt.Errorf(`an Ed25519 key "x" must be %d bytes`, ed25519.PublicKeySize)
	}
	return publicKey(k.Kid, ed25519.PublicKey(x))
}

func (k jwk) oct() (verifyKey, error) {
	secret, err := b64(k.K, "k")
	if err != nil {
		return verifyKey{}, err
	}
	return hmacKey(k.Kid, secret)
}

// b64 decodes a base64url JWK member, tolerating padding. The error never
// quotes the value.
func b64(s, member string) ([]byte, error) {
	if s == "" {
		return nil, fmt.Errorf("member %q is missing", member)
	}
	b, err := base64.RawURLEncoding.DecodeString(strings.TrimRight(s, "="))
	if err != nil {
		return nil, fmt.Errorf("member %q is not base64url", member)
	}
	return b, nil
}
