package tenants

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"regexp"
	"strings"
	"time"
	"unicode/utf8"
)

// Status is the lifecycle state of an org.
type Status string

// The statuses of an org. An active org's tenants connect; a suspended
// org's are refused until it is resumed; a deprovisioned org is refused for
// good and waits for its data to be purged.
const (
	StatusActive        Status = "active"
	StatusSuspended     Status = "suspended"
	StatusDeprovisioned Status = "deprovisioned"
)

// Valid reports whether s is one of the three statuses.
func (s Status) Valid() bool {
	return s == StatusActive || s == StatusSuspended || s == StatusDeprovisioned
}

// Member roles and statuses, as tenancy.org_members stores them.
const (
	RoleAdmin      = "admin"
	RoleMember     = "member"
	MemberActive   = "active"
	MemberDisabled = "disabled"
)

// Errors wrapped by the errors of this package; test with errors.Is.
var (
	// ErrNotFound: the org (or member) does not exist.
	ErrNotFound = errors.New("tenants: not found")
	// ErrExists: an org with that id or slug already exists.
	ErrExists = errors.New("tenants: already exists")
	// ErrVersionConflict: the org changed since the version the caller read.
	ErrVersionConflict = errors.New("tenants: version conflict")
	// ErrInvalidTransition: the status change is not allowed.
	ErrInvalidTransition = errors.New("tenants: invalid status transition")
	// ErrInvalid: a value failed validation.
	ErrInvalid = errors.New("tenants: invalid value")
)

// registryError is an error whose message is for humans and which wraps
// one of the sentinel errors above for errors.Is.
type registryError struct {
	msg  string
	kind error
}

func (e *registryError) Error() string { return e.msg }
func (e *registryError) Unwrap() error { return e.kind }

// errorf returns an error with the formatted message that wraps kind.
func errorf(kind error, format string, args ...any) error {
	return &registryError{msg: fmt.Sprintf(format, args...), kind: kind}
}

// idPattern is the form of an org id, as tenancy.orgs checks it: what
// tokens carry in their org claim.
var idPattern = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$`)

// slugPattern is the form of a slug, as tenancy.orgs checks it.
var slugPattern = regexp.MustCompile(`^[a-z0-9][a-z0-9-]{0,62}$`)

// ValidID reports whether id is a well-formed org id: 1 to 63 characters
// of A-Z a-z 0-9 _ . -, the first a letter or digit.
func ValidID(id string) bool { return idPattern.MatchString(id) }

// ValidSlug reports whether slug is a well-formed slug: 1 to 63 characters
// of a-z 0-9 -, the first a letter or digit.
func ValidSlug(slug string) bool { return slugPattern.MatchString(slug) }

// Limits of the registry's text fields, as tenancy.orgs and org_members
// check them (in characters).
const (
	MaxNameLen    = 200
	MaxSubjectLen = 256
)

// maxTimeout is the longest statement or idle timeout PostgreSQL accepts
// (INT_MAX milliseconds).
const maxTimeout = Duration(math.MaxInt32 * time.Millisecond)

// Duration is a time.Duration that marshals to JSON as a Go duration string
// ("30s") and unmarshals from such a string or from a number of
// milliseconds.
type Duration time.Duration

// MarshalJSON writes d as a duration string.
func (d Duration) MarshalJSON() ([]byte, error) {
	return json.Marshal(time.Duration(d).String())
}

// UnmarshalJSON reads a duration string ("1m30s") or a number of
// milliseconds.
func (d *Duration) UnmarshalJSON(b []byte) error {
	if bytes.HasPrefix(b, []byte(`"`)) {
		var s string
		if err := json.Unmarshal(b, &s); err != nil {
			return err
		}
		v, err := time.ParseDuration(s)
		if err != nil {
			return fmt.Errorf("duration %q: want a Go duration such as \"30s\" or a number of milliseconds", s)
		}
		*d = Duration(v)
		return nil
	}
	var ms float64
	if err := json.Unmarshal(b, &ms); err != nil {
		return fmt.Errorf("duration %s: want a Go duration such as \"30s\" or a number of milliseconds", b)
	}
	if math.Abs(ms) > float64(math.MaxInt64/int64(time.Millisecond)) {
		return fmt.Errorf("duration %s milliseconds is out of range", b)
	}
	*d = Duration(ms * float64(time.Millisecond))
	return nil
}

