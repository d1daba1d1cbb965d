package tenants

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/pgtenant/pgtenant/audit"
)

// Store reads and writes the tenant registry in the tenancy schema. Every
// change runs in one transaction with its row of tenancy.org_history.
//
// The pool belongs to the caller, who closes it after the last use of the
// Store; its role must be able to read and write the registry tables (the
// tenancy schema's owner, or a role it granted them to). A Store is safe for
// concurrent use.
type Store struct {
	pool *pgxpool.Pool
}

// NewStore returns a Store that runs its queries on pool.
func NewStore(pool *pgxpool.Pool) *Store {
	return &Store{pool: pool}
}

// History page sizes.
const (
	DefaultHistoryLimit = 50
	MaxHistoryLimit     = 1000
)

// orgColumns are the columns scanOrg reads, in its order.
const orgColumns = "id, slug, name, status, settings, flags, pool, version, created_at, created_by, updated_at, updated_by"

// scanOrg reads one row of orgColumns.
func scanOrg(row pgx.Row) (Org, error) {
	var o Org
	err := row.Scan(&o.ID, &o.Slug, &o.Name, &o.Status, &o.Settings, &o.Flags, &o.Pool,
		&o.Version, &o.CreatedAt, &o.CreatedBy, &o.UpdatedAt, &o.UpdatedBy)
	return o, err
}

// memberColumns are the columns scanMember reads, in its order.
const memberColumns = "org_id, subject, role, status, created_at, created_by, updated_at, updated_by"

// scanMember reads one row of memberColumns.
func scanMember(row pgx.Row) (Member, error) {
	var m Member
	err := row.Scan(&m.OrgID, &m.Subject, &m.Role, &m.Status, &m.CreatedAt, &m.CreatedBy, &m.UpdatedAt, &m.UpdatedBy)
	return m, err
}

// List returns one page of the orgs o selects, in id order, with the size
// of the whole selection.
func (s *Store) List(ctx context.Context, o ListOptions) (Page, error) {
	o, err := o.normalized()
	if err != nil {
		return Page{}, err
	}
	where, args := listFilter(o)
	page := Page{Orgs: []Org{}, Limit: o.Limit, Offset: o.Offset}
	// One snapshot for the page and the total, so they agree.
	err = pgx.BeginTxFunc(ctx, s.pool, pgx.TxOptions{IsoLevel: pgx.RepeatableRead, AccessMode: pgx.ReadOnly}, func(tx pgx.Tx) error {
		if err := tx.QueryRow(ctx, "SELECT count(*) FROM tenancy.orgs"+where, args...).Scan(&page.Total); err != nil {
			return err
		}
		n := len(args)
		rows, err := tx.Query(ctx, "SELECT "+orgColumns+" FROM tenancy.orgs"+where+
			" ORDER BY id LIMIT $"+strconv.Itoa(n+1)+" OFFSET $"+strconv.Itoa(n+2), append(args, o.Limit, o.Offset)...)
		if err != nil {
			return err
		}
		page.Orgs, err = pgx.CollectRows(rows, func(r pgx.CollectableRow) (Org, error) { return scanOrg(r) })
		return err
	})
	if err != nil {
		return Page{}, fmt.Errorf("listing orgs: %w", err)
	}
	return page, nil
}

