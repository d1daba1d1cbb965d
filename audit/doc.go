// Package audit records the attempts pgtenant refuses — blocked statements,
// forged tenant contexts, row-level security violations, failed logins and
// refused tenants — so that security auditors can read them later.
//
// A Log sends every event three ways:
//
//   - to the structured log, at warn level, as soon as Record is called;
//   - to the metric pgtenant_cross_tenant_blocked_total{reason};
//   - to the table tenancy.audit_events in the control database, in batches,
//     from one writer goroutine.
//
// Record never waits for the database or the disk: it hands the event to a
// bounded in-memory queue and returns. A full queue drops the event from the
// table path (it has still been logged and counted) and counts it in
// pgtenant_audit_events_dropped_total{cause="queue_full"}.
//
// When the control database cannot be reached, the writer appends each batch
// to a spool: JSON-lines segment files in Config.SpoolDir, one fsync per
// batch, bounded by Config.SpoolMaxBytes in total. Events that do not fit are
// dropped and counted (cause "spool_full"). Once the database answers again
// the writer replays the segments oldest first, each in one transaction, and
// deletes a segment once it is committed. The spool outlives the process: New
// picks up the segments a previous run left behind.
//
// Delivery to the table is at least once. A segment whose transaction
// committed but that could not be deleted before the process died is replayed
// again on the next start, so the table may hold an event twice; each copy
// has its own id. Nothing is lost while the database is unavailable unless
// the queue or the spool overflows, and every such loss is counted.
package audit
