package auth

import (
	"errors"
	"fmt"
	"regexp"
	"strings"
	"time"
)

// Defaults and limits of the auth.jwt section.
const (
	// DefaultOrgClaim is the claim that names the tenant organization.
	DefaultOrgClaim = "org_id"
	// DefaultLeeway is the clock skew tolerated on exp, nbf and iat.
	DefaultLeeway = 30 * time.Second
	// DefaultOrgPattern is the tenant-id format: no quotes, no spaces, no
	// backslashes, at most 63 characters; UUIDs and slugs pass.
	DefaultOrgPattern = `^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$`
	// MinSecretLen is the shortest HMAC secret accepted, in bytes (256 bits).
	MinSecretLen = 32
	// MaxTokenSize is the largest token Verify parses, in bytes.
	MaxTokenSize = 16 << 10
)

// JWTConfig is the auth.jwt section of the pgtenant config. At least one key
// source (Secret, SecretFile, PublicKeyFile, JWKSFile) must be set; keys from
// all of them are used together. Call SetDefaults before use.
type JWTConfig struct {
	// Secret is an HS256/384/512 shared secret of at least MinSecretLen bytes.
	// Prefer SecretFile or the environment over writing it in a config file.
	Secret string `mapstructure:"secret"`
	// SecretFile holds the HMAC secret; one trailing newline is removed.
	SecretFile string `mapstructure:"secret_file"`
	// PublicKeyFile holds one or more PEM blocks (PUBLIC KEY, RSA PUBLIC KEY
	// or CERTIFICATE): RSA verifies RS*/PS*, ECDSA the ES* of its curve,
	// Ed25519 EdDSA. A block may carry a "kid: <id>" PEM header.
	PublicKeyFile string `mapstructure:"public_key_file"`
	// JWKSFile holds a JSON Web Key Set (RSA, EC P-256/384/521, OKP Ed25519
	// and oct keys). Keys whose use is not "sig" are ignored.
	JWKSFile string `mapstructure:"jwks_file"`
	// Issuer, when set, is the required iss claim.
	Issuer string `mapstructure:"issuer"`
	// Audience, when set, must be the aud claim or one of its elements.
	Audience string `mapstructure:"audience"`
	// OrgClaim names the claim holding the tenant organization id. A dotted
	// path ("app_metadata.org") reaches into nested objects; a claim whose
	// literal name contains the dots wins over the path.
	OrgClaim string `mapstructure:"org_claim"`
	// Leeway is the clock skew tolerated on exp, nbf and iat. Zero means
	// DefaultLeeway.
	Leeway time.Duration `mapstructure:"leeway"`
}

// SetDefaults fills the fields left empty with their default values.
func (c *JWTConfig) SetDefaults() {
	if c.OrgClaim == "" {
		c.OrgClaim = DefaultOrgClaim
	}
	if c.Leeway == 0 {
		c.Leeway = DefaultLeeway
	}
}

// Validate rejects bad settings and combinations without touching the files;
// NewVerifier reports problems with the files' contents. Each message names
// the offending key.
func (c JWTConfig) Validate() error {
	var errs []error
	if c.Secret == "" && c.SecretFile == "" && c.PublicKeyFile == "" && c.JWKSFile == "" {
		errs = append(errs, errors.New("auth.jwt: no verification key configured; set secret_file (or secret), public_key_file or jwks_file"))
	}
	if c.Secret != "" && c.SecretFile != "" {
		errs = append(errs, errors.New("auth.jwt.secret: set either secret or secret_file, not both"))
	}
	if c.Secret != "" {
		if err := checkSecretLen(len(c.Secret)); err != nil {
			errs = append(errs, fmt.Errorf("auth.jwt.secret: %w", err))
		}
	}
	if c.Leeway < 0 {
		errs = append(errs, fmt.Errorf("auth.jwt.leeway: %s is negative; use a small positive duration such as 30s", c.Leeway))
	}
	if c.OrgClaim != "" {
		if err := checkClaimPath(c.OrgClaim); err != nil {
			errs = append(errs, fmt.Errorf("auth.jwt.org_claim: %w", err))
		}
	}
	return errors.Join(errs...)
}

func checkSecretLen(n int) error {
	if n < MinSecretLen {
		return fmt.Errorf("the HMAC secret is %d bytes; it must be at least %d bytes (generate one with `openssl rand -base64 48`)", n, MinSecretLen)
	}
	return nil
}

// checkClaimPath accepts a claim name or a dotted path without empty segments.
func checkClaimPath(path string) error {
	if strings.TrimSpace(path) != path {
		return fmt.Errorf("%q has leading or trailing spaces", path)
	}
	for seg := range strings.SplitSeq(path, ".") {
		if seg == "" {
			return fmt.Errorf("%q has an empty path segment; write a claim name or a dotted path such as \"app_metadata.org\"", path)
		}
	}
	return nil
}

// anchoredPattern makes pattern match whole strings only, so that a pattern
// written without ^ and $ cannot accept a value by matching part of it.
func anchoredPattern(pattern *regexp.Regexp) (*regexp.Regexp, error) {
	if pattern == nil {
		pattern = regexp.MustCompile(DefaultOrgPattern)
	}
	return regexp.Compile(`\A(?:` + pattern.String() + `)\z`)
}

// HMACSecret returns the configured shared secret (Secret, or the contents
// of SecretFile read as NewVerifier reads it), for minting tokens.
func (c JWTConfig) HMACSecret() ([]byte, error) {
	switch {
	case c.Secret != "":
		return []byte(c.Secret), nil
	case c.SecretFile != "":
		s, err := readSecretFile(c.SecretFile)
		if err != nil {
			return nil, fmt.Errorf("auth.jwt.secret_file: %w", err)
		}
		return s, nil
	}
	return nil, fmt.Errorf("no HMAC secret: set auth.jwt.secret_file or PGTENANT_AUTH_JWT_SECRET")
}
