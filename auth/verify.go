package auth

import (
	"errors"
	"fmt"
	"math"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/pgtenant/pgtenant/pgerr"
)

// Identity is what a verified token says about the client.
type Identity struct {
	// Org is the tenant organization id; it matches the org pattern.
	Org string
	// Subject is the sub claim; it may be empty.
	Subject string
	// ExpiresAt is the exp claim, or zero if the token has none.
	ExpiresAt time.Time
	// TokenID is the jti claim when it is a string, for the audit log.
	TokenID string
}

// Verifier checks client tokens against the keys and rules of a JWTConfig.
// It is immutable once built and safe for concurrent use.
type Verifier struct {
	keys       []verifyKey
	accepted   []string // sorted union of the keys' algorithms, for messages
	parser     *jwt.Parser
	issuer     string
	audience   string
	orgClaim   string
	orgPattern *regexp.Regexp // anchored
	orgFormat  string         // the pattern as configured, for messages
	leeway     time.Duration
	now        func() time.Time
}

// Option adjusts a Verifier; it exists for tests.
type Option func(*Verifier)

// WithClock makes the Verifier read the time from now instead of time.Now.
func WithClock(now func() time.Time) Option {
	return func(v *Verifier) { v.now = now }
}

// NewVerifier validates cfg (after applying defaults), loads the secret and
// key files now, and returns a Verifier. orgPattern is the tenant-id format;
// nil means DefaultOrgPattern. The pattern always has to match the whole
// value, and values with quotes, backslashes, whitespace or control
// characters are refused whatever the pattern says.
func NewVerifier(cfg JWTConfig, orgPattern *regexp.Regexp, opts ...Option) (*Verifier, error) {
	cfg.SetDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	keys, err := loadKeys(cfg)
	if err != nil {
		return nil, err
	}
	anchored, err := anchoredPattern(orgPattern)
	if err != nil {
		return nil, fmt.Errorf("org pattern: %w", err)
	}
	format := DefaultOrgPattern
	if orgPattern != nil {
		format = orgPattern.String()
	}
	v := &Verifier{
		keys:     keys,
		accepted: acceptedAlgs(keys),
		// Claims are checked by checkClaims, which is stricter than the
		// library (exp 0 is expired, exp of the wrong type is refused) and
		// says which value was wrong.
		parser:     jwt.NewParser(jwt.WithoutClaimsValidation(), jwt.WithStrictDecoding()),
		issuer:     cfg.Issuer,
		audience:   cfg.Audience,
		orgClaim:   cfg.OrgClaim,
		orgPattern: anchored,
		orgFormat:  format,
		leeway:     cfg.Leeway,
		now:        time.Now,
	}
	for _, opt := range opts {
		opt(v)
	}
	return v, nil
}

func loadKeys(cfg JWTConfig) ([]verifyKey, error) {
	var keys []verifyKey
	if cfg.Secret != "" {
		k, err := hmacKey("", []byte(cfg.Secret))
		if err != nil {
			return nil, fmt.Errorf("auth.jwt.secret: %w", err)
		}
		keys = append(keys, k)
	}
	if cfg.SecretFile != "" {
		secret, err := readSecretFile(cfg.SecretFile)
		if err != nil {
			return nil, fmt.Errorf("auth.jwt.secret_file: %w", err)
		}
		k, err := hmacKey("", secret)
		if err != nil {
			return nil, fmt.Errorf("auth.jwt.secret_file: %s: %w", cfg.SecretFile, err)
		}
		keys = append(keys, k)
	}
	if cfg.PublicKeyFile != "" {
		data, err := readKeyFile(cfg.PublicKeyFile)
		if err != nil {
			return nil, fmt.Errorf("auth.jwt.public_key_file: %w", err)
		}
		pks, err := parsePEMKeys(data)
		if err != nil {
			return nil, fmt.Errorf("auth.jwt.public_key_file: %s: %w", cfg.PublicKeyFile, err)
		}
		keys = append(keys, pks...)
	}
	if cfg.JWKSFile != "" {
		data, err := readKeyFile(cfg.JWKSFile)
		if err != nil {
			return nil, fmt.Errorf("auth.jwt.jwks_file: %w", err)
		}
		jks, err := parseJWKS(data)
		if err != nil {
			return nil, fmt.Errorf("auth.jwt.jwks_file: %s: %w", cfg.JWKSFile, err)
		}
		keys = append(keys, jks...)
	}
	return keys, nil
}

