package poolmgr

import (
	"cmp"
	"slices"
	"time"
)

// Counters are cumulative since a pool (or, in Stat, the Manager) was
// created. They only grow, so they map onto Prometheus counters.
type Counters struct {
	// Acquires is the number of Acquire calls.
	Acquires int64
	// WaitCount is the number of Acquire calls that had to wait.
	WaitCount int64
	// WaitDuration is the total time those calls waited.
	WaitDuration time.Duration
	// WaitTimeouts is the number of waits that ended without a connection
	// (timeout or cancellation).
	WaitTimeouts int64
	// Dials and DialErrors count calls of the Dialer and their failures.
	Dials, DialErrors int64
	// ClosedLifetime counts connections closed for MaxLifetime.
	ClosedLifetime int64
	// ClosedIdle counts connections closed for IdleTimeout.
	ClosedIdle int64
	// ClosedForCap counts connections closed to free global capacity for
	// another tenant (an idle conn taken at the cap, or a released conn not
	// kept idle because other tenants were waiting).
	ClosedForCap int64
}

func (c *Counters) add(o Counters) {
	c.Acquires += o.Acquires
	c.WaitCount += o.WaitCount
	c.WaitDuration += o.WaitDuration
	c.WaitTimeouts += o.WaitTimeouts
	c.Dials += o.Dials
	c.DialErrors += o.DialErrors
	c.ClosedLifetime += o.ClosedLifetime
	c.ClosedIdle += o.ClosedIdle
	c.ClosedForCap += o.ClosedForCap
}

// PoolStat is a snapshot of one pool.
type PoolStat struct {
	Key     Key
	Size    int // effective Size, overrides applied
	MinIdle int // effective MinIdle
	Total   int // open connections plus dials in progress
	Idle    int
	InUse   int
	Dialing int
	Waiting int
	Counters
}

// Stat is a snapshot of a Manager, taken under its lock.
type Stat struct {
	MaxBackendConns int
	// Total, Idle, InUse and Dialing sum the gauges of all pools, including
	// closed pools whose leases are still out; Waiting sums the open pools.
	Total, Idle, InUse, Dialing, Waiting int
	// Counters sum all pools, including closed and reaped ones up to their
	// closing.
	Counters
	// Pools lists the open pools, sorted by database then tenant.
	Pools []PoolStat
}

// Stat returns a snapshot of all pools. It allocates; call it from a metrics
// collector, not per transaction.
func (m *Manager[C]) Stat() Stat {
	m.mu.Lock()
	s := Stat{
		MaxBackendConns: m.maxConns,
		Total:           m.mu.total,
		Idle:            m.mu.idle,
		InUse:           m.mu.inUse,
		Dialing:         m.mu.dialing,
		Counters:        m.mu.retired,
		Pools:           make([]PoolStat, 0, len(m.mu.pools)),
	}
	for _, p := range m.mu.pools {
		s.Waiting += p.waiters.n
		s.Counters.add(p.counters)
		s.Pools = append(s.Pools, PoolStat{
			Key:      p.key,
			Size:     p.s.Size,
			MinIdle:  p.s.MinIdle,
			Total:    p.total,
			Idle:     len(p.idle),
			InUse:    p.inUse,
			Dialing:  p.dialing,
			Waiting:  p.waiters.n,
			Counters: p.counters,
		})
	}
	m.mu.Unlock()
	slices.SortFunc(s.Pools, func(a, b PoolStat) int {
		return cmp.Or(cmp.Compare(a.Key.Database, b.Key.Database), cmp.Compare(a.Key.Tenant, b.Key.Tenant))
	})
	return s
}
