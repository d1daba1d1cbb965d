package policies

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"time"
)

// TokenSetting is the custom setting that carries the signed tenant context
// in every tenant transaction, set with SET LOCAL next to app.current_org.
// tenancy.current_org() reads it.
const TokenSetting = "app.tenant_token"

// DefaultContextTTL is how long a context token stays valid after it is
// signed. The database checks the expiry against the transaction's start
// time, so a token valid when a transaction starts holds until it ends.
const DefaultContextTTL = 5 * time.Minute

// MinContextSecretLen is the shortest context key secret accepted, in bytes.
const MinContextSecretLen = 32

// tokenVersion is the first field of every token and of the message its MAC
// covers; tenancy.current_org() accepts only this version.
const tokenVersion = "v1"

// hmacBlockSize is SHA-256's block size: HMAC pads keys to it.
const hmacBlockSize = sha256.BlockSize

// keyIDPattern is what a context key id may look like: short, and free of the
// token's field separator and of anything SQL would need to quote.
var keyIDPattern = regexp.MustCompile(`^[A-Za-z0-9_-]{1,32}$`)

// ContextKey is one HMAC key for context tokens.
type ContextKey struct {
	// ID names the key in tokens and in tenancy.context_keys:
	// [A-Za-z0-9_-]{1,32}.
	ID string
	// Secret is the HMAC-SHA256 key, at least MinContextSecretLen bytes.
	Secret []byte
}

// Validate reports what is wrong with k, naming the key by its id only.
func (k ContextKey) Validate() error {
	if !keyIDPattern.MatchString(k.ID) {
		return fmt.Errorf("context key id %q must be 1 to 32 characters of A-Z a-z 0-9 _ -", k.ID)
	}
	if len(k.Secret) < MinContextSecretLen {
		return fmt.Errorf("context key %s: the secret is %d bytes; it must be at least %d bytes (generate one with `openssl rand -base64 48`)",
			k.ID, len(k.Secret), MinContextSecretLen)
	}
	return nil
}

// pads returns the key's HMAC-SHA256 inner and outer pads (the key, hashed
// if longer than a block and zero-padded to one, XOR 0x36 and XOR 0x5c).
// tenancy.context_keys stores these instead of the key, so that PostgreSQL
// computes HMAC-SHA256(key, msg) as
// sha256(outer || sha256(inner || msg)) with its built-in sha256().
func (k ContextKey) pads() (inner, outer []byte) {
	key := k.Secret
	if len(key) > hmacBlockSize {
		sum := sha256.Sum256(key)
		key = sum[:]
	}
	inner = make([]byte, hmacBlockSize)
	outer = make([]byte, hmacBlockSize)
	copy(inner, key)
	copy(outer, key)
	for i := range inner {
		inner[i] ^= 0x36
		outer[i] ^= 0x5c
	}
	return inner, outer
}

// Signer signs context tokens with the first of its keys. All its keys are
// the ones Install puts in the database, where each is accepted: to rotate,
// configure the new key first and the old one second, install, restart the
// proxies, then drop the old key and install again.
//
// A Signer is immutable and safe for concurrent use.
type Signer struct {
	keys []ContextKey
	ttl  time.Duration
}

// NewSigner returns a Signer that signs with keys[0] and tokens valid for
// ttl (DefaultContextTTL when zero). Key ids must be distinct.
func NewSigner(keys []ContextKey, ttl time.Duration) (*Signer, error) {
	if len(keys) == 0 {
		return nil, errors.New("no context key: configure at least one (id and secret) to sign the tenant context")
	}
	if ttl == 0 {
		ttl = DefaultContextTTL
	}
	if ttl < time.Second {
		return nil, fmt.Errorf("context token lifetime %s is too short; it must be at least 1s", ttl)
	}
	seen := map[string]bool{}
	own := make([]ContextKey, len(keys))
	for i, k := range keys {
		if err := k.Validate(); err != nil {
			return nil, err
		}
		if seen[k.ID] {
			return nil, fmt.Errorf("context key id %s is configured twice", k.ID)
		}
		seen[k.ID] = true
		own[i] = ContextKey{ID: k.ID, Secret: append([]byte(nil), k.Secret...)}
	}
	return &Signer{keys: own, ttl: ttl}, nil
}

