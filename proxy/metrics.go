package proxy

import (
	"cmp"
	"math"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/pgtenant/pgtenant/proxy/wire"
)

// Metrics. The hot path only adds to atomics and observes two unlabelled
// histograms; everything labelled by tenant is kept in per-tenant atomics and
// turned into series when Prometheus scrapes, where the tenant label is
// bounded (TenantLabels).

// Tenant label values of folded series.
const (
	// TenantAll labels every series when tenant labels are off.
	TenantAll = "_all"
	// TenantOther labels the tenants outside the top N.
	TenantOther = "_other"
)

// waitBuckets are the upper bounds, in seconds, of the pool wait histogram.
var waitBuckets = [...]float64{0.0001, 0.0005, 0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 5, 10, 30}

// latencyBuckets are the upper bounds of the overhead and backend duration
// histograms: the overhead is tens of microseconds.
var latencyBuckets = []float64{0.00001, 0.000025, 0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.05, 0.25, 1, 5}

// tenantStats are one tenant's counters.
type tenantStats struct {
	transactions, queries, waitTimeouts atomic.Uint64
	wait                                histogram
}

// histogram is a fixed-bucket histogram of durations updated with atomics,
// so that tenants' histograms can be added up when their labels are folded.
type histogram struct {
	counts [len(waitBuckets) + 1]atomic.Uint64 // the last is +Inf
	sumNs  atomic.Uint64
}

func (h *histogram) observe(d time.Duration) {
	s := d.Seconds()
	i, _ := slices.BinarySearch(waitBuckets[:], s)
	h.counts[i].Add(1)
	h.sumNs.Add(uint64(max(d, 0)))
}

// metrics holds the server's metric state.
type metrics struct {
	labels int // TenantLabels: -1 all, 0 none, N top N

	tenants sync.Map // org -> *tenantStats

	overhead, backend prometheus.Histogram
	authFailures      *prometheus.CounterVec
}

func newMetrics(labels int) *metrics {
	return &metrics{
		labels: labels,
		overhead: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "pgtenant_query_overhead_seconds",
			Help:    "Time pgtenant adds to a query: from the client's message to its forwarding to PostgreSQL, plus from PostgreSQL's ReadyForQuery to its forwarding to the client.",
			Buckets: latencyBuckets,
		}),
		backend: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "pgtenant_backend_query_duration_seconds",
			Help:    "Time PostgreSQL took for a query, seen by pgtenant: from forwarding the query to receiving its ReadyForQuery.",
			Buckets: latencyBuckets,
		}),
		authFailures: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "pgtenant_auth_failures_total",
			Help: "Failed logins, by reason (bad_signature, expired, missing_org, tenant_suspended, ...).",
		}, []string{"reason"}),
	}
}

// tenant returns org's counters, creating them.
func (m *metrics) tenant(org string) *tenantStats {
	if ts, ok := m.tenants.Load(org); ok {
		return ts.(*tenantStats)
	}
	ts, _ := m.tenants.LoadOrStore(org, &tenantStats{})
	return ts.(*tenantStats)
}

// Collector returns the proxy's metrics, for a registry. The tenant label
// of every per-tenant series follows the TenantLabels option.
func (s *Server) Collector() prometheus.Collector { return serverCollector{s} }

type serverCollector struct{ s *Server }

var (
	descClients       = prometheus.NewDesc("pgtenant_client_connections", "Client connections by state: active (a transaction on a backend), waiting (for a pool connection), idle.", []string{"state"}, nil)
	descBackends      = prometheus.NewDesc("pgtenant_backend_connections", "Backend connections by database and state (active: leased to a client; idle).", []string{"database", "state"}, nil)
	descDialErrors    = prometheus.NewDesc("pgtenant_backend_dial_errors_total", "Failed backend connection attempts.", nil, nil)
	descTransactions  = prometheus.NewDesc("pgtenant_transactions_total", "Transactions started, by tenant.", []string{"tenant"}, nil)
	descQueries       = prometheus.NewDesc("pgtenant_queries_total", "Queries (sync groups: a Query, or extended-protocol messages up to a Sync) answered, by tenant.", []string{"tenant"}, nil)
	descWait          = prometheus.NewDesc("pgtenant_pool_wait_duration_seconds", "Time a transaction waited for a backend connection of its tenant's pool.", []string{"tenant"}, nil)
	descWaitTimeouts  = prometheus.NewDesc("pgtenant_pool_wait_timeouts_total", "Transactions that gave up waiting for a backend connection (53300).", []string{"tenant"}, nil)
	descPoolWaiting   = prometheus.NewDesc("pgtenant_pool_waiting_clients", "Clients waiting for a backend connection, by tenant.", []string{"tenant"}, nil)
	descPoolSize      = prometheus.NewDesc("pgtenant_pool_size", "Largest number of backend connections of the tenant's pools (overrides applied).", []string{"tenant"}, nil)
	descPoolConns     = prometheus.NewDesc("pgtenant_pool_connections", "Backend connections of the tenant's pools, by state.", []string{"tenant", "state"}, nil)
	descTenantSession = prometheus.NewDesc("pgtenant_tenant_sessions", "Client sessions, by tenant.", []string{"tenant"}, nil)
	descCancels       = prometheus.NewDesc("pgtenant_cancel_requests_total", "Client cancel requests: forwarded to the backend running the query, idle (nothing running), rejected (unknown key or wrong secret).", []string{"result"}, nil)
)