func acceptedAlgs(keys []verifyKey) []string {
	var algs []string
	for _, k := range keys {
		algs = append(algs, k.algs...)
	}
	slices.Sort(algs)
	return slices.Compact(algs)
}

// Verify checks token and returns the identity it carries. Any error is a
// FATAL *pgerr.Error (28P01 for a bad token, 28000 for a missing or invalid
// org claim) whose Reason is one of the Reason constants. Surrounding
// whitespace is ignored.
func (v *Verifier) Verify(token string) (Identity, error) {
	if len(token) > MaxTokenSize {
		return Identity{}, errTooLarge()
	}
	token = strings.TrimSpace(token)
	if token == "" {
		return Identity{}, errNoToken()
	}
	claims := jwt.MapClaims{}
	parsed, err := v.parser.ParseWithClaims(token, claims, v.keysFor)
	if err != nil {
		return Identity{}, parseError(parsed, err, v.accepted)
	}
	id, perr := v.checkClaims(claims)
	if perr != nil { // not returned directly: a nil *pgerr.Error is a non-nil error
		return Identity{}, perr
	}
	return id, nil
}

// keysFor selects the keys that may verify t: those with its kid when it has
// one, otherwise every key whose algorithms include t's.
func (v *Verifier) keysFor(t *jwt.Token) (any, error) {
	if _, ok := t.Header["crit"]; ok {
		return nil, tokenError(ReasonMalformed, "the token has critical header extensions (crit), which are not supported")
	}
	alg := t.Method.Alg()
	if alg == "none" {
		return nil, errAlgNone()
	}
	if !supportedAlg(alg) {
		return nil, errAlgNotAccepted(alg, v.accepted)
	}
	var kid string // an empty kid counts as none
	if raw, ok := t.Header["kid"]; ok {
		s, isString := raw.(string)
		if !isString {
			return nil, errMalformed()
		}
		kid = s
	}
	var set jwt.VerificationKeySet
	named := false
	for _, k := range v.keys {
		if kid != "" {
			if k.kid != kid {
				continue
			}
			named = true
		}
		if k.allows(alg) {
			set.Keys = append(set.Keys, k.key)
		}
	}
	switch {
	case kid != "" && !named:
		return nil, errUnknownKID()
	case kid != "" && len(set.Keys) == 0:
		return nil, errAlgNotForKID(alg)
	case len(set.Keys) == 0:
		return nil, errAlgNotAccepted(alg, v.accepted)
	}
	return set, nil
}

// parseError maps a jwt parse failure to the client-facing error. It never
// wraps the library's error: that may quote bytes of the token.
func parseError(t *jwt.Token, err error, accepted []string) *pgerr.Error {
	var pe *pgerr.Error
	switch {
	case errors.As(err, &pe):
		return pe // from keysFor
	case errors.Is(err, jwt.ErrTokenSignatureInvalid):
		return errBadSignature()
	case errors.Is(err, jwt.ErrTokenUnverifiable) && t != nil:
		// The alg header is missing, not a string, or names no known method.
		if _, ok := t.Header["alg"].(string); ok {
			return errAlgNotAccepted("", accepted)
		}
	}
	return errMalformed()
}

// checkClaims applies the claim rules to a token whose signature is valid.
// Issuer and audience come first: when those are wrong, a fresh token from
// the same place will not help.
func (v *Verifier) checkClaims(claims jwt.MapClaims) (Identity, *pgerr.Error) {
	if err := v.checkIssuer(claims); err != nil {
		return Identity{}, err
	}
	if err := v.checkAudience(claims); err != nil {
		return Identity{}, err
	}
	exp, err := v.checkTimes(claims)
	if err != nil {
		return Identity{}, err
	}
	var sub string
	if raw, ok := claims["sub"]; ok {
		s, isString := raw.(string)
		if !isString {
			return Identity{}, tokenError(ReasonMalformed, `the token's "sub" claim is not a string`)
		}
		sub = s
	}
	org, err := v.org(claims)
	if err != nil {
		return Identity{}, err
	}
	jti, _ := claims["jti"].(string)
	return Identity{Org: org, Subject: sub, ExpiresAt: exp, TokenID: jti}, nil
}

