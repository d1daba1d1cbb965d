package audit

import (
	"sync/atomic"

	"github.com/prometheus/client_golang/prometheus"
)

// Sinks label pgtenant_audit_events_total.
const (
	sinkTable = "table"
	sinkSpool = "spool"
)

// cause says why an event did not reach the table; causes label
// pgtenant_audit_events_dropped_total.
type cause int

const (
	// causeQueueFull: Record found the in-memory queue full.
	causeQueueFull cause = iota
	// causeSpoolFull: the database was unreachable and the spool had reached
	// Config.SpoolMaxBytes.
	causeSpoolFull
	// causeSpoolError: writing the spool failed (disk full, permissions).
	causeSpoolError
	// causeSpoolCorrupt: a spooled line could not be decoded on replay (a
	// write cut short by a crash).
	causeSpoolCorrupt
	// causeRejected: PostgreSQL refused the event's values; retrying would
	// not help.
	causeRejected
	// causeClosed: Record was called after Close.
	causeClosed
	numCauses
)

var causeNames = [numCauses]string{"queue_full", "spool_full", "spool_error", "spool_corrupt", "rejected", "closed"}

func (c cause) String() string { return causeNames[c] }

// metrics are a Log's collectors. The counters are resolved once so that
// Record does not look labels up.
type metrics struct {
	blocked    map[string]prometheus.Counter // by reason, ReasonOther included
	written    map[string]prometheus.Counter // by sink
	dropped    [numCauses]prometheus.Counter
	spoolBytes prometheus.Gauge

	// unreported counts drops since the writer last logged them, so that
	// drops are logged once per interval rather than once per event.
	unreported [numCauses]atomic.Int64

	collectors []prometheus.Collector
}

func newMetrics(queueLen func() float64) *metrics {
	blocked := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "pgtenant_cross_tenant_blocked_total",
		Help: "Audited attempts, by reason: blocked_statement, forged_context, rls_violation, auth_failed, tenant_refused, other.",
	}, []string{"reason"})
	written := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "pgtenant_audit_events_total",
		Help: "Audit events written, by sink: table (tenancy.audit_events, replays from the spool included) or spool (the on-disk spool used while the control database is unreachable).",
	}, []string{"sink"})
	dropped := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "pgtenant_audit_events_dropped_total",
		Help: "Audit events that will never reach the table, by cause: queue_full, spool_full, spool_error, spool_corrupt, rejected, closed. They were still logged.",
	}, []string{"cause"})
	m := &metrics{
		blocked: map[string]prometheus.Counter{},
		written: map[string]prometheus.Counter{},
		spoolBytes: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "pgtenant_audit_spool_bytes",
			Help: "Size of the audit spool on disk, in bytes.",
		}),
	}
	// Every label value exists from the start, so dashboards and rate()
	// see zeros rather than missing series.
	for _, r := range reasons {
		m.blocked[r] = blocked.WithLabelValues(r)
	}
	for _, s := range []string{sinkTable, sinkSpool} {
		m.written[s] = written.WithLabelValues(s)
	}
	for c := range numCauses {
		m.dropped[c] = dropped.WithLabelValues(c.String())
	}
	m.collectors = []prometheus.Collector{blocked, written, dropped, m.spoolBytes,
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "pgtenant_audit_queue_length",
			Help: "Audit events waiting in memory for the writer.",
		}, queueLen)}
	return m
}

// register registers every collector on reg, or none.
func (m *metrics) register(reg prometheus.Registerer) error {
	for i, c := range m.collectors {
		if err := reg.Register(c); err != nil {
			for _, done := range m.collectors[:i] {
				reg.Unregister(done)
			}
			return err
		}
	}
	return nil
}

// countBlocked counts an audited attempt under its bounded reason label.
func (m *metrics) countBlocked(reason string) {
	c, ok := m.blocked[reason]
	if !ok {
		c = m.blocked[ReasonOther]
	}
	c.Inc()
}

// drop counts n events lost for cause.
func (m *metrics) drop(c cause, n int) {
	if n <= 0 {
		return
	}
	m.dropped[c].Add(float64(n))
	m.unreported[c].Add(int64(n))
}