func (c serverCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descClients, descBackends, descDialErrors, descTransactions, descQueries,
		descWait, descWaitTimeouts, descPoolWaiting, descPoolSize, descPoolConns, descTenantSession, descCancels} {
		ch <- d
	}
	m := c.s.metrics
	m.overhead.Describe(ch)
	m.backend.Describe(ch)
	m.authFailures.Describe(ch)
}

// tenantRow is one tenant's figures at a scrape.
type tenantRow struct {
	transactions, queries, waitTimeouts uint64
	wait                                [len(waitBuckets) + 1]uint64
	waitSumNs                           uint64
	waiting, size, active, idle         int
	sessions                            int
}

func (r *tenantRow) add(o *tenantRow) {
	r.transactions += o.transactions
	r.queries += o.queries
	r.waitTimeouts += o.waitTimeouts
	for i := range r.wait {
		r.wait[i] += o.wait[i]
	}
	r.waitSumNs += o.waitSumNs
	r.waiting += o.waiting
	r.size += o.size
	r.active += o.active
	r.idle += o.idle
	r.sessions += o.sessions
}

func (c serverCollector) Collect(ch chan<- prometheus.Metric) {
	s, m := c.s, c.s.metrics
	m.overhead.Collect(ch)
	m.backend.Collect(ch)
	m.authFailures.Collect(ch)

	cancels := s.CancelStats()
	ch <- prometheus.MustNewConstMetric(descCancels, prometheus.CounterValue, float64(cancels.Forwarded), "forwarded")
	ch <- prometheus.MustNewConstMetric(descCancels, prometheus.CounterValue, float64(cancels.Idle), "idle")
	ch <- prometheus.MustNewConstMetric(descCancels, prometheus.CounterValue, float64(cancels.Rejected), "rejected")

	active, waiting, idle := s.clientStates()
	ch <- prometheus.MustNewConstMetric(descClients, prometheus.GaugeValue, float64(active), "active")
	ch <- prometheus.MustNewConstMetric(descClients, prometheus.GaugeValue, float64(waiting), "waiting")
	ch <- prometheus.MustNewConstMetric(descClients, prometheus.GaugeValue, float64(idle), "idle")

	rows := map[string]*tenantRow{}
	row := func(org string) *tenantRow {
		r := rows[org]
		if r == nil {
			r = &tenantRow{}
			rows[org] = r
		}
		return r
	}
	m.tenants.Range(func(k, v any) bool {
		ts, r := v.(*tenantStats), row(k.(string))
		r.transactions, r.queries, r.waitTimeouts = ts.transactions.Load(), ts.queries.Load(), ts.waitTimeouts.Load()
		for i := range r.wait {
			r.wait[i] = ts.wait.counts[i].Load()
		}
		r.waitSumNs = ts.wait.sumNs.Load()
		return true
	})
	stat := s.pools.Stat()
	type dbState struct{ active, idle int }
	dbs := map[string]*dbState{}
	for _, p := range stat.Pools {
		r := row(p.Key.Tenant)
		r.waiting += p.Waiting
		r.size += p.Size
		r.active += p.InUse
		r.idle += p.Idle
		d := dbs[p.Key.Database]
		if d == nil {
			d = &dbState{}
			dbs[p.Key.Database] = d
		}
		d.active += p.InUse
		d.idle += p.Idle
	}
	for org, n := range s.SessionsByTenant() {
		row(org).sessions = n
	}
	for db, d := range dbs {
		ch <- prometheus.MustNewConstMetric(descBackends, prometheus.GaugeValue, float64(d.active), db, "active")
		ch <- prometheus.MustNewConstMetric(descBackends, prometheus.GaugeValue, float64(d.idle), db, "idle")
	}
	ch <- prometheus.MustNewConstMetric(descDialErrors, prometheus.CounterValue, float64(stat.DialErrors))

	for label, r := range foldTenants(rows, m.labels) {
		ch <- prometheus.MustNewConstMetric(descTransactions, prometheus.CounterValue, float64(r.transactions), label)
		ch <- prometheus.MustNewConstMetric(descQueries, prometheus.CounterValue, float64(r.queries), label)
		ch <- prometheus.MustNewConstMetric(descWaitTimeouts, prometheus.CounterValue, float64(r.waitTimeouts), label)
		ch <- prometheus.MustNewConstMetric(descPoolWaiting, prometheus.GaugeValue, float64(r.waiting), label)
		ch <- prometheus.MustNewConstMetric(descPoolSize, prometheus.GaugeValue, float64(r.size), label)
		ch <- prometheus.MustNewConstMetric(descPoolConns, prometheus.GaugeValue, float64(r.active), label, "active")
		ch <- prometheus.MustNewConstMetric(descPoolConns, prometheus.GaugeValue, float64(r.idle), label, "idle")
		ch <- prometheus.MustNewConstMetric(descTenantSession, prometheus.GaugeValue, float64(r.sessions), label)
		buckets := make(map[float64]uint64, len(waitBuckets))
		var cum uint64
		for i, le := range waitBuckets {
			cum += r.wait[i]
			buckets[le] = cum
		}
		cum += r.wait[len(waitBuckets)]
		ch <- prometheus.MustNewConstHistogram(descWait, cum, float64(r.waitSumNs)/1e9, buckets, label)
	}
}