// String is the duration as time.Duration prints it.
func (d Duration) String() string { return time.Duration(d).String() }

// Settings are per-tenant settings pgtenant applies to every transaction of
// the tenant. The zero value is the server's defaults and no limit.
type Settings struct {
	// StatementTimeout is the tenant's statement_timeout; 0 is the server's
	// default.
	StatementTimeout Duration `json:"statement_timeout,omitempty"`
	// IdleInTransactionTimeout ends a tenant's transaction idle that long;
	// enforced by the proxy. 0 is no limit.
	IdleInTransactionTimeout Duration `json:"idle_in_transaction_timeout,omitempty"`
	// ReadOnly makes every transaction of the tenant read-only.
	ReadOnly bool `json:"read_only,omitempty"`
	// MaxConnections limits the tenant's client connections; 0 is no tenant
	// limit.
	MaxConnections int `json:"max_connections,omitempty"`
	// RequireMembership admits only tokens whose sub is an active member of
	// the org.
	RequireMembership bool `json:"require_membership,omitempty"`
}

// Validate reports the first setting out of range, naming its JSON key.
func (s Settings) Validate() error {
	if err := checkTimeout("settings.statement_timeout", s.StatementTimeout); err != nil {
		return err
	}
	if err := checkTimeout("settings.idle_in_transaction_timeout", s.IdleInTransactionTimeout); err != nil {
		return err
	}
	if s.MaxConnections < 0 {
		return errorf(ErrInvalid, "settings.max_connections is %d: use 0 for no tenant limit or a positive number", s.MaxConnections)
	}
	return nil
}

// checkTimeout accepts 0 (no timeout) to PostgreSQL's maximum.
func checkTimeout(key string, d Duration) error {
	switch {
	case d < 0:
		return errorf(ErrInvalid, "%s is %s: a timeout cannot be negative (0 means none)", key, d)
	case d > maxTimeout:
		return errorf(ErrInvalid, "%s is %s: PostgreSQL accepts at most %s", key, d, maxTimeout)
	}
	return nil
}

// Pool modes: a server connection per transaction or per client session.
const (
	PoolModeTransaction = "transaction"
	PoolModeSession     = "session"
)

// Pool overrides the pool settings of the tenant; nil fields inherit the
// proxy's.
type Pool struct {
	// Size is the most server connections of the tenant's pool, at least 1.
	Size *int `json:"size,omitempty"`
	// MinIdle is the idle connections the pool keeps, at most Size.
	MinIdle *int `json:"min_idle,omitempty"`
	// WaitTimeout is how long a client waits for a connection.
	WaitTimeout *Duration `json:"wait_timeout,omitempty"`
	// IdleTimeout closes connections idle that long.
	IdleTimeout *Duration `json:"idle_timeout,omitempty"`
	// MaxLifetime closes connections that old.
	MaxLifetime *Duration `json:"max_lifetime,omitempty"`
	// Mode is PoolModeTransaction or PoolModeSession.
	Mode *string `json:"mode,omitempty"`
}

// Validate reports the first override out of range, naming its JSON key.
func (p Pool) Validate() error {
	if p.Size != nil && *p.Size < 1 {
		return errorf(ErrInvalid, "pool.size is %d: a pool needs at least 1 connection (omit it to inherit)", *p.Size)
	}
	if p.MinIdle != nil && *p.MinIdle < 0 {
		return errorf(ErrInvalid, "pool.min_idle is %d: it cannot be negative", *p.MinIdle)
	}
	if p.Size != nil && p.MinIdle != nil && *p.MinIdle > *p.Size {
		return errorf(ErrInvalid, "pool.min_idle %d is more than pool.size %d: lower min_idle or raise size", *p.MinIdle, *p.Size)
	}
	for _, d := range []struct {
		key string
		v   *Duration
	}{{"pool.wait_timeout", p.WaitTimeout}, {"pool.idle_timeout", p.IdleTimeout}, {"pool.max_lifetime", p.MaxLifetime}} {
		if d.v != nil && *d.v < 0 {
			return errorf(ErrInvalid, "%s is %s: it cannot be negative", d.key, *d.v)
		}
	}
	if p.Mode != nil && *p.Mode != PoolModeTransaction && *p.Mode != PoolModeSession {
		return errorf(ErrInvalid, "pool.mode is %q: use %q or %q (omit it to inherit)", *p.Mode, PoolModeTransaction, PoolModeSession)
	}
	return nil
}

