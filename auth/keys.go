package auth

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"slices"

	"github.com/pgtenant/pgtenant/internal/secretfile"
)

// Algorithms each key type may verify. A key never verifies an algorithm of
// another family: that is what defeats algorithm confusion.
var (
	hmacAlgs = []string{"HS256", "HS384", "HS512"}
	rsaAlgs  = []string{"RS256", "RS384", "RS512", "PS256", "PS384", "PS512"}
	edAlgs   = []string{"EdDSA"}
	ecAlgs   = map[string][]string{"P-256": {"ES256"}, "P-384": {"ES384"}, "P-521": {"ES512"}}
)

// minRSABits is the smallest RSA modulus accepted.
const minRSABits = 2048

// maxKeyFileSize bounds what is read from a key file, so that pointing a
// setting at the wrong file fails quickly.
const maxKeyFileSize = 1 << 20

// supportedAlg reports whether alg is a signature algorithm some key type verifies.
func supportedAlg(alg string) bool {
	if slices.Contains(hmacAlgs, alg) || slices.Contains(rsaAlgs, alg) || slices.Contains(edAlgs, alg) {
		return true
	}
	for _, algs := range ecAlgs {
		if slices.Contains(algs, alg) {
			return true
		}
	}
	return false
}

// verifyKey is one configured key and the algorithms it may verify.
type verifyKey struct {
	kid  string   // "" when the key has none
	algs []string // never empty
	key  any      // []byte, *rsa.PublicKey, *ecdsa.PublicKey or ed25519.PublicKey
}

func (k verifyKey) allows(alg string) bool { return slices.Contains(k.algs, alg) }

// restrictTo narrows k to alg, the algorithm its key set declares for it.
func (k verifyKey) restrictTo(alg string) (verifyKey, error) {
	if alg == "" {
		return k, nil
	}
	if !k.allows(alg) {
		return k, fmt.Errorf("alg %s does not fit the key type (it allows %v)", alg, k.algs)
	}
	k.algs = []string{alg}
	return k, nil
}

func hmacKey(kid string, secret []byte) (verifyKey, error) {
	if err := checkSecretLen(len(secret)); err != nil {
		return verifyKey{}, err
	}
	return verifyKey{kid: kid, algs: hmacAlgs, key: bytes.Clone(secret)}, nil
}

// publicKey binds an asymmetric public key to the algorithms of its type.
func publicKey(kid string, pub any) (verifyKey, error) {
	switch pub := pub.(type) {
	case *rsa.PublicKey:
		if bits := pub.N.BitLen(); bits < minRSABits {
			return verifyKey{}, fmt.Errorf("the RSA key has %d bits; at least %d are required", bits, minRSABits)
		}
		return verifyKey{kid: kid, algs: rsaAlgs, key: pub}, nil
	case *ecdsa.PublicKey:
		algs, ok := ecAlgs[pub.Curve.Params().Name]
		if !ok {
			return verifyKey{}, fmt.Errorf("the ECDSA curve %s is not supported; use P-256, P-384 or P-521", pub.Curve.Params().Name)
		}
		return verifyKey{kid: kid, algs: algs, key: pub}, nil
	case ed25519.PublicKey:
		if len(pub) != ed25519.PublicKeySize {
			return verifyKey{}, errors.New("the Ed25519 key has the wrong length")
		}
		return verifyKey{kid: kid, algs: edAlgs, key: pub}, nil
	default:
		return verifyKey{}, fmt.Errorf("key type %T is not supported; use RSA, ECDSA (P-256/384/521) or Ed25519", pub)
	}
}

// parsePEMKeys reads every PEM block of data as a public key. A block may name
// its key id in a "kid" PEM header.
func parsePEMKeys(data []byte) ([]verifyKey, error) {
	var keys []verifyKey
	for n := 1; ; n++ {
		block, rest := pem.Decode(data)
		if block == nil {
			if bytes.Contains(data, []byte("-----BEGIN")) {
				return nil, fmt.Errorf("PEM block %d could not be decoded", n)
			}
			break
		}
		data = rest
		k, err := pemKey(block)
		if err != nil {
			return nil, fmt.Errorf("PEM block %d (%s): %w", n, block.Type, err)
		}
		keys = append(keys, k)
	}
	if len(keys) == 0 {
		return nil, errors.New("no PEM block found; expected -----BEGIN PUBLIC KEY-----")
	}
	return keys, nil
}

func pemKey(block *pem.Block) (verifyKey, error) {
	var (
		pub any
		err error
	)
	switch block.Type {
	case "PUBLIC KEY":
		pub, err = x509.ParsePKIXPublicKey(block.Bytes)
	case "RSA PUBLIC KEY":
		pub, err = x509.ParsePKCS1PublicKey(block.Bytes)
	case "CERTIFICATE":
		// Only the key is used; the certificate's dates and chain are not.
		var cert *x509.Certificate
		if cert, err = x509.ParseCertificate(block.Bytes); err == nil {
			pub = cert.PublicKey
		}
	case "PRIVATE KEY", "RSA PRIVATE KEY", "EC PRIVATE KEY", "ENCRYPTED PRIVATE KEY", "OPENSSH PRIVATE KEY":
		return verifyKey{}, errors.New("this is a private key; give pgtenant only the public key (openssl pkey -pubout)")
	default:
		return verifyKey{}, errors.New("unsupported PEM block type; expected PUBLIC KEY, RSA PUBLIC KEY or CERTIFICATE")
	}
	if err != nil {
		return verifyKey{}, err
	}
	return publicKey(block.Headers["kid"], pub)
}

// readKeyFile reads a key file of at most maxKeyFileSize bytes.
func readKeyFile(path string) ([]byte, error) { return secretfile.Read(path, maxKeyFileSize) }

// readSecretFile reads an HMAC secret, dropping one trailing newline (as
// editors and `echo` add).
func readSecretFile(path string) ([]byte, error) { return secretfile.ReadSecret(path, maxKeyFileSize) }

// ecCurve maps a JWK crv to its curve.
func ecCurve(crv string) elliptic.Curve {
	switch crv {
	case "P-256":
		return elliptic.P256()
	case "P-384":
		return elliptic.P384()
	case "P-521":
		return elliptic.P521()
	}
	return nil
}
