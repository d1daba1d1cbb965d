package auth

import (
	"fmt"
	"strings"

	"github.com/pgtenant/pgtenant/pgerr"
)

// Reason labels of failed logins. They label metrics and audit events, so the
// set is closed: Verify returns no other.
const (
	ReasonNoToken        = "no_token"
	ReasonMalformed      = "malformed"
	ReasonBadSignature   = "bad_signature"
	ReasonAlgNotAllowed  = "alg_not_allowed"
	ReasonUnknownKID     = "unknown_kid"
	ReasonExpired        = "expired"
	ReasonNotYetValid    = "not_yet_valid"
	ReasonIssuedInFuture = "issued_in_future"
	ReasonWrongIssuer    = "wrong_issuer"
	ReasonWrongAudience  = "wrong_audience"
	ReasonMissingOrg     = "missing_org"
	ReasonInvalidOrg     = "invalid_org"
)

// tokenError reports a token that cannot be trusted (28P01). The message must
// not contain the token, a secret, or anything that identifies the key.
func tokenError(reason, format string, args ...any) *pgerr.Error {
	return pgerr.NewFatal(pgerr.InvalidPassword, reason,
		"password authentication failed: "+fmt.Sprintf(format, args...))
}

// orgError reports a verified token that does not name a usable tenant (28000).
func orgError(reason, format string, args ...any) *pgerr.Error {
	return pgerr.NewFatal(pgerr.InvalidAuthorization, reason, fmt.Sprintf(format, args...))
}

func errNoToken() *pgerr.Error {
	return tokenError(ReasonNoToken, "a JWT is required as the password")
}

func errMalformed() *pgerr.Error {
	return tokenError(ReasonMalformed,
		"the password is not a well-formed JWT (three base64url parts: header.claims.signature); pass the token itself as the password")
}

func errTooLarge() *pgerr.Error {
	return tokenError(ReasonMalformed, "the token is larger than %d bytes", MaxTokenSize)
}

func errBadSignature() *pgerr.Error {
	return tokenError(ReasonBadSignature, "the token was not signed with an accepted key; obtain a token from the configured issuer")
}

func errUnknownKID() *pgerr.Error {
	return tokenError(ReasonUnknownKID,
		"the token names a signing key (kid) this server does not know; obtain a token signed with a current key")
}

func errAlgNone() *pgerr.Error {
	return tokenError(ReasonAlgNotAllowed, "the token is unsigned (alg none); only signed tokens are accepted")
}

// errAlgNotAccepted is for an algorithm no configured key accepts. accepted is
// the sorted union over all keys; it says which algorithms work without
// revealing which key would have matched.
func errAlgNotAccepted(alg string, accepted []string) *pgerr.Error {
	if alg == "" {
		return tokenError(ReasonAlgNotAllowed,
			"the token's signing algorithm is not supported; accepted algorithms: %s", strings.Join(accepted, ", "))
	}
	return tokenError(ReasonAlgNotAllowed,
		"the token is signed with %s, which is not accepted; accepted algorithms: %s", alg, strings.Join(accepted, ", "))
}

func errAlgNotForKID(alg string) *pgerr.Error {
	return tokenError(ReasonAlgNotAllowed,
		"the token's algorithm %s is not accepted for the signing key (kid) it names", alg)
}
