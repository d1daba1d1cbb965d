package audit

import (
	"strings"
	"time"
	"unicode/utf8"
)

// Reasons an event is audited. They label pgtenant_cross_tenant_blocked_total,
// so the set is closed: Record counts any other value as ReasonOther (the
// event itself keeps the value it was given).
const (
	// ReasonBlockedStatement: the statement guard refused a statement; Rule
	// names the guard rule.
	ReasonBlockedStatement = "blocked_statement"
	// ReasonForgedContext: the database rejected a forged or replayed tenant
	// context.
	ReasonForgedContext = "forged_context"
	// ReasonRLSViolation: PostgreSQL reported 42501 "new row violates
	// row-level security policy".
	ReasonRLSViolation = "rls_violation"
	// ReasonAuthFailed: a login failed; Rule carries the auth reason
	// (expired, bad_signature ...).
	ReasonAuthFailed = "auth_failed"
	// ReasonTenantRefused: the tenant is unknown, suspended or deprovisioned.
	ReasonTenantRefused = "tenant_refused"
	// ReasonOther is the metric label of every reason not listed above.
	ReasonOther = "other"
)

// ReasonTenantLifecycle marks the provisioning events next to the attempts:
// an org created, suspended, resumed, deprovisioned or purged, with Rule the
// action and Subject who did it. Package tenants writes them to Table in the
// change's own transaction; they are not attempts, so they never pass
// through Log and label no metric.
const ReasonTenantLifecycle = "tenant_lifecycle"

// reasons are the label values of pgtenant_cross_tenant_blocked_total.
var reasons = []string{
	ReasonBlockedStatement, ReasonForgedContext, ReasonRLSViolation,
	ReasonAuthFailed, ReasonTenantRefused, ReasonOther,
}

// Event is one audited attempt. Only Reason is required; Time defaults to the
// time of Record.
type Event struct {
	// Time is when the attempt happened.
	Time time.Time `json:"time"`
	// Org is the tenant the session belongs to (or claimed, for a failed
	// login).
	Org string `json:"org,omitempty"`
	// Subject is the token's subject (user id).
	Subject string `json:"subject,omitempty"`
	// TokenID is the token's jti claim, never the token itself.
	TokenID string `json:"token_id,omitempty"`
	// ClientAddr is the client's address, host:port.
	ClientAddr string `json:"client_addr,omitempty"`
	// Reason is one of the Reason constants.
	Reason string `json:"reason"`
	// Rule refines Reason: the guard rule, or the auth failure reason.
	Rule string `json:"rule,omitempty"`
	// SQLState is the SQLSTATE the client received.
	SQLState string `json:"sqlstate,omitempty"`
	// Fingerprint is the statement with its literal values removed; the
	// caller normalizes it.
	Fingerprint string `json:"fingerprint,omitempty"`
	// Detail is a short text for humans. It must never hold a token, a
	// password or a literal value from the statement.
	Detail string `json:"detail,omitempty"`
}

// Longest field values kept, in bytes; longer ones are cut at a character
// boundary so that one event cannot bloat the queue, the spool or the table.
const (
	maxFingerprintBytes = 4096
	maxDetailBytes      = 1024
	maxFieldBytes       = 256
)

// normalized returns ev ready to be stored: a time in the range PostgreSQL
// and JSON accept, and text that PostgreSQL accepts (valid UTF-8, no NUL
// bytes) of bounded length. A Time outside years 1..9999 becomes now.
func (ev Event) normalized(now time.Time) Event {
	if ev.Time.IsZero() || ev.Time.Year() < 1 || ev.Time.Year() > 9999 {
		ev.Time = now
	}
	ev.Org = cleanText(ev.Org, maxFieldBytes)
	ev.Subject = cleanText(ev.Subject, maxFieldBytes)
	ev.TokenID = cleanText(ev.TokenID, maxFieldBytes)
	ev.ClientAddr = cleanText(ev.ClientAddr, maxFieldBytes)
	ev.Reason = cleanText(ev.Reason, maxFieldBytes)
	if ev.Reason == "" {
		ev.Reason = ReasonOther
	}
	ev.Rule = cleanText(ev.Rule, maxFieldBytes)
	ev.SQLState = cleanText(ev.SQLState, maxFieldBytes)
	ev.Fingerprint = cleanText(ev.Fingerprint, maxFingerprintBytes)
	ev.Detail = cleanText(ev.Detail, maxDetailBytes)
	return ev
}

// cleanText makes s valid UTF-8 without NUL bytes, at most max bytes long.
func cleanText(s string, max int) string {
	if !utf8.ValidString(s) {
		s = strings.ToValidUTF8(s, "\uFFFD")
	}
	if strings.IndexByte(s, 0) >= 0 {
		s = strings.ReplaceAll(s, "\x00", "")
	}
	if len(s) <= max {
		return s
	}
	cut := max
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut]
}
