// Package pgerr is pgtenant's one error vocabulary. Internal errors that a
// client may see carry a SQLSTATE, a human message and a bounded reason label;
// WireError is the single place that turns any error into the ErrorResponse a
// PostgreSQL client receives. The same Reason values label metrics and audit
// events, so they must stay few and stable.
package pgerr

import (
	"errors"

	"github.com/jackc/pgx/v5/pgproto3"
)

// SQLSTATE codes pgtenant itself reports.
const (
	InvalidPassword        = "28P01" // bad or unverifiable token
	InvalidAuthorization   = "28000" // authenticated, but not allowed (missing org, refused tenant)
	ProtocolViolation      = "08P01"
	ConnectionFailure      = "08006" // backend lost mid-transaction
	ConnectionException    = "08000" // backend unreachable
	TooManyConnections     = "53300" // pool wait timeout, client limit
	AdminShutdown          = "57P01"
	FeatureNotSupported    = "0A000"
	InsufficientPrivilege  = "42501"
	InvalidCatalogName     = "3D000"
	ProgramLimitExceeded   = "54000"
	QueryCanceled          = "57014"
	InternalError          = "XX000"
	InvalidParameterValue  = "22023"
	ConfigurationFileError = "F0000"
	// IdleInTransactionTimeout ends a session left idle in a transaction.
	IdleInTransactionTimeout = "25P03"
)

// Severity values as PostgreSQL spells them.
const (
	SeverityError = "ERROR"
	SeverityFatal = "FATAL"
)

// Error is an error a client can be shown. Message says what happened, Hint
// what to do about it. Reason is a short snake_case label for metrics and the
// audit log; it never contains user input.
type Error struct {
	Severity string
	Code     string
	Message  string
	Detail   string
	Hint     string
	Reason   string
	// Err is the underlying cause, for logs only; it is never sent to the client.
	Err error
}

func (e *Error) Error() string {
	if e.Err != nil {
		return e.Message + ": " + e.Err.Error()
	}
	return e.Message
}

func (e *Error) Unwrap() error { return e.Err }

// Fatal reports whether the client connection ends after this error.
func (e *Error) Fatal() bool { return e.Severity == SeverityFatal }

// New returns an ERROR-severity Error.
func New(code, reason, message string) *Error {
	return &Error{Severity: SeverityError, Code: code, Reason: reason, Message: message}
}

// NewFatal returns a FATAL-severity Error: the client connection is closed after it.
func NewFatal(code, reason, message string) *Error {
	return &Error{Severity: SeverityFatal, Code: code, Reason: reason, Message: message}
}

// WithHint returns e with Hint set; it modifies e and returns it for chaining.
func (e *Error) WithHint(hint string) *Error { e.Hint = hint; return e }

// WithDetail returns e with Detail set; it modifies e and returns it for chaining.
func (e *Error) WithDetail(detail string) *Error { e.Detail = detail; return e }

// Wrap returns e with its cause set; it modifies e and returns it for chaining.
func (e *Error) Wrap(cause error) *Error { e.Err = cause; return e }

// As returns the *Error in err's chain, or an internal error wrapping err.
func As(err error) *Error {
	var pe *Error
	if errors.As(err, &pe) {
		return pe
	}
	return &Error{Severity: SeverityError, Code: InternalError, Reason: "internal", Message: "internal proxy error", Err: err}
}

// Reason returns the metric/audit label of err ("internal" when it carries none).
func Reason(err error) string {
	if r := As(err).Reason; r != "" {
		return r
	}
	return "internal"
}

// WireError turns err into the ErrorResponse the client receives. It is the
// only function that does so; the cause (Err) never leaves the process.
func WireError(err error) *pgproto3.ErrorResponse {
	e := As(err)
	sev := e.Severity
	if sev == "" {
		sev = SeverityError
	}
	return &pgproto3.ErrorResponse{
		Severity:            sev,
		SeverityUnlocalized: sev,
		Code:                e.Code,
		Message:             e.Message,
		Detail:              e.Detail,
		Hint:                e.Hint,
	}
}
