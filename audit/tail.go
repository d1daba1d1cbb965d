package audit

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
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
	// Since keeps the events at or after this time.
	Since time.Time
	// AfterID keeps the events with a larger id: those stored since a
	// previous Tail, for following the table.
	AfterID int64
	// Limit is the most events returned; 0 means DefaultTailLimit.
	Limit int
	// OldestFirst returns events in the order they were stored (id
	// ascending) instead of newest first; with AfterID it pages through new
	// events without gaps.
	OldestFirst bool
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
WHERE ($1::text = '' OR org = $1) AND ($2::text = '' OR reason = $2)
	AND ($3::timestamptz IS NULL OR at >= $3) AND id > $4::bigint
ORDER BY `

// Orders of Tail's results.
const (
	newestFirst = `at DESC, id DESC`
	storedOrder = `id`
)

// Tail returns the most recent events that match f, newest first (by time,
// then id) unless f.OldestFirst. conn is a connection to the control
// database; Tail does not close it.
func Tail(ctx context.Context, conn *pgx.Conn, f TailFilter) ([]StoredEvent, error) {
	if f.Limit < 0 {
		return nil, fmt.Errorf("audit: tail limit %d is negative", f.Limit)
	}
	if f.Limit == 0 {
		f.Limit = DefaultTailLimit
	}
	var since *time.Time
	if !f.Since.IsZero() {
		since = &f.Since
	}
	order := newestFirst
	if f.OldestFirst {
		order = storedOrder
	}
	rows, err := conn.Query(ctx, tailSQL+order+` LIMIT $5::integer`, f.Org, f.Reason, since, f.AfterID, f.Limit)
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
