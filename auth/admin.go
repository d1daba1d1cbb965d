package auth

import (
	"slices"
	"strings"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/pgtenant/pgtenant/pgerr"
)

// DefaultRolesClaim is the claim VerifyAdmin reads roles from when the
// caller names none.
const DefaultRolesClaim = "roles"

// Reasons only VerifyAdmin returns, on top of Verify's: an admin token has to
// say who acts (every change is recorded under its subject) and its roles
// have to be readable.
const (
	ReasonMissingSubject = "missing_subject"
	ReasonInvalidRoles   = "invalid_roles"
)

// AdminIdentity is what a verified admin-API token says about the caller.
type AdminIdentity struct {
	// Subject is the sub claim; never empty. Changes are recorded under it.
	Subject string
	// Org is the tenant organization the token names, or "" when it names
	// none (a platform operator's token usually does not).
	Org string
	// Roles are the values of the roles claim, in token order.
	Roles []string
	// ExpiresAt is the exp claim, or zero if the token has none.
	ExpiresAt time.Time
}

// HasRole reports whether role is one of id's roles.
func (id AdminIdentity) HasRole(role string) bool {
	return slices.Contains(id.Roles, role)
}

// VerifyAdmin checks a token presented to the admin HTTP API. Signature,
// issuer, audience and times are checked as Verify checks them; unlike a
// client token, the org claim may be absent (when present it must be a valid
// tenant id), the sub claim is required, and roles are read from rolesClaim
// (DefaultRolesClaim when empty; a dotted path reaches into nested objects as
// for the org claim). The roles claim may be absent (no roles), a string
// (roles separated by spaces, as OAuth scope claims are) or an array of
// strings.
//
// Any error is a *pgerr.Error as Verify returns: 28P01 for a token that
// cannot be trusted, 28000 for a genuine token that cannot be used. Messages
// say what to fix and never quote the token.
func (v *Verifier) VerifyAdmin(token string, rolesClaim string) (AdminIdentity, error) {
	if rolesClaim == "" {
		rolesClaim = DefaultRolesClaim
	}
	if len(token) > MaxTokenSize {
		return AdminIdentity{}, adminTokenError(ReasonMalformed, "the bearer token is larger than the limit of the admin API")
	}
	token = strings.TrimSpace(token)
	if token == "" {
		return AdminIdentity{}, adminTokenError(ReasonNoToken, "a bearer token is required: send Authorization: Bearer <JWT>")
	}
	claims := jwt.MapClaims{}
	parsed, err := v.parser.ParseWithClaims(token, claims, v.keysFor)
	if err != nil {
		return AdminIdentity{}, forAdmin(parseError(parsed, err, v.accepted))
	}
	id, perr := v.checkAdminClaims(claims, rolesClaim)
	if perr != nil { // not returned directly: a nil *pgerr.Error is a non-nil error
		return AdminIdentity{}, forAdmin(perr)
	}
	return id, nil
}

func (v *Verifier) checkAdminClaims(claims jwt.MapClaims, rolesClaim string) (AdminIdentity, *pgerr.Error) {
	if err := v.checkIssuer(claims); err != nil {
		return AdminIdentity{}, err
	}
	if err := v.checkAudience(claims); err != nil {
		return AdminIdentity{}, err
	}
	exp, err := v.checkTimes(claims)
	if err != nil {
		return AdminIdentity{}, err
	}
	sub, isString := claims["sub"].(string)
	switch {
	case claims["sub"] == nil:
		return AdminIdentity{}, orgError(ReasonMissingSubject,
			`the token has no "sub" (subject) claim; admin tokens must name who acts, every change is recorded under it`)
	case !isString:
		return AdminIdentity{}, orgError(ReasonMissingSubject, `the token's "sub" claim is not a string; issue the subject as a JSON string`)
	case strings.TrimSpace(sub) == "":
		return AdminIdentity{}, orgError(ReasonMissingSubject,
			`the token's "sub" (subject) claim is empty; admin tokens must name who acts, every change is recorded under it`)
	}
	var org string
	if raw, ok := lookupClaim(claims, v.orgClaim); ok && raw != nil {
		if org, err = v.org(claims); err != nil {
			return AdminIdentity{}, err
		}
	}
	roles, err := rolesFrom(claims, rolesClaim)
	if err != nil {
		return AdminIdentity{}, err
	}
	return AdminIdentity{Subject: sub, Org: org, Roles: roles, ExpiresAt: exp}, nil
}

// rolesFrom reads the roles claim: absent or null is no role, a string holds
// space-separated roles, an array holds one role per string.
func rolesFrom(claims jwt.MapClaims, name string) ([]string, *pgerr.Error) {
	raw, ok := lookupClaim(claims, name)
	if !ok || raw == nil {
		return nil, nil
	}
	switch r := raw.(type) {
	case string:
		return strings.Fields(r), nil
	case []any:
		roles := make([]string, 0, len(r))
		for _, e := range r {
			s, isString := e.(string)
			if !isString {
				return nil, orgError(ReasonInvalidRoles, "the token's %q claim holds a value that is not a string; issue roles as an array of strings", name)
			}
			if s = strings.TrimSpace(s); s != "" {
				roles = append(roles, s)
			}
		}
		return roles, nil
	default:
		return nil, orgError(ReasonInvalidRoles, "the token's %q claim is neither a string nor an array of strings", name)
	}
}

// Messages of Verify's errors are written for a PostgreSQL client that
// passed the token as its password; forAdmin rewords them for an HTTP
// caller. It returns a copy: e may be shared.
func forAdmin(e *pgerr.Error) *pgerr.Error {
	c := *e
	if e.Message == errMalformed().Message {
		c.Message = "the bearer token is not a well-formed JWT (three base64url parts: header.claims.signature)"
	}
	c.Message = strings.TrimPrefix(c.Message, passwordFailed)
	return &c
}

// passwordFailed is the prefix tokenError gives its messages.
const passwordFailed = "password authentication failed: "

// adminTokenError reports a bearer token that cannot be trusted (28P01).
func adminTokenError(reason, message string) *pgerr.Error {
	return pgerr.NewFatal(pgerr.InvalidPassword, reason, message)
}