// Org is an org's record in the registry.
type Org struct {
	ID       string   `json:"id"`
	Slug     string   `json:"slug"`
	Name     string   `json:"name"`
	Status   Status   `json:"status"`
	Settings Settings `json:"settings"`
	// Flags are the org's feature flags: a JSON object whose values are
	// JSON scalars or objects as stored.
	Flags map[string]any `json:"flags"`
	Pool  Pool           `json:"pool"`
	// Version increases on every change to the record.
	Version   int64     `json:"version"`
	CreatedAt time.Time `json:"created_at"`
	CreatedBy string    `json:"created_by"`
	UpdatedAt time.Time `json:"updated_at"`
	UpdatedBy string    `json:"updated_by"`
}

// Member is a subject (the sub claim of a token) that may act for an org.
type Member struct {
	OrgID   string `json:"org_id"`
	Subject string `json:"subject"`
	// Role is RoleAdmin or RoleMember; empty means RoleMember in PutMember.
	Role string `json:"role"`
	// Status is MemberActive or MemberDisabled; empty means MemberActive in
	// PutMember.
	Status    string    `json:"status"`
	CreatedAt time.Time `json:"created_at"`
	CreatedBy string    `json:"created_by"`
	UpdatedAt time.Time `json:"updated_at"`
	UpdatedBy string    `json:"updated_by"`
}

// Validate checks the fields PutMember stores, after the defaults for an
// empty Role and Status.
func (m Member) Validate() error {
	m = m.withDefaults()
	switch {
	case !ValidID(m.OrgID):
		return errorf(ErrInvalid, "member org_id %q is not an org id", m.OrgID)
	case m.Subject == "" || utf8.RuneCountInString(m.Subject) > MaxSubjectLen:
		return errorf(ErrInvalid, "member subject must be 1 to %d characters (the sub claim of the member's tokens)", MaxSubjectLen)
	case m.Role != RoleAdmin && m.Role != RoleMember:
		return errorf(ErrInvalid, "member role %q: use %q or %q", m.Role, RoleAdmin, RoleMember)
	case m.Status != MemberActive && m.Status != MemberDisabled:
		return errorf(ErrInvalid, "member status %q: use %q or %q", m.Status, MemberActive, MemberDisabled)
	}
	return nil
}

// withDefaults fills an empty Role and Status.
func (m Member) withDefaults() Member {
	if m.Role == "" {
		m.Role = RoleMember
	}
	if m.Status == "" {
		m.Status = MemberActive
	}
	return m
}

// HistoryEntry is one row of an org's history: one change, who made it and
// why.
type HistoryEntry struct {
	ID    int64     `json:"id"`
	OrgID string    `json:"org_id"`
	At    time.Time `json:"at"`
	Actor string    `json:"actor"`
	// Action is one of the Action... constants.
	Action string `json:"action"`
	// FromStatus and ToStatus are set when the change moved the status.
	FromStatus Status          `json:"from_status,omitempty"`
	ToStatus   Status          `json:"to_status,omitempty"`
	Reason     string          `json:"reason,omitempty"`
	Detail     json.RawMessage `json:"detail,omitempty"`
}

// The actions recorded in tenancy.org_history.
const (
	ActionCreate       = "create"
	ActionUpdate       = "update"
	ActionSuspend      = "suspend"
	ActionResume       = "resume"
	ActionDeprovision  = "deprovision"
	ActionMemberPut    = "member_put"
	ActionMemberDelete = "member_delete"
	ActionPurge        = "purge"
)

// NewOrg is what Create needs to register an org.
type NewOrg struct {
	ID string `json:"id"`
	// Slug defaults to ID lower-cased, with '_' and '.' turned into '-'.
	Slug     string         `json:"slug"`
	Name     string         `json:"name"`
	Settings Settings       `json:"settings"`
	Flags    map[string]any `json:"flags"`
	Pool     Pool           `json:"pool"`
}