// Keys returns the Signer's keys, the signing key first. The caller must not
// modify the secrets.
func (s *Signer) Keys() []ContextKey { return s.keys }

// TTL returns how long the tokens Sign makes are valid.
func (s *Signer) TTL() time.Duration { return s.ttl }

// Sign returns a context token binding org to the backend connection whose
// identity (see BackendIdentityQuery) is identity, valid until expires
// (now plus the TTL, truncated to the second).
//
// The token is
//
//	v1.<key id>.<identity>.<expiry unix seconds>.<hex(org)>.<hex(HMAC-SHA256)>
//
// where the MAC covers everything before its own separator. Every character
// is one of A-Z a-z 0-9 . _ -, whatever org contains, so the token can be
// spliced into a SQL string literal as it is.
func (s *Signer) Sign(org string, identity int64, now time.Time) (token string, expires time.Time) {
	expires = now.Add(s.ttl).Truncate(time.Second)
	k := s.keys[0]
	var b strings.Builder
	b.Grow(len(tokenVersion) + len(k.ID) + 2*len(org) + 2*sha256.Size + 40)
	b.WriteString(tokenVersion)
	b.WriteByte('.')
	b.WriteString(k.ID)
	b.WriteByte('.')
	b.WriteString(strconv.FormatInt(identity, 10))
	b.WriteByte('.')
	b.WriteString(strconv.FormatInt(expires.Unix(), 10))
	b.WriteByte('.')
	b.WriteString(hex.EncodeToString([]byte(org)))
	mac := hmac.New(sha256.New, k.Secret)
	mac.Write([]byte(b.String()))
	b.WriteByte('.')
	b.WriteString(hex.EncodeToString(mac.Sum(nil)))
	return b.String(), expires
}

// DetectCitusQuery returns one boolean row: whether the Citus extension is
// installed in the current database. Its answer selects the
// BackendIdentityQuery to run.
const DetectCitusQuery = "SELECT EXISTS (SELECT 1 FROM pg_catalog.pg_extension WHERE extname = 'citus')"

// BackendIdentityQuery returns the query whose one bigint row is the
// identity a context token must be bound to on the current backend
// connection: pg_backend_pid(), or on Citus citus_backend_gpid(), which the
// workers see as the coordinator backend's. tenancy.current_org() compares
// the token's identity with the same expression.
func BackendIdentityQuery(citus bool) string {
	if citus {
		return "SELECT pg_catalog.citus_backend_gpid()"
	}
	return "SELECT pg_catalog.pg_backend_pid()::bigint"
}

// SQLSTATEs tenancy.current_org() raises, all in the custom class PT, with
// messages that start "pgtenant:". Any of them means a tenant presented a
// context the proxy did not give it; the proxy audits them as cross-tenant
// attempts.
const (
	// SQLStateForged: the token is malformed, its MAC does not verify, or
	// its key id is unknown (also the case after the key was removed at the
	// end of a rotation).
	SQLStateForged = "PT001"
	// SQLStateReplayed: the token is bound to another backend connection.
	SQLStateReplayed = "PT002"
	// SQLStateExpired: the token expired before the transaction started.
	SQLStateExpired = "PT003"
	// SQLStateOrgMismatch: app.current_org is set and differs from the
	// token's org.
	SQLStateOrgMismatch = "PT004"
)

// IsContextSQLState reports whether code is one of the SQLSTATEs of a
// forged, replayed, expired or mismatched tenant context.
func IsContextSQLState(code string) bool {
	switch code {
	case SQLStateForged, SQLStateReplayed, SQLStateExpired, SQLStateOrgMismatch:
		return true
	}
	return false
}
