package auth

import (
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/golang-jwt/jwt/v5"

	"github.com/pgtenant/pgtenant/pgerr"
)

// org returns the tenant organization id the token names.
func (v *Verifier) org(claims jwt.MapClaims) (string, *pgerr.Error) {
	raw, ok := lookupClaim(claims, v.orgClaim)
	if !ok || raw == nil {
		return "", orgError(ReasonMissingOrg, "the token has no %q claim; the token must name the tenant organization", v.orgClaim)
	}
	switch org := raw.(type) {
	case string:
		if org == "" {
			return "", orgError(ReasonInvalidOrg, "the token's %q claim is empty; the token must name the tenant organization", v.orgClaim)
		}
		if !safeOrg(org) || !v.orgPattern.MatchString(org) {
			return "", orgError(ReasonInvalidOrg, "the token's %q claim is not a valid tenant organization id; it must match %s", v.orgClaim, v.orgFormat)
		}
		return org, nil
	case float64:
		return "", orgError(ReasonInvalidOrg, "the token's %q claim is a number; issue the tenant organization id as a JSON string", v.orgClaim)
	default:
		return "", orgError(ReasonInvalidOrg, "the token's %q claim is not a string; issue the tenant organization id as a JSON string", v.orgClaim)
	}
}

// lookupClaim finds the claim named path. A key spelled exactly like path
// wins; otherwise the path's first segment selects a nested object and the
// rest is looked up there by the same rule.
func lookupClaim(m map[string]any, path string) (any, bool) {
	if v, ok := m[path]; ok {
		return v, true
	}
	head, rest, found := strings.Cut(path, ".")
	if !found {
		return nil, false
	}
	nested, ok := m[head].(map[string]any)
	if !ok {
		return nil, false
	}
	return lookupClaim(nested, rest)
}

// safeOrg is the floor under every org pattern: an org id is spliced into SQL
// as a quoted literal and written to logs, so quotes, backslashes, whitespace,
// control and invisible formatting characters are refused even if a
// configured pattern would allow them.
func safeOrg(org string) bool {
	if !utf8.ValidString(org) {
		return false
	}
	for _, r := range org {
		switch {
		case r == '\'', r == '"', r == '`', r == '\\':
			return false
		case unicode.IsSpace(r), unicode.IsControl(r), unicode.Is(unicode.Cf, r):
			return false
		}
	}
	return true
}
