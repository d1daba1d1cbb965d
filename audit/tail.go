package audit

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// Querier runs a query; *pgx.Conn, *pgxpool.Pool and pgx.Tx satisfy it.
type Querier interface {
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
}

var (
	_ Querier = (*pgx.Conn)(nil)
	_ Querier = (*pgxpool.Pool)(nil)
)

// DefaultTailLimit is how many events Tail returns when the filter sets no
// limit.
const DefaultTailLimit = 50

// TailFilter selects events for Tail. Zero fields select everything.
type TailFilter struct {
	// Org keeps the events of one tenant.
	Org string
	// Reason keeps the events of one reason.
	Reason string
	// Subject keeps the events of one token subject.
	Subject string
	// Since keeps the events at or after this time.
	Since time.Time
	// Until keeps the events before this time.
	Until time.Time
	// AfterID keeps the events with a larger id: those stored since a
	// previous Tail, for following the table.
	AfterID int64
	// BeforeID, when not 0, keeps the events with a smaller id: those
	// stored before the last one of a previous page, for paging back
	// through the table newest first (with ByID).
	BeforeID int64
	// Limit is the most events returned; 0 means DefaultTailLimit.
	Limit int
	// OldestFirst returns events in the order they were stored (id
	// ascending) instead of newest first; with AfterID it pages through new
	// events without gaps.
	OldestFirst bool
	// ByID orders newest first by id alone, the order rows were stored,
	// instead of by time then id. Events replayed from the spool are
	// stored later than they happened, so only this order pages through
	// the table with BeforeID without gaps or repeats.
	ByID bool
}

// StoredEvent is an event read back from the table.
type StoredEvent struct {
	// ID is the row's id; ids grow in the order rows were written, which
	// for events replayed from the spool is later than their Time.
	ID int64 `json:"id"`
	Event
	// Instance is the pgtenant instance that wrote the event.
	Instance string `json:"instance,omitempty"`
}

const tailSQL = `SELECT id, at, coalesce(org, ''), coalesce(subject, ''), coalesce(token_id, ''),
	coalesce(client_addr, ''), reason, coalesce(rule, ''), coalesce(sqlstate, ''),
	coalesce(fingerprint, ''), coalesce(detail, ''), coalesce(instance, '')
FROM ` + Table + `
WHERE ($1::text = '' OR org = $1) AND ($2::text = '' OR reason = $2) AND ($3::text = '' OR subject = $3)
	AND ($4::timestamptz IS NULL OR at >= $4) AND ($5::timestamptz IS NULL OR at < $5)
	AND id > $6::bigint AND ($7::bigint = 0 OR id < $7)
ORDER BY `

// Orders of Tail's results.
const (
	newestFirst       = `at DESC, id DESC`
	newestStoredFirst = `id DESC`
	storedOrder       = `id`
)

// Tail returns the most recent events that match f, newest first (by time,
// then id, or by id alone with f.ByID) unless f.OldestFirst. db queries the
// control database (a connection or a pool); Tail does not close it.
func Tail(ctx context.Context, db Querier, f TailFilter) ([]StoredEvent, error) {
	if f.Limit < 0 {
		return nil, fmt.Errorf("audit: tail limit %d is negative", f.Limit)
	}
	if f.BeforeID < 0 {
		return nil, fmt.Errorf("audit: tail before id %d is negative", f.BeforeID)
	}
	if f.Limit == 0 {
		f.Limit = DefaultTailLimit
	}
	order := newestFirst
	switch {
	case f.OldestFirst:
		order = storedOrder
	case f.ByID:
		order = newestStoredFirst
	}
	rows, err := db.Query(ctx, tailSQL+order+` LIMIT $8::integer`, f.Org, f.Reason, f.Subject,
		timeOrNull(f.Since), timeOrNull(f.Until), f.AfterID, f.BeforeID, f.Limit)
	if err != nil {
		return nil, fmt.Errorf("audit: reading %s: %w", Table, err)
	}
	events, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (StoredEvent, error) {
		var e StoredEvent
		err := row.Scan(&e.ID, &e.Time, &e.Org, &e.Subject, &e.TokenID, &e.ClientAddr, &e.Reason,
			&e.Rule, &e.SQLState, &e.Fingerprint, &e.Detail, &e.Instance)
		return e, err
	})
	if err != nil {
		return nil, fmt.Errorf("audit: reading %s: %w", Table, err)
	}
	return events, nil
}

// timeOrNull is nil for the zero time, which the query reads as no bound.
func timeOrNull(t time.Time) *time.Time {
	if t.IsZero() {
		return nil
	}
	return &t
}
