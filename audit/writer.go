package audit

import (
	"context"
	"slices"
	"time"

	"github.com/rs/zerolog"
)

// dropLogInterval is the least time between two log lines about dropped
// events: drops are logged as counts, not one line per event.
const dropLogInterval = 10 * time.Second

// writer moves queued events to the table, or to the spool while the table
// is unavailable, and replays the spool when the table is back. It runs in
// one goroutine, which owns the table connection and the spool.
type writer struct {
	cfg   Config
	log   zerolog.Logger
	m     *metrics
	queue <-chan Event
	table *table
	spool *spool

	lastDropLog  time.Time
	spoolFailing bool // the last spool write failed; logged once per failure spell
}

// run writes batches until stop is closed, then writes what is queued and
// releases the connection and the spool. ctx cancels database work.
func (w *writer) run(ctx context.Context, stop <-chan struct{}) {
	tick := time.NewTicker(w.cfg.FlushInterval)
	defer tick.Stop()
	batch := make([]spooled, 0, w.cfg.BatchSize)
	for {
		select {
		case ev := <-w.queue:
			batch = append(batch, spooled{Event: ev, Instance: w.cfg.Instance})
			if len(batch) >= w.cfg.BatchSize {
				w.flush(ctx, batch)
				batch = batch[:0]
			}
		case <-tick.C:
			if len(batch) > 0 {
				w.flush(ctx, batch)
				batch = batch[:0]
			}
			w.replay(ctx)
			w.reportDrops(false)
		case <-stop:
			w.shutdown(ctx, batch)
			return
		}
	}
}

// shutdown writes the batch and everything still queued, then closes the
// connection and the spool. Record enqueues nothing once stop is closed.
func (w *writer) shutdown(ctx context.Context, batch []spooled) {
	for {
		select {
		case ev := <-w.queue:
			batch = append(batch, spooled{Event: ev, Instance: w.cfg.Instance})
			continue
		default:
		}
		break
	}
	for chunk := range slices.Chunk(batch, w.cfg.BatchSize) {
		w.flush(ctx, chunk)
	}
	w.table.close()
	if err := w.spool.close(); err != nil {
		w.log.Error().Err(err).Str("spool_dir", w.cfg.SpoolDir).Msg("audit: closing the spool")
	}
	w.reportDrops(true)
}

// flush writes one batch to the table, or else to the spool.
func (w *writer) flush(ctx context.Context, batch []spooled) {
	rest := w.toTable(ctx, batch)
	if len(rest) > 0 {
		w.toSpool(rest)
	}
}

// toTable writes events to the table and returns those it could not write
// because the table is unavailable. Events PostgreSQL refuses for their
// values are dropped (cause "rejected"), not returned: they would be refused
// again.
func (w *writer) toTable(ctx context.Context, events []spooled) (unwritten []spooled) {
	if !w.table.ready(ctx) {
		return events
	}
	err := w.table.write(ctx, events, w.cfg.BatchSize)
	if err == nil {
		w.m.written[sinkTable].Add(float64(len(events)))
		return nil
	}
	if !rejected(err) {
		w.table.failed(err)
		return events
	}
	// One bad event must not keep the others out: write them one by one.
	for i := range events {
		err := w.table.write(ctx, events[i:i+1], 1)
		switch {
		case err == nil:
			w.m.written[sinkTable].Inc()
		case rejected(err):
			w.m.drop(causeRejected, 1)
			w.log.Error().Err(err).Str("reason", events[i].Reason).Msg("audit: PostgreSQL refused an audit event; it is dropped")
		default:
			w.table.failed(err)
			return events[i:]
		}
	}
	return nil
}

// toSpool appends events to the spool, dropping (and counting) what does
// not fit.
func (w *writer) toSpool(events []spooled) {
	n, err := w.spool.append(events)
	if err != nil {
		w.m.drop(causeSpoolError, len(events))
		if !w.spoolFailing {
			w.spoolFailing = true
			w.log.Error().Err(err).Str("spool_dir", w.cfg.SpoolDir).Msg("audit: cannot write the spool; audit events are dropped until it works again")
		}
		return
	}
	w.spoolFailing = false
	w.m.written[sinkSpool].Add(float64(n))
	w.m.drop(causeSpoolFull, len(events)-n)
	w.m.spoolBytes.Set(float64(w.spool.total))
}

// replay writes spooled segments to the table, oldest first, each in one
// transaction, deleting each once committed. It yields to new events when a
// batch of them is waiting, and stops at the first failure.
func (w *writer) replay(ctx context.Context) {
	for !w.spool.empty() && len(w.queue) < w.cfg.BatchSize && w.table.ready(ctx) {
		seg, ok, err := w.spool.oldest()
		if err != nil {
			w.log.Error().Err(err).Msg("audit: sealing a spool segment")
		}
		if !ok {
			return
		}
		events, corrupt, err := w.spool.read(seg)
		if err != nil {
			w.log.Error().Err(err).Str("segment", seg.path).Msg("audit: cannot read a spool segment; leaving it for the next start")
			w.spool.skip(seg)
			w.m.spoolBytes.Set(float64(w.spool.total))
			continue
		}
		w.m.drop(causeSpoolCorrupt, corrupt)
		if len(events) > 0 {
			if rest := w.toTable(ctx, events); len(rest) == len(events) {
				return // the table went away; try again later
			} else if len(rest) > 0 {
				w.toSpool(rest)
			}
		}
		if err := w.spool.remove(seg); err != nil {
			// Replaying it again at the next start writes duplicates, which
			// at-least-once allows; stop replaying it in this process.
			w.log.Error().Err(err).Str("segment", seg.path).Msg("audit: cannot delete a replayed spool segment")
			w.spool.skip(seg)
		}
		w.m.spoolBytes.Set(float64(w.spool.total))
	}
}

// reportDrops logs the drops counted since the last report, at most once
// per dropLogInterval unless force is set.
func (w *writer) reportDrops(force bool) {
	if !force && time.Since(w.lastDropLog) < dropLogInterval {
		return
	}
	var e *zerolog.Event
	for c := range numCauses {
		if n := w.m.unreported[c].Swap(0); n > 0 {
			if e == nil {
				e = w.log.Warn()
			}
			e = e.Int64("dropped_"+c.String(), n)
		}
	}
	if e == nil {
		return
	}
	w.lastDropLog = time.Now()
	e.Msg("audit: events dropped; they were logged but will not reach " + Table)
}