// Validate reports the first field that Create would refuse, after the
// default slug.
func (n NewOrg) Validate() error {
	n = n.withDefaults()
	if !ValidID(n.ID) {
		return errorf(ErrInvalid, "org id %q must be 1 to 63 characters of A-Z a-z 0-9 _ . -, the first a letter or digit", n.ID)
	}
	if !ValidSlug(n.Slug) {
		return errorf(ErrInvalid, "org slug %q must be 1 to 63 characters of a-z 0-9 -, the first a letter or digit", n.Slug)
	}
	if err := checkName(n.Name); err != nil {
		return err
	}
	if err := n.Settings.Validate(); err != nil {
		return err
	}
	if err := checkFlags(n.Flags); err != nil {
		return err
	}
	return n.Pool.Validate()
}

// withDefaults fills an empty Slug from the ID and a nil Flags.
func (n NewOrg) withDefaults() NewOrg {
	if n.Slug == "" {
		n.Slug = strings.NewReplacer("_", "-", ".", "-").Replace(strings.ToLower(n.ID))
	}
	if n.Flags == nil {
		n.Flags = map[string]any{}
	}
	return n
}

// checkName accepts 1 to MaxNameLen characters, not all blank.
func checkName(name string) error {
	if strings.TrimSpace(name) == "" || utf8.RuneCountInString(name) > MaxNameLen {
		return errorf(ErrInvalid, "org name must be 1 to %d characters, not all blank", MaxNameLen)
	}
	return nil
}

// checkFlags requires flags to encode as JSON.
func checkFlags(flags map[string]any) error {
	if _, err := json.Marshal(flags); err != nil {
		return errorf(ErrInvalid, "flags do not encode as JSON: %v", err)
	}
	return nil
}

// Patch changes some fields of an org; nil fields are unchanged.
type Patch struct {
	Name     *string   `json:"name,omitempty"`
	Settings *Settings `json:"settings,omitempty"`
	// Flags replaces the whole flag object when not nil.
	Flags map[string]any `json:"flags,omitempty"`
	Pool  *Pool          `json:"pool,omitempty"`
}

// Validate reports the first field Update would refuse, or that p changes
// nothing.
func (p Patch) Validate() error {
	if p.Name == nil && p.Settings == nil && p.Flags == nil && p.Pool == nil {
		return errorf(ErrInvalid, "the patch changes nothing: set at least one of name, settings, flags, pool")
	}
	if p.Name != nil {
		if err := checkName(*p.Name); err != nil {
			return err
		}
	}
	if p.Settings != nil {
		if err := p.Settings.Validate(); err != nil {
			return err
		}
	}
	if err := checkFlags(p.Flags); err != nil {
		return err
	}
	if p.Pool != nil {
		return p.Pool.Validate()
	}
	return nil
}

// ListOptions select and page the orgs List returns.
type ListOptions struct {
	// Status, when set, keeps the orgs with that status.
	Status Status
	// Search, when set, keeps the orgs whose id, slug or name contains it,
	// ignoring case.
	Search string
	// Limit is the page size: DefaultListLimit when 0; more than
	// MaxListLimit is MaxListLimit.
	Limit int
	// Offset skips that many orgs of the selection.
	Offset int
}

// Page sizes of List.
const (
	DefaultListLimit = 50
	MaxListLimit     = 500
)

// Page is one page of List: the orgs in id order, the size of the whole
// selection, and the limit and offset used.
type Page struct {
	Orgs   []Org `json:"orgs"`
	Total  int   `json:"total"`
	Limit  int   `json:"limit"`
	Offset int   `json:"offset"`
}

// normalized applies the default limit and checks the options.
func (o ListOptions) normalized() (ListOptions, error) {
	if o.Limit == 0 {
		o.Limit = DefaultListLimit
	}
	o.Limit = min(o.Limit, MaxListLimit)
	switch {
	case o.Limit < 0:
		return o, errorf(ErrInvalid, "limit %d cannot be negative: use 1 to %d (0 for %d)", o.Limit, MaxListLimit, DefaultListLimit)
	case o.Offset < 0:
		return o, errorf(ErrInvalid, "offset %d cannot be negative", o.Offset)
	case o.Status != "" && !o.Status.Valid():
		return o, errorf(ErrInvalid, "status %q: use %q, %q or %q", o.Status, StatusActive, StatusSuspended, StatusDeprovisioned)
	}
	return o, nil
}
