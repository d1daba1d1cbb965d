package audit

import (
	"context"
	"errors"
	"math/rand/v2"
	"slices"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/rs/zerolog"
)

// Table is where events are written, in the control database.
const Table = "tenancy.audit_events"

// insertSQL writes a batch in one statement: one array per column.
const insertSQL = `INSERT INTO ` + Table + ` (at, org, subject, token_id, client_addr, reason, rule, sqlstate, fingerprint, detail, instance)
SELECT at, NULLIF(org, ''), NULLIF(subject, ''), NULLIF(token_id, ''), NULLIF(client_addr, ''), reason,
	NULLIF(rule, ''), NULLIF(sqlstate, ''), NULLIF(fingerprint, ''), NULLIF(detail, ''), NULLIF(instance, '')
FROM unnest($1::timestamptz[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[],
	$7::text[], $8::text[], $9::text[], $10::text[], $11::text[])
	AS e(at, org, subject, token_id, client_addr, reason, rule, sqlstate, fingerprint, detail, instance)`

// Reconnection backoff and the bound on one write.
const (
	minBackoff = 100 * time.Millisecond
	// DefaultMaxBackoff is the longest wait between two connection attempts
	// while the control database is unreachable.
	DefaultMaxBackoff = 10 * time.Second
	// DefaultConnectTimeout bounds one connection attempt when the DSN sets
	// no connect_timeout.
	DefaultConnectTimeout = 5 * time.Second
	// writeTimeout bounds one batch (or one replayed segment) so that a hung
	// database turns into spooling rather than a stuck writer.
	writeTimeout = 30 * time.Second
	// applicationName is shown in pg_stat_activity unless the DSN sets one.
	applicationName = "pgtenant-audit"
)

// table is the writer's connection to the control database, opened on
// demand and reopened with exponential backoff after a failure. It is owned
// by the writer goroutine and not safe for concurrent use.
type table struct {
	cfg        *pgx.ConnConfig
	log        zerolog.Logger
	maxBackoff time.Duration

	conn    *pgx.Conn
	backoff time.Duration
	retryAt time.Time // no connection attempt before this
	down    bool      // the last attempt or write failed; logged once per outage
}

// ready returns whether a connection is open, opening one when the backoff
// allows.
func (t *table) ready(ctx context.Context) bool {
	if t.conn != nil && !t.conn.IsClosed() {
		return true
	}
	t.conn = nil
	if time.Now().Before(t.retryAt) || ctx.Err() != nil {
		return false
	}
	conn, err := pgx.ConnectConfig(ctx, t.cfg.Copy())
	if err != nil {
		t.failed(err)
		return false
	}
	t.conn = conn
	if t.down {
		t.down = false
		t.log.Info().Msg("audit: the control database is reachable again; writing audit events to " + Table)
	}
	t.backoff = 0
	return true
}

// failed closes the connection and schedules the next attempt.
func (t *table) failed(err error) {
	t.close()
	if t.backoff == 0 {
		t.backoff = minBackoff
	} else {
		t.backoff = min(2*t.backoff, t.maxBackoff)
	}
	// Jitter keeps instances that lost the database together from
	// reconnecting together.
	wait := t.backoff/2 + rand.N(t.backoff/2+1)
	t.retryAt = time.Now().Add(wait)
	if !t.down {
		t.down = true
		t.log.Error().Err(err).Msg("audit: cannot write to the control database; spooling audit events to disk until it is back")
	} else {
		t.log.Debug().Err(err).Dur("retry_in", wait).Msg("audit: control database still unavailable")
	}
}

// insert writes events in one INSERT.
func (t *table) insert(ctx context.Context, q querier, events []spooled) error {
	n := len(events)
	at := make([]time.Time, n)
	cols := make([][]string, 10)
	for i := range cols {
		cols[i] = make([]string, n)
	}
	for i, e := range events {
		at[i] = e.Time
		for j, v := range []string{e.Org, e.Subject, e.TokenID, e.ClientAddr, e.Reason, e.Rule, e.SQLState, e.Fingerprint, e.Detail, e.Instance} {
			cols[j][i] = v
		}
	}
	args := []any{at}
	for _, c := range cols {
		args = append(args, c)
	}
	_, err := q.Exec(ctx, insertSQL, args...)
	return err
}

// querier is what insert needs of a connection or a transaction.
type querier interface {
	Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error)
}

// write inserts events in batches of batchSize, all in one transaction when
// there is more than one batch. On error nothing was written.
func (t *table) write(ctx context.Context, events []spooled, batchSize int) error {
	ctx, cancel := context.WithTimeout(ctx, writeTimeout)
	defer cancel()
	if len(events) <= batchSize {
		return t.insert(ctx, t.conn, events)
	}
	return pgx.BeginFunc(ctx, t.conn, func(tx pgx.Tx) error {
		for chunk := range slices.Chunk(events, batchSize) {
			if err := t.insert(ctx, tx, chunk); err != nil {
				return err
			}
		}
		return nil
	})
}

// close closes the connection, if any, without waiting long for the server.
func (t *table) close() {
	if t.conn == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	_ = t.conn.Close(ctx)
	t.conn = nil
}

// rejected reports whether err is PostgreSQL refusing the values themselves
// (data exception, integrity violation): writing the same events again would
// fail again.
func rejected(err error) bool {
	var pe *pgconn.PgError
	if !errors.As(err, &pe) || len(pe.Code) != 5 {
		return false
	}
	class := pe.Code[:2]
	return class == "22" || class == "23"
}