func (v *Verifier) checkIssuer(claims jwt.MapClaims) *pgerr.Error {
	if v.issuer == "" {
		return nil
	}
	raw, ok := claims["iss"]
	if !ok {
		return tokenError(ReasonWrongIssuer, `the token has no "iss" (issuer) claim; this server accepts tokens issued by %q`, v.issuer)
	}
	if iss, _ := raw.(string); iss != v.issuer {
		return tokenError(ReasonWrongIssuer, `the token was issued by a different issuer; this server accepts tokens issued by %q`, v.issuer)
	}
	return nil
}

func (v *Verifier) checkAudience(claims jwt.MapClaims) *pgerr.Error {
	if v.audience == "" {
		return nil
	}
	if _, ok := claims["aud"]; !ok {
		return tokenError(ReasonWrongAudience, `the token has no "aud" (audience) claim; this server accepts tokens for audience %q`, v.audience)
	}
	// GetAudience accepts a string or an array of strings.
	aud, err := claims.GetAudience()
	if err != nil || !slices.Contains(aud, v.audience) {
		return tokenError(ReasonWrongAudience, `the token is meant for a different audience; this server accepts tokens for audience %q`, v.audience)
	}
	return nil
}

// checkTimes checks exp, nbf and iat with leeway and returns exp (zero when
// absent: such a token does not expire).
func (v *Verifier) checkTimes(claims jwt.MapClaims) (time.Time, *pgerr.Error) {
	now := v.now()
	exp, hasExp, err := numericDate(claims, "exp")
	if err != nil {
		return time.Time{}, err
	}
	if hasExp && !now.Before(exp.Add(v.leeway)) {
		return time.Time{}, tokenError(ReasonExpired, "the token has expired (exp %s); obtain a new token", formatTime(exp))
	}
	nbf, hasNbf, err := numericDate(claims, "nbf")
	if err != nil {
		return time.Time{}, err
	}
	if hasNbf && now.Before(nbf.Add(-v.leeway)) {
		return time.Time{}, tokenError(ReasonNotYetValid,
			"the token is not valid before %s (nbf); wait, or check the clocks of the token issuer and this server", formatTime(nbf))
	}
	iat, hasIat, err := numericDate(claims, "iat")
	if err != nil {
		return time.Time{}, err
	}
	if hasIat && now.Before(iat.Add(-v.leeway)) {
		return time.Time{}, tokenError(ReasonIssuedInFuture,
			"the token claims to be issued in the future (iat %s); check the clocks of the token issuer and this server", formatTime(iat))
	}
	return exp, nil
}

// maxNumericDate bounds NumericDate values (about year 33658) so that the
// conversion to time.Time cannot overflow.
const maxNumericDate = 1e12

// numericDate reads a NumericDate claim (seconds since 1970, RFC 7519). A
// claim that is present must be a number; null or a string is refused rather
// than treated as absent.
func numericDate(claims jwt.MapClaims, name string) (time.Time, bool, *pgerr.Error) {
	raw, ok := claims[name]
	if !ok {
		return time.Time{}, false, nil
	}
	f, isNumber := raw.(float64)
	if !isNumber {
		return time.Time{}, false, tokenError(ReasonMalformed, "the token's %q claim is not a number of seconds since 1970", name)
	}
	f = math.Max(-maxNumericDate, math.Min(maxNumericDate, f))
	sec, frac := math.Modf(f)
	return time.Unix(int64(sec), int64(frac*1e9)).UTC(), true, nil
}

func formatTime(t time.Time) string { return t.UTC().Format(time.RFC3339) }
