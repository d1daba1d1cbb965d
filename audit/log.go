package audit

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"
)

// Log records audit events. Record is safe for concurrent use and never
// blocks on the database or the disk.
//
// With a table sink (Config.DSN set), New starts one writer goroutine that
// owns the connection to the control database and the spool directory
// (locked against other processes); Close stops it and releases both. Close
// is idempotent. Whoever called New must call Close.
type Log struct {
	logger zerolog.Logger
	m      *metrics
	queue  chan Event // nil without a table sink

	mu struct {
		sync.RWMutex
		closed bool // Record no longer enqueues
	}
	stop     chan struct{} // closed by Close
	done     chan struct{} // closed when the writer has returned
	cancel   context.CancelFunc
	stopOnce sync.Once
}

// options are New's internal knobs, for tests.
type options struct {
	maxBackoff time.Duration
}

// New returns a Log. Zero fields of cfg take their defaults. Its metrics
// are registered on reg (nil registers nothing); registering two Logs on one
// registry fails. With cfg.DSN set, New creates and locks cfg.SpoolDir and
// starts the writer, which connects on its own: an unreachable control
// database is not an error, events are spooled until it answers.
func New(cfg Config, log zerolog.Logger, reg prometheus.Registerer) (*Log, error) {
	return newLog(cfg, log, reg, options{maxBackoff: DefaultMaxBackoff})
}

func newLog(cfg Config, log zerolog.Logger, reg prometheus.Registerer, opts options) (*Log, error) {
	cfg.SetDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	l := &Log{logger: log}
	if cfg.DSN != "" {
		l.queue = make(chan Event, cfg.QueueSize)
	}
	l.m = newMetrics(func() float64 { return float64(len(l.queue)) })

	var w *writer
	if cfg.DSN != "" {
		pc, err := pgx.ParseConfig(cfg.DSN)
		if err != nil {
			return nil, fmt.Errorf("audit.dsn: not a valid PostgreSQL URL or keyword/value string%s", dsnErrorCause(err))
		}
		if pc.ConnectTimeout == 0 {
			pc.ConnectTimeout = DefaultConnectTimeout
		}
		if _, ok := pc.RuntimeParams["application_name"]; !ok {
			pc.RuntimeParams["application_name"] = applicationName
		}
		sp, err := openSpool(cfg.SpoolDir, cfg.SpoolMaxBytes)
		if err != nil {
			return nil, err
		}
		w = &writer{
			cfg:   cfg,
			log:   log,
			m:     l.m,
			queue: l.queue,
			table: &table{cfg: pc, log: log, maxBackoff: opts.maxBackoff},
			spool: sp,
		}
		l.m.spoolBytes.Set(float64(sp.total))
	}
	if reg != nil {
		if err := l.m.register(reg); err != nil {
			if w != nil {
				_ = w.spool.close()
			}
			return nil, fmt.Errorf("audit: registering metrics: %w", err)
		}
	}
	if w != nil {
		if !w.spool.empty() {
			log.Info().Int64("bytes", w.spool.total).Str("spool_dir", cfg.SpoolDir).
				Msg("audit: found spooled events of an earlier run; they are written once the control database answers")
		}
		ctx, cancel := context.WithCancel(context.Background())
		l.stop, l.done, l.cancel = make(chan struct{}), make(chan struct{}), cancel
		go func() {
			defer close(l.done)
			defer cancel()
			w.run(ctx, l.stop)
		}()
	}
	return l, nil
}

// Record logs ev at warn level, counts it in
// pgtenant_cross_tenant_blocked_total, and queues it for the table. It
// returns at once: when the queue is full the event is not written to the
// table and counts as dropped (cause "queue_full"); after Close it counts as
// dropped with cause "closed". A zero ev.Time means now.
func (l *Log) Record(ev Event) {
	ev = ev.normalized(time.Now())
	e := l.logger.Warn().
		Str("tenant", ev.Org).
		Str("subject", ev.Subject).
		Str("client_addr", ev.ClientAddr).
		Str("reason", ev.Reason).
		Str("rule", ev.Rule).
		Str("sqlstate", ev.SQLState).
		Str("fingerprint", ev.Fingerprint)
	if ev.TokenID != "" {
		e = e.Str("token_id", ev.TokenID)
	}
	if ev.Detail != "" {
		e = e.Str("detail", ev.Detail)
	}
	e.Msg("audit event")
	l.m.countBlocked(ev.Reason)

	if l.queue == nil {
		return
	}
	// The read lock orders enqueues before Close: the writer's final drain
	// sees every event enqueued by a Record that found the Log open.
	l.mu.RLock()
	defer l.mu.RUnlock()
	if l.mu.closed {
		l.m.drop(causeClosed, 1)
		return
	}
	select {
	case l.queue <- ev:
	default:
		l.m.drop(causeQueueFull, 1)
	}
}

// Close stops taking events, writes the queued ones (to the table, or to the
// spool when the table is unavailable or ctx ends first), closes the
// database connection and releases the spool. When ctx ends before the
// writer has finished, Close cancels its database work and returns an error;
// the writer then finishes with the spool on its own. Close is idempotent;
// every call waits (bounded by its ctx) for the writer.
func (l *Log) Close(ctx context.Context) error {
	if l.done == nil {
		return nil
	}
	l.stopOnce.Do(func() {
		l.mu.Lock()
		l.mu.closed = true
		l.mu.Unlock()
		close(l.stop)
	})
	select {
	case <-l.done:
		return nil
	default:
	}
	select {
	case <-l.done:
		return nil
	case <-ctx.Done():
		// Cancelled here rather than by context.AfterFunc, whose stop can
		// win the race with a ctx that is already done and never cancel.
		l.cancel()
		return fmt.Errorf("audit: close: %w before the queued events were written; they go to the spool", ctx.Err())
	}
}
