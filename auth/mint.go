package auth

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// MintClaims describes a token for Mint.
type MintClaims struct {
	// Org is the tenant organization id; required.
	Org string
	// Subject becomes sub when not empty.
	Subject string
	// TTL is the token's lifetime; at least one second. exp is always written.
	TTL time.Duration
	// Issuer becomes iss when not empty.
	Issuer string
	// Audience becomes aud when not empty.
	Audience string
	// OrgClaim names the org claim; empty means DefaultOrgClaim. A dotted path
	// is written as nested objects ("app_metadata.org" gives
	// {"app_metadata":{"org":...}}), except for a namespaced URL claim
	// ("https://example.com/org"), which is written under its literal name.
	OrgClaim string
	// Roles, when set, makes an admin token (see VerifyAdmin): they are
	// written in RolesClaim (a top-level claim; "roles" when empty), and Org
	// becomes optional.
	Roles      []string
	RolesClaim string
}

// registeredClaims are the claim names Mint writes itself.
var registeredClaims = []string{"iss", "sub", "aud", "exp", "nbf", "iat", "jti"}

// Mint returns an HS256 token signed with secret, with iat set to now and exp
// to now+TTL. secret must be at least MinSecretLen bytes so that the server
// accepts it. Errors never contain the secret.
func Mint(secret []byte, claims MintClaims) (string, error) {
	return mint(secret, claims, time.Now())
}

func mint(secret []byte, c MintClaims, now time.Time) (string, error) {
	if err := checkSecretLen(len(secret)); err != nil {
		return "", err
	}
	if c.Org == "" && len(c.Roles) == 0 {
		return "", errors.New("the tenant organization id is required")
	}
	if c.Org != "" && !safeOrg(c.Org) {
		return "", errors.New("the tenant organization id must not contain quotes, backslashes, whitespace or control characters")
	}
	if c.TTL < time.Second {
		return "", fmt.Errorf("the token lifetime is %s; it must be at least 1s", c.TTL)
	}
	path := c.OrgClaim
	if path == "" {
		path = DefaultOrgClaim
	}
	if err := checkClaimPath(path); err != nil {
		return "", fmt.Errorf("org claim: %w", err)
	}
	segments := []string{path}
	if !strings.Contains(path, "://") {
		segments = strings.Split(path, ".")
	}
	for _, reg := range registeredClaims {
		if segments[0] == reg {
			return "", fmt.Errorf("org claim %q collides with the registered claim %q", path, reg)
		}
	}

	claims := jwt.MapClaims{
		"iat": now.Unix(),
		"exp": now.Add(c.TTL).Unix(),
	}
	if c.Issuer != "" {
		claims["iss"] = c.Issuer
	}
	if c.Subject != "" {
		claims["sub"] = c.Subject
	}
	if c.Audience != "" {
		claims["aud"] = c.Audience
	}
	if c.Org != "" {
		var value any = c.Org
		for i := len(segments) - 1; i > 0; i-- {
			value = map[string]any{segments[i]: value}
		}
		claims[segments[0]] = value
	}
	if len(c.Roles) > 0 {
		name := c.RolesClaim
		if name == "" {
			name = "roles"
		}
		if slices.Contains(registeredClaims, name) || name == segments[0] {
			return "", fmt.Errorf("roles claim %q collides with another claim", name)
		}
		claims[name] = c.Roles
	}

	return jwt.NewWithClaims(jwt.SigningMethodHS256, claims).SignedString(secret)
}