// likeEscaper escapes the LIKE wildcards of a search string.
var likeEscaper = strings.NewReplacer(`\`, `\\`, `%`, `\%`, `_`, `\_`)

// listFilter returns the WHERE clause (empty or starting with a space) and
// its arguments for o's status and search.
func listFilter(o ListOptions) (string, []any) {
	var conds []string
	var args []any
	if o.Status != "" {
		args = append(args, string(o.Status))
		conds = append(conds, "status = $"+strconv.Itoa(len(args)))
	}
	if o.Search != "" {
		args = append(args, "%"+likeEscaper.Replace(o.Search)+"%")
		p := "$" + strconv.Itoa(len(args))
		conds = append(conds, "(id ILIKE "+p+" OR slug ILIKE "+p+" OR name ILIKE "+p+")")
	}
	if len(conds) == 0 {
		return "", nil
	}
	return " WHERE " + strings.Join(conds, " AND "), args
}

// Get returns the org with that id.
func (s *Store) Get(ctx context.Context, id string) (Org, error) {
	o, err := scanOrg(s.pool.QueryRow(ctx, "SELECT "+orgColumns+" FROM tenancy.orgs WHERE id = $1", id))
	if errors.Is(err, pgx.ErrNoRows) {
		return Org{}, orgNotFound(id)
	}
	if err != nil {
		return Org{}, fmt.Errorf("reading org %s: %w", id, err)
	}
	return o, nil
}

// Create registers an active org and records it in the history (action
// create, by actor). It fails with ErrExists when the id or the slug is
// taken, ErrInvalid when n does not validate.
func (s *Store) Create(ctx context.Context, actor string, n NewOrg) (Org, error) {
	if err := checkActor(actor); err != nil {
		return Org{}, err
	}
	n = n.withDefaults()
	if err := n.Validate(); err != nil {
		return Org{}, err
	}
	settings, flags, pool, err := marshalOrgJSON(&n.Settings, n.Flags, &n.Pool)
	if err != nil {
		return Org{}, err
	}
	var o Org
	err = pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		o, err = scanOrg(tx.QueryRow(ctx, `
			INSERT INTO tenancy.orgs (id, slug, name, settings, flags, pool, created_by, updated_by)
			VALUES ($1, $2, $3, $4, $5, $6, $7, $7)
			RETURNING `+orgColumns, n.ID, n.Slug, n.Name, settings, flags, pool, actor))
		if err != nil {
			return err
		}
		return writeHistory(ctx, tx, historyRow{org: o.ID, actor: actor, action: ActionCreate, to: o.Status, detail: n})
	})
	if err != nil {
		return Org{}, writeError(err, "creating org "+n.ID, n.ID, n.Slug)
	}
	return o, nil
}

// Update applies p to the org when version is its current version (0 skips
// the check), and records it in the history (action update, the patch as
// detail). It increments the org's version and sets updated_at and
// updated_by. It fails with ErrVersionConflict when the org is at another
// version, ErrNotFound when it does not exist, ErrInvalid when p does not
// validate.
func (s *Store) Update(ctx context.Context, actor, id string, version int64, p Patch) (Org, error) {
	if err := checkActor(actor); err != nil {
		return Org{}, err
	}
	if version < 0 {
		return Org{}, errorf(ErrInvalid, "version %d cannot be negative (0 updates whatever the version)", version)
	}
	if err := p.Validate(); err != nil {
		return Org{}, err
	}
	settings, flags, pool, err := marshalOrgJSON(p.Settings, p.Flags, p.Pool)
	if err != nil {
		return Org{}, err
	}
	var o Org
	err = pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		o, err = scanOrg(tx.QueryRow(ctx, `
			UPDATE tenancy.orgs SET
				name = coalesce($3::text, name),
				settings = coalesce($4::jsonb, settings),
				flags = coalesce($5::jsonb, flags),
				pool = coalesce($6::jsonb, pool),
				version = version + 1,
				updated_at = pg_catalog.now(),
				updated_by = $7
			WHERE id = $1 AND ($2::bigint = 0 OR version = $2::bigint)
			RETURNING `+orgColumns, id, version, p.Name, settings, flags, pool, actor))
		if errors.Is(err, pgx.ErrNoRows) {
			return missingOrStale(ctx, tx, id, version)
		}
		if err != nil {
			return err
		}
		return writeHistory(ctx, tx, historyRow{org: id, actor: actor, action: ActionUpdate, detail: p})
	})
	if err != nil {
		return Org{}, writeError(err, "updating org "+id, id, "")
	}
	return o, nil
}

// missingOrStale tells why an org was not updated: it does not exist, or
// it is at another version than the caller's.
func missingOrStale(ctx context.Context, tx pgx.Tx, id string, version int64) error {
	var current int64
	err := tx.QueryRow(ctx, "SELECT version FROM tenancy.orgs WHERE id = $1", id).Scan(&current)
	if errors.Is(err, pgx.ErrNoRows) {
		return orgNotFound(id)
	}
	if err != nil {
		return err
	}
	return errorf(ErrVersionConflict, "org %s is at version %d, not %d: someone changed it since you read it; read it again and reapply your change",
		id, current, version)
}

// SetStatus moves the org to status to and records it in the history
// (action suspend, resume or deprovision, with from, to and reason). The
// moves allowed are active to suspended and back, and active or suspended
// to deprovisioned, which is final; any other fails with
// ErrInvalidTransition. Moving to the status the org has is a no-op that
// returns the org unchanged and records nothing.
func (s *Store) SetStatus(ctx context.Context, actor, id string, to Status, reason string) (Org, error) {
	if err := checkActor(actor); err != nil {
		return Org{}, err
	}
	if !to.Valid() {
		return Org{}, errorf(ErrInvalid, "status %q: use %q, %q or %q", to, StatusActive, StatusSuspended, StatusDeprovisioned)
	}
	var o Org
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		var err error
		o, err = scanOrg(tx.QueryRow(ctx, "SELECT "+orgColumns+" FROM tenancy.orgs WHERE id = $1 FOR UPDATE", id))
		if errors.Is(err, pgx.ErrNoRows) {
			return orgNotFound(id)
		}
		if err != nil || o.Status == to {
			return err
		}
		action, err := transition(id, o.Status, to)
		if err != nil {
			return err
		}
		from := o.Status
		o, err = scanOrg(tx.QueryRow(ctx, `
			UPDATE tenancy.orgs SET status = $2, version = version + 1, updated_at = pg_catalog.now(), updated_by = $3
			WHERE id = $1
			RETURNING `+orgColumns, id, string(to), actor))
		if err != nil {
			return err
		}
		return writeHistory(ctx, tx, historyRow{org: id, actor: actor, action: action, from: from, to: to, reason: reason})
	})
	if err != nil {
		return Org{}, writeError(err, "changing the status of org "+id, id, "")
	}
	return o, nil
}

// transition returns the history action of the move from to to, or
// ErrInvalidTransition when it is not allowed.
func transition(id string, from, to Status) (string, error) {
	switch {
	case from == StatusDeprovisioned:
		return "", errorf(ErrInvalidTransition, "org %s is deprovisioned, which is final: it cannot become %s", id, to)
	case to == StatusDeprovisioned:
		return ActionDeprovision, nil
	case from == StatusActive && to == StatusSuspended:
		return ActionSuspend, nil
	case from == StatusSuspended && to == StatusActive:
		return ActionResume, nil
	}
	return "", errorf(ErrInvalidTransition, "org %s cannot move from %s to %s", id, from, to)
}

// History returns the org's history, newest first: at most limit entries
// (DefaultHistoryLimit when 0, at most MaxHistoryLimit). The history of a
// deleted org remains; ErrNotFound means neither the org nor any history
// of it exists.
func (s *Store) History(ctx context.Context, id string, limit int) ([]HistoryEntry, error) {
	switch {
	case limit < 0:
		return nil, errorf(ErrInvalid, "history limit %d cannot be negative", limit)
	case limit == 0:
		limit = DefaultHistoryLimit
	}
	limit = min(limit, MaxHistoryLimit)
	rows, err := s.pool.Query(ctx, `
		SELECT id, org_id, at, actor, action, coalesce(from_status, ''), coalesce(to_status, ''), coalesce(reason, ''), detail
		FROM tenancy.org_history WHERE org_id = $1 ORDER BY id DESC LIMIT $2`, id, limit)
	if err != nil {
		return nil, fmt.Errorf("reading the history of org %s: %w", id, err)
	}
	entries, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (HistoryEntry, error) {
		var h HistoryEntry
		var detail []byte
		err := r.Scan(&h.ID, &h.OrgID, &h.At, &h.Actor, &h.Action, &h.FromStatus, &h.ToStatus, &h.Reason, &detail)
		h.Detail = detail
		return h, err
	})
	if err != nil {
		return nil, fmt.Errorf("reading the history of org %s: %w", id, err)
	}
	if len(entries) == 0 {
		if err := requireOrg(ctx, s.pool, id); err != nil {
			return nil, err
		}
	}
	return entries, nil
}

// querier is what requireOrg needs of a pool or a transaction.
type querier interface {
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
}

// requireOrg returns ErrNotFound when the org does not exist.
func requireOrg(ctx context.Context, q querier, id string) error {
	var exists bool
	if err := q.QueryRow(ctx, "SELECT EXISTS (SELECT 1 FROM tenancy.orgs WHERE id = $1)", id).Scan(&exists); err != nil {
		return fmt.Errorf("looking up org %s: %w", id, err)
	}
	if !exists {
		return orgNotFound(id)
	}
	return nil
}

// Members returns the org's members in subject order. It fails with
// ErrNotFound when the org does not exist.
func (s *Store) Members(ctx context.Context, orgID string) ([]Member, error) {
	var members []Member
	err := pgx.BeginTxFunc(ctx, s.pool, pgx.TxOptions{IsoLevel: pgx.RepeatableRead, AccessMode: pgx.ReadOnly}, func(tx pgx.Tx) error {
		if err := requireOrg(ctx, tx, orgID); err != nil {
			return err
		}
		rows, err := tx.Query(ctx, "SELECT "+memberColumns+" FROM tenancy.org_members WHERE org_id = $1 ORDER BY subject", orgID)
		if err != nil {
			return err
		}
		members, err = pgx.CollectRows(rows, func(r pgx.CollectableRow) (Member, error) { return scanMember(r) })
		return err
	})
	if err != nil {
		return nil, wrapRead(err, "reading the members of org "+orgID)
	}
	return members, nil
}

// Member returns the membership of subject in the org, ErrNotFound when
// there is none.
func (s *Store) Member(ctx context.Context, orgID, subject string) (Member, error) {
	m, err := scanMember(s.pool.QueryRow(ctx,
		"SELECT "+memberColumns+" FROM tenancy.org_members WHERE org_id = $1 AND subject = $2", orgID, subject))
	if errors.Is(err, pgx.ErrNoRows) {
		return Member{}, memberNotFound(orgID, subject)
	}
	if err != nil {
		return Member{}, fmt.Errorf("reading member %q of org %s: %w", subject, orgID, err)
	}
	return m, nil
}

// PutMember makes m.Subject a member of m.OrgID with m.Role and m.Status
// (RoleMember and MemberActive when empty), or changes its role and
// status, and records it in the history (action member_put) unless nothing
// changed. It returns the stored member; ErrNotFound when the org does not
// exist.
func (s *Store) PutMember(ctx context.Context, actor string, m Member) (Member, error) {
	if err := checkActor(actor); err != nil {
		return Member{}, err
	}
	m = m.withDefaults()
	if err := m.Validate(); err != nil {
		return Member{}, err
	}
	var stored Member
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		var err error
		stored, err = scanMember(tx.QueryRow(ctx, `
			INSERT INTO tenancy.org_members AS m (org_id, subject, role, status, created_by, updated_by)
			VALUES ($1, $2, $3, $4, $5, $5)
			ON CONFLICT (org_id, subject) DO UPDATE
				SET role = EXCLUDED.role, status = EXCLUDED.status, updated_at = pg_catalog.now(), updated_by = EXCLUDED.updated_by
				WHERE (m.role, m.status) IS DISTINCT FROM (EXCLUDED.role, EXCLUDED.status)
			RETURNING `+memberColumns, m.OrgID, m.Subject, m.Role, m.Status, actor))
		if errors.Is(err, pgx.ErrNoRows) {
			// Already so: nothing to record.
			stored, err = scanMember(tx.QueryRow(ctx,
				"SELECT "+memberColumns+" FROM tenancy.org_members WHERE org_id = $1 AND subject = $2", m.OrgID, m.Subject))
			return err
		}
		if err != nil {
			return err
		}
		return writeHistory(ctx, tx, historyRow{org: m.OrgID, actor: actor, action: ActionMemberPut,
			detail: map[string]string{"subject": m.Subject, "role": m.Role, "status": m.Status}})
	})
	if err != nil {
		return Member{}, writeError(err, fmt.Sprintf("storing member %q of org %s", m.Subject, m.OrgID), m.OrgID, "")
	}
	return stored, nil
}

// DeleteMember removes subject from the org's members and records it in
// the history (action member_delete). ErrNotFound when it is not a member.
func (s *Store) DeleteMember(ctx context.Context, actor, orgID, subject string) error {
	if err := checkActor(actor); err != nil {
		return err
	}
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		var role, status string
		err := tx.QueryRow(ctx, "DELETE FROM tenancy.org_members WHERE org_id = $1 AND subject = $2 RETURNING role, status",
			orgID, subject).Scan(&role, &status)
		if errors.Is(err, pgx.ErrNoRows) {
			return memberNotFound(orgID, subject)
		}
		if err != nil {
			return err
		}
		return writeHistory(ctx, tx, historyRow{org: orgID, actor: actor, action: ActionMemberDelete,
			detail: map[string]string{"subject": subject, "role": role, "status": status}})
	})
	return wrapRead(err, fmt.Sprintf("removing member %q of org %s", subject, orgID))
}

// CountByStatus returns how many orgs have each status, every status
// present (0 when none).
func (s *Store) CountByStatus(ctx context.Context) (map[Status]int, error) {
	rows, err := s.pool.Query(ctx, "SELECT status, count(*) FROM tenancy.orgs GROUP BY status")
	if err != nil {
		return nil, fmt.Errorf("counting orgs: %w", err)
	}
	counts := map[Status]int{StatusActive: 0, StatusSuspended: 0, StatusDeprovisioned: 0}
	var st Status
	var n int
	if _, err := pgx.ForEachRow(rows, []any{&st, &n}, func() error { counts[st] = n; return nil }); err != nil {
		return nil, fmt.Errorf("counting orgs: %w", err)
	}
	return counts, nil
}

// RecordPurge records in the org's history (action purge, by actor) that
// its data was purged, with detail (JSON-encoded; nil for none), typically
// the tables and the rows Purge deleted. The org row need not exist any
// more.
func (s *Store) RecordPurge(ctx context.Context, actor, orgID string, detail any) error {
	if err := checkActor(actor); err != nil {
		return err
	}
	if !ValidID(orgID) {
		return errorf(ErrInvalid, "org id %q is not an org id", orgID)
	}
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		return writeHistory(ctx, tx, historyRow{org: orgID, actor: actor, action: ActionPurge, detail: detail})
	})
	return wrapRead(err, "recording the purge of org "+orgID)
}

// historyRow is one row of tenancy.org_history to write.
type historyRow struct {
	org, actor, action string
	from, to           Status
	reason             string
	// detail is JSON-encoded; nil stores NULL.
	detail any
}

// writeHistory inserts h in tx.
func writeHistory(ctx context.Context, tx pgx.Tx, h historyRow) error {
	var detail any
	if h.detail != nil {
		b, err := json.Marshal(h.detail)
		if err != nil {
			return errorf(ErrInvalid, "the history detail does not encode as JSON: %v", err)
		}
		detail = json.RawMessage(b)
	}
	_, err := tx.Exec(ctx, `
		INSERT INTO tenancy.org_history (org_id, actor, action, from_status, to_status, reason, detail)
		VALUES ($1, $2, $3, NULLIF($4, ''), NULLIF($5, ''), NULLIF($6, ''), $7::jsonb)`,
		h.org, h.actor, h.action, string(h.from), string(h.to), h.reason, detail)
	if err != nil {
		return fmt.Errorf("writing the history of org %s: %w", h.org, err)
	}
	if !lifecycleActions[h.action] {
		return nil
	}
	// Provisioning is an audit event too, next to the attempts.
	what := h.action
	if h.from != "" {
		what += " " + string(h.from) + " -> " + string(h.to)
	}
	if h.reason != "" {
		what += ": " + h.reason
	}
	if h.action == ActionPurge && detail != nil {
		what += " " + string(detail.(json.RawMessage))
	}
	_, err = tx.Exec(ctx, `INSERT INTO `+audit.Table+` (at, org, subject, reason, rule, detail)
		VALUES (pg_catalog.now(), $1, $2, $3, $4, $5)`, h.org, h.actor, audit.ReasonTenantLifecycle, h.action, what)
	if err != nil {
		return fmt.Errorf("writing the audit event of org %s: %w", h.org, err)
	}
	return nil
}

// lifecycleActions are the history actions that are also audit events.
var lifecycleActions = map[string]bool{
	ActionCreate: true, ActionSuspend: true, ActionResume: true, ActionDeprovision: true, ActionPurge: true,
}

// marshalOrgJSON encodes the JSON columns of an org; a nil argument gives
// a nil value, which the queries read as "unchanged".
func marshalOrgJSON(settings *Settings, flags map[string]any, pool *Pool) (s, f, p any, err error) {
	columns := []struct {
		present bool
		v       any
	}{{settings != nil, settings}, {flags != nil, flags}, {pool != nil, pool}}
	out := make([]any, len(columns))
	for i, c := range columns {
		if !c.present {
			continue
		}
		b, err := json.Marshal(c.v)
		if err != nil {
			return nil, nil, nil, errorf(ErrInvalid, "encoding %T as JSON: %v", c.v, err)
		}
		out[i] = json.RawMessage(b)
	}
	return out[0], out[1], out[2], nil
}

// checkActor requires an actor for the history.
func checkActor(actor string) error {
	if strings.TrimSpace(actor) == "" {
		return errorf(ErrInvalid, "no actor: every change to the registry records who made it")
	}
	return nil
}

func orgNotFound(id string) error {
	return errorf(ErrNotFound, "org %q does not exist", id)
}

func memberNotFound(orgID, subject string) error {
	return errorf(ErrNotFound, "%q is not a member of org %q (or the org does not exist)", subject, orgID)
}

// wrapRead adds what was being done to errors that are not already the
// package's own; nil stays nil.
func wrapRead(err error, doing string) error {
	var own *registryError
	if err == nil || errors.As(err, &own) {
		return err
	}
	return fmt.Errorf("%s: %w", doing, err)
}

// writeError turns the constraint violations of a write into the package's
// errors (id or slug taken, unknown org, a value the table refuses) and
// wraps the others with what was being done.
func writeError(err error, doing, id, slug string) error {
	pe := pgError(err)
	if pe == nil {
		return wrapRead(err, doing)
	}
	switch {
	case pe.Code == "23505" && pe.ConstraintName == "orgs_pkey":
		return errorf(ErrExists, "org id %q is taken: choose another id", id)
	case pe.Code == "23505" && pe.ConstraintName == "orgs_slug_key":
		return errorf(ErrExists, "slug %q is taken by another org: choose another slug", slug)
	case pe.Code == "23503":
		return orgNotFound(id)
	case pe.Code == "23514" || pe.Code == "23502" || pe.Code == "22001":
		return errorf(ErrInvalid, "%s: %s", doing, pe.Message)
	}
	return fmt.Errorf("%s: %w", doing, err)
}

// pgError returns the PostgreSQL error in err's chain, nil when there is
// none.
func pgError(err error) *pgconn.PgError {
	var pe *pgconn.PgError
	if errors.As(err, &pe) {
		return pe
	}
	return nil
}