// foldTenants bounds the tenant label: with labels -1 every tenant keeps
// its own, with 0 all are one series (TenantAll), with N the N tenants with
// the most transactions keep theirs and the others are added up
// (TenantOther). When a tenant enters the top N, TenantOther's counters drop
// by its figures, which rate() reads as a counter reset.
func foldTenants(rows map[string]*tenantRow, labels int) map[string]*tenantRow {
	if labels < 0 {
		return rows
	}
	out := map[string]*tenantRow{}
	if labels == 0 {
		all := &tenantRow{}
		for _, r := range rows {
			all.add(r)
		}
		out[TenantAll] = all
		return out
	}
	orgs := make([]string, 0, len(rows))
	for org := range rows {
		orgs = append(orgs, org)
	}
	slices.SortFunc(orgs, func(a, b string) int {
		return cmp.Or(cmp.Compare(rows[b].transactions, rows[a].transactions), cmp.Compare(a, b))
	})
	other := &tenantRow{}
	for i, org := range orgs {
		if i < labels {
			out[org] = rows[org]
		} else {
			other.add(rows[org])
		}
	}
	if len(orgs) > labels {
		out[TenantOther] = other
	}
	return out
}

// clientStates counts the client sessions by state.
func (s *Server) clientStates() (active, waiting, idle int) {
	s.mu.Lock()
	sessions := make([]*session, 0, len(s.mu.sessions))
	for sess := range s.mu.sessions {
		sessions = append(sessions, sess)
	}
	s.mu.Unlock()
	for _, sess := range sessions {
		sess.mu.Lock()
		switch {
		case sess.mu.att != nil:
			active++
		case sess.waiting.Load():
			waiting++
		default:
			idle++
		}
		sess.mu.Unlock()
	}
	return active, waiting, idle
}

// observeSince adds the time since start to h, in seconds.
func observeSince(h prometheus.Histogram, start time.Time) {
	h.Observe(math.Max(time.Since(start).Seconds(), 0))
}

// TenantWaitP99 returns, for each tenant that has asked for a backend
// connection, the 99th percentile of its waits in seconds: the upper bound
// of the wait histogram bucket that holds it (the largest bound, 30s, for
// longer waits).
func (s *Server) TenantWaitP99() map[string]float64 {
	out := map[string]float64{}
	s.metrics.tenants.Range(func(k, v any) bool {
		h := &v.(*tenantStats).wait
		var counts [len(waitBuckets) + 1]uint64
		var total uint64
		for i := range counts {
			counts[i] = h.counts[i].Load()
			total += counts[i]
		}
		if total == 0 {
			return true
		}
		rank := (total*99 + 99) / 100 // ceil(0.99 * total)
		var cum uint64
		for i, n := range counts {
			if cum += n; cum >= rank {
				out[k.(string)] = waitBuckets[min(i, len(waitBuckets)-1)]
				break
			}
		}
		return true
	})
	return out
}

// SlowQuerySink receives slow statements (Config.SlowQueries).
type SlowQuerySink interface {
	Offer(database, org, sql string)
}

// noteSQL remembers, for the slow query sink, the statement a message of
// the current sync group runs: a Query's text, a Parse's, or the text of
// the statement a Bind names. The first one of the group is kept.
func (s *session) noteSQL(typ byte, frame []byte) {
	var sql string
	switch typ {
	case 'Q', 'P':
		sql = string(sqlText(typ, frame))
	case 'B':
		name, err := wire.BindStatement(wire.Body(frame))
		if err != nil {
			return
		}
		s.mu.Lock()
		cs := s.lookupStmtLocked(name)
		s.mu.Unlock()
		if cs == nil {
			return
		}
		text, _, err := wire.CString(cs.rest)
		if err != nil {
			return
		}
		sql = text
	default:
		return
	}
	s.mu.Lock()
	if n := len(s.mu.groups); n > 0 && s.mu.groups[n-1].sql == "" {
		s.mu.groups[n-1].sql = sql
	}
	s.mu.Unlock()
}
