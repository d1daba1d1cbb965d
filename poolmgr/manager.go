// Package poolmgr keeps per-tenant pools of backend connections under one
// global cap, with fair waiting across tenants. It knows nothing of
// PostgreSQL: it pools any Conn a Dialer returns.
//
// Every transaction the proxy runs does one Acquire and one Release, so both
// take a single manager-wide mutex once, do O(1) work and allocate only the
// Lease. Dialing and closing connections happen outside the lock.
package poolmgr

import (
	"context"
	"errors"
	"strings"
	"sync"
	"time"
)

// Key names a pool: one per backend database and tenant.
type Key struct{ Database, Tenant string }

// Conn is what a pool holds. The pool calls Close exactly once, outside its
// lock; its error is ignored, as nothing can be done about a connection that
// is being discarded.
type Conn interface{ Close() error }

// Dialer opens a backend connection for key. It must honour ctx and should
// bound the connect time itself: Acquire passes the caller's ctx, and
// maintenance dials a context that Close cancels.
type Dialer[C Conn] func(ctx context.Context, key Key) (C, error)

// DefaultMaintenanceInterval is how often the maintenance loop runs.
const DefaultMaintenanceInterval = time.Second

// Option changes a Manager's defaults; for tests mostly.
type Option func(*options)

type options struct {
	now      func() time.Time // nil: the runtime's monotonic clock
	interval time.Duration
}

// WithClock makes the Manager read the time from now instead of the
// runtime's monotonic clock. Connection ages, idle times, pool activity and
// wait durations use it; wait timeouts and the maintenance ticker use real
// timers.
func WithClock(now func() time.Time) Option { return func(o *options) { o.now = now } }

// WithMaintenanceInterval sets how often the maintenance loop closes expired
// connections, tops up MinIdle and reaps inactive pools.
func WithMaintenanceInterval(d time.Duration) Option {
	return func(o *options) {
		if d > 0 {
			o.interval = d
		}
	}
}

// Manager owns the pools of all keys and every connection in them.
//
// Capacity. A pool opens at most Size connections, all pools together at
// most MaxBackendConns. Open connections and dials in progress both count.
// At the global cap, an Acquire that could dial closes the connection idle
// longest of the pool with the most idle connections, if another pool has one.
//
// Fairness. Acquire calls that cannot be served wait in their pool's FIFO
// queue. A pool whose waiters are blocked by the global cap only (it is
// below its Size) joins a round-robin ring. Each global slot that frees up
// (Destroy, expiry, a failed dial, a closed pool) goes to the first waiter
// of the pool at the head of the ring, which then moves to the tail: a
// tenant with 100 waiters gets one slot per turn, like a tenant with one.
// A released connection goes to its own pool's first waiter, without a
// reconnect, unless other pools are in the ring and this pool holds more
// than its fair share (MaxBackendConns divided by the number of pools with
// leases, waiters or dials, rounded up). In that case, and when the pool has
// no waiter while others are in the ring, the connection is closed rather
// than kept, and its slot goes round the ring. Tenants thus converge on
// equal shares of a contended cap, and the reconnects stop once they hold
// them.
//
// Ownership. Conns are closed by the Manager: on Destroy, expiry, reaping,
// ClosePool and Close, or on Release once their pool is closed. Close is
// idempotent and stops the maintenance goroutine; leases still out are closed
// when they end. Closing happens outside the lock, after a conn's capacity
// has been given back, so the backend may briefly see a closing connection
// and its replacement at once.
type Manager[C Conn] struct {
	dial     Dialer[C]
	clock    func() mono
	interval time.Duration
	// base and maxConns change only under mu (Reconfigure).
	base Settings
	// databaseModes is Config.DatabaseModes; read-only.
	databaseModes map[string]string
	maxConns      int
	reapAfter     time.Duration

	// ctx bounds maintenance dials; Close cancels it.
	ctx       context.Context
	cancel    context.CancelFunc
	stop      chan struct{} // closed by Close: the maintenance loop returns
	loopDone  chan struct{} // closed when it has
	topUps    sync.WaitGroup
	closeOnce sync.Once

	mu struct {
		sync.Mutex
		closed    bool
		seen      mono // the latest clock reading, see nowLocked
		pools     map[Key]*pool[C]
		overrides map[string]Override
		// Gauges over all pools, closed ones included.
		total, idle, inUse, dialing int
		activePools                 int // pools with leases, waiters or dials
		ringHead, ringTail          *pool[C]
		ringLen                     int
		retired                     Counters // of closed and reaped pools
	}
}

// New returns a Manager for cfg and starts its maintenance goroutine; the
// caller must Close it. New applies cfg.SetDefaults and panics if
// cfg.Validate then fails: configuration is validated at start-up, before
// New is called.
func New[C Conn](cfg Config, dial Dialer[C], opts ...Option) *Manager[C] {
	cfg.SetDefaults()
	if err := cfg.Validate(); err != nil {
		panic("poolmgr.New: " + err.Error())
	}
	o := options{interval: DefaultMaintenanceInterval}
	for _, opt := range opts {
		opt(&o)
	}
	m := &Manager[C]{
		dial:          dial,
		clock:         newClock(o.now),
		interval:      o.interval,
		base:          cfg.Settings,
		databaseModes: lowerKeys(cfg.DatabaseModes),
		maxConns:      cfg.MaxBackendConns,
		reapAfter:     cfg.ReapAfter,
		stop:          make(chan struct{}),
		loopDone:      make(chan struct{}),
	}
	m.ctx, m.cancel = context.WithCancel(context.Background())
	m.mu.pools = make(map[Key]*pool[C])
	m.mu.overrides = cloneOverrides(cfg.Tenants)
	go m.maintenanceLoop()
	return m
}

// Acquire leases a connection of key's pool, creating the pool on first use.
// It takes the most recently released idle connection if there is one
// (closing those past MaxLifetime), dials one if capacity allows, and
// otherwise waits up to the pool's WaitTimeout or until ctx ends. Dialing
// uses ctx, not WaitTimeout: the Dialer bounds its own connect time.
// Errors are *pgerr.Error: 53300 (ReasonWaitTimeout) when the wait times out
// or ctx's deadline passes, 57014 (ReasonWaitCanceled) when ctx is canceled,
// 08000 (ReasonConnectFailed) when dialing fails, and FATAL 57P01 when the
// pool or the Manager is closed.
func (m *Manager[C]) Acquire(ctx context.Context, key Key) (*Lease[C], error) {
	m.mu.Lock()
	if m.mu.closed {
		m.mu.Unlock()
		return nil, errShutdown()
	}
	p := m.mu.pools[key]
	if p == nil {
		p = m.newPoolLocked(key)
	}
	p.counters.Acquires++

	// The clock is not read here, to keep the path short: the lifetime of
	// idle conns is checked against the latest reading, taken by the last
	// Release or maintenance pass. The maintenance loop closes whatever this
	// misses.
	var closing []*conn[C]
	for len(p.idle) > 0 {
		c := p.popIdle()
		m.mu.idle--
		if c.expired(m.mu.seen, p.s.MaxLifetime) {
			p.counters.ClosedLifetime++
			closing = m.dropLocked(p, c, closing)
			continue
		}
		m.useLocked(p)
		if closing != nil {
			closing = m.grantLocked(m.nowLocked(), closing)
		}
		m.mu.Unlock()
		closeConns(closing)
		return &Lease[C]{c: c}, nil
	}

	// Dial now only if no pool is queued for global capacity: otherwise this
	// call would jump the round-robin queue.
	if p.total < p.s.Size && m.mu.ringLen == 0 {
		ok := m.mu.total < m.maxConns
		if !ok {
			closing, ok = m.stealLocked(p, closing)
		}
		if ok {
			m.reserveLocked(p)
			m.mu.Unlock()
			closeConns(closing)
			return m.dialLease(ctx, p)
		}
	}

	now := m.nowLocked()
	w := &waiter[C]{start: now, ch: make(chan grant[C], 1)}
	p.waiters.push(w)
	p.counters.WaitCount++
	m.markActiveLocked(p)
	m.updateRingLocked(p)
	closing = m.grantLocked(now, closing)
	timeout := p.s.WaitTimeout
	m.mu.Unlock()
	closeConns(closing)
	return m.wait(ctx, p, w, timeout)
}

// wait blocks until w is granted something, timeout passes or ctx ends.
func (m *Manager[C]) wait(ctx context.Context, p *pool[C], w *waiter[C], timeout time.Duration) (*Lease[C], error) {
	t := time.NewTimer(timeout)
	defer t.Stop()
	select {
	case g := <-w.ch:
		return m.take(ctx, p, g)
	case <-t.C:
		ls, _ := m.giveUp(p, w)
		return nil, errWaitTimeout(p.key, timeout, ls, nil)
	case <-ctx.Done():
		ls, waited := m.giveUp(p, w)
		return nil, errWaitEnded(ctx, p.key, waited, ls)
	}
}

// take turns a grant into Acquire's result.
func (m *Manager[C]) take(ctx context.Context, p *pool[C], g grant[C]) (*Lease[C], error) {
	switch {
	case g.err != nil:
		return nil, g.err
	case g.c != nil:
		return &Lease[C]{c: g.c}, nil
	default:
		return m.dialLease(ctx, p)
	}
}

// giveUp takes w out of p's queue after a timeout or cancellation. If w was
// granted something meanwhile, the grant is in w.ch: it is passed on as if
// released, so no connection or reserved slot leaks.
func (m *Manager[C]) giveUp(p *pool[C], w *waiter[C]) (limitState, time.Duration) {
	m.mu.Lock()
	now := m.nowLocked()
	waited := now.sub(w.start)
	ls := limitState{size: p.s.Size, poolTotal: p.total, max: m.maxConns}
	p.counters.WaitTimeouts++
	if w.queued {
		p.waiters.remove(w)
		ls.waiting = p.waiters.n
		p.counters.WaitDuration += waited
		m.markActiveLocked(p)
		m.updateRingLocked(p)
		m.mu.Unlock()
		return ls, waited
	}
	ls.waiting = p.waiters.n
	g := <-w.ch // sent under the lock when w was dequeued
	var closing []*conn[C]
	switch {
	case g.c != nil:
		closing = m.putLocked(g.c, false, now, closing)
	case g.err == nil:
		m.unreserveLocked(p)
		closing = m.grantLocked(now, closing)
	}
	m.mu.Unlock()
	closeConns(closing)
	return ls, waited
}

// dialLease dials into a slot reserved for p and leases the result.
func (m *Manager[C]) dialLease(ctx context.Context, p *pool[C]) (*Lease[C], error) {
	c, err := m.dial(ctx, p.key)
	m.mu.Lock()
	now := m.nowLocked()
	pc, closing := m.finishDialLocked(p, c, err, now)
	if err != nil {
		m.mu.Unlock()
		closeConns(closing)
		if errors.Is(ctx.Err(), context.Canceled) {
			return nil, errWaitEnded(ctx, p.key, 0, limitState{})
		}
		return nil, errConnect(p.key, err)
	}
	if m.mu.closed || p.closed {
		closing = m.dropLocked(p, pc, closing)
		closing = m.grantLocked(now, closing)
		m.markActiveLocked(p)
		closed := m.mu.closed
		m.mu.Unlock()
		closeConns(closing)
		if closed {
			return nil, errShutdown()
		}
		return nil, errPoolClosed(p.key)
	}
	m.useLocked(p)
	m.mu.Unlock()
	return &Lease[C]{c: pc}, nil
}

// SetOverrides replaces the per-tenant overrides and applies them to
// existing pools at once. Invalid fields (a Size below 1, a non-positive
// duration) are ignored and inherit from Config; MinIdle is clamped to
// [0, Size]. When a Size shrinks, idle connections beyond it are closed now
// and leased ones on release; when it grows, waiters are served.
func (m *Manager[C]) SetOverrides(tenants map[string]Override) {
	o := cloneOverrides(tenants)
	m.mu.Lock()
	if m.mu.closed {
		m.mu.Unlock()
		return
	}
	m.mu.overrides = o
	var closing []*conn[C]
	for _, p := range m.mu.pools {
		p.s = resolve(m.base, o[strings.ToLower(p.key.Tenant)])
		for p.total > p.s.Size && len(p.idle) > 0 {
			c := p.popOldestIdle()
			m.mu.idle--
			closing = m.dropLocked(p, c, closing)
		}
		m.updateRingLocked(p)
	}
	closing = m.grantLocked(m.nowLocked(), closing)
	m.mu.Unlock()
	closeConns(closing)
}

// Mode returns the pooling mode for key: the tenant's override, else the
// database's mode, else the configured default.
func (m *Manager[C]) Mode(key Key) string {
	m.mu.Lock()
	o := m.mu.overrides[strings.ToLower(key.Tenant)]
	base := m.base.Mode
	m.mu.Unlock()
	if o.Mode != nil && (*o.Mode == ModeTransaction || *o.Mode == ModeSession) {
		return *o.Mode
	}
	if mode, ok := m.databaseModes[strings.ToLower(key.Database)]; ok {
		return mode
	}
	return base
}

// Reconfigure applies cfg's pool settings, global cap and per-tenant
// overrides to the existing pools and the future ones, as SetOverrides
// does. The database modes, ReapAfter and the maintenance interval keep
// their values from New. cfg must be valid.
func (m *Manager[C]) Reconfigure(cfg Config) {
	cfg.SetDefaults()
	m.mu.Lock()
	m.base, m.maxConns = cfg.Settings, cfg.MaxBackendConns
	m.mu.Unlock()
	m.SetOverrides(cfg.Tenants)
}

// ClosePool closes key's pool, for a tenant that is suspended: idle
// connections now, leased ones when released; its waiters fail with a FATAL
// 57P01 (ReasonPoolClosed). A later Acquire for key starts a new pool.
func (m *Manager[C]) ClosePool(key Key) {
	m.mu.Lock()
	p := m.mu.pools[key]
	if p == nil {
		m.mu.Unlock()
		return
	}
	closing := m.closePoolLocked(p, nil)
	closing = m.grantLocked(m.nowLocked(), closing)
	m.mu.Unlock()
	closeConns(closing)
}

// Close closes every pool as ClosePool does, makes later Acquire calls fail
// with FATAL 57P01 (ReasonManagerClosing), and stops the maintenance
// goroutine, waiting for it and its dials. Leased connections are closed
// when released. Close is idempotent; every call returns once the Manager
// is stopped.
func (m *Manager[C]) Close() {
	m.closeOnce.Do(func() {
		m.mu.Lock()
		m.mu.closed = true
		var closing []*conn[C]
		for _, p := range m.mu.pools {
			closing = m.closePoolLocked(p, closing)
		}
		m.mu.Unlock()
		m.cancel()
		close(m.stop)
		closeConns(closing)
	})
	<-m.loopDone
	m.topUps.Wait()
}

func (m *Manager[C]) newPoolLocked(key Key) *pool[C] {
	p := &pool[C]{m: m, key: key, s: resolve(m.base, m.mu.overrides[strings.ToLower(key.Tenant)]), lastActive: m.mu.seen}
	m.mu.pools[key] = p
	return p
}

// putLocked takes back a leased conn: released (delivered to a waiter or
// kept idle) or destroyed.
func (m *Manager[C]) putLocked(c *conn[C], destroy bool, now mono, closing []*conn[C]) []*conn[C] {
	p := c.p
	p.inUse--
	m.mu.inUse--
	if destroy {
		closing = m.dropLocked(p, c, closing)
		closing = m.grantLocked(now, closing)
	} else {
		closing = m.deliverLocked(p, c, now, closing)
	}
	m.markActiveLocked(p)
	return closing
}

// deliverLocked finds a place for c, an open conn of p that is neither idle
// nor leased: p's first waiter, the idle list, or closing (see Manager for
// when a conn is closed for fairness).
func (m *Manager[C]) deliverLocked(p *pool[C], c *conn[C], now mono, closing []*conn[C]) []*conn[C] {
	othersBlocked := m.othersBlockedLocked(p)
	switch {
	case m.mu.closed || p.closed || p.total > p.s.Size:
	case c.expired(now, p.s.MaxLifetime):
		p.counters.ClosedLifetime++
	case p.waiters.n > 0 && !(othersBlocked && p.total > m.fairShareLocked()):
		w := p.waiters.pop()
		p.counters.WaitDuration += now.since(w.start)
		m.useLocked(p)
		w.ch <- grant[C]{c: c}
		m.updateRingLocked(p)
		return closing
	case othersBlocked:
		// Kept idle, or by a pool above its share, c would hold a slot
		// another tenant is waiting for.
		p.counters.ClosedForCap++
		closing = m.dropLocked(p, c, closing)
		if m.mu.ringHead == p { // p yields its turn too
			m.ringRemoveLocked(p)
			m.ringPushLocked(p)
		}
		return m.grantLocked(now, closing)
	default:
		c.idleSince = now
		p.idle = append(p.idle, c)
		m.mu.idle++
		return closing
	}
	closing = m.dropLocked(p, c, closing)
	return m.grantLocked(now, closing)
}

// grantLocked hands free global capacity to the pools in the ring, one
// waiter per pool per turn, taking other pools' idle conns at the cap.
// Granted waiters dial themselves, outside the lock.
func (m *Manager[C]) grantLocked(now mono, closing []*conn[C]) []*conn[C] {
	for m.mu.ringHead != nil {
		p := m.mu.ringHead
		if m.mu.total >= m.maxConns {
			var ok bool
			if closing, ok = m.stealLocked(p, closing); !ok {
				break
			}
		}
		w := p.waiters.pop()
		p.counters.WaitDuration += now.since(w.start)
		m.reserveLocked(p) // takes p out of the ring if it is no longer eligible
		w.ch <- grant[C]{dial: true}
		if p.inRing { // next turn at the tail
			m.ringRemoveLocked(p)
			m.ringPushLocked(p)
		}
	}
	return closing
}

// stealLocked closes, for p, the conn idle longest in the pool with the
// most idle conns (MinIdle gives way to the global cap). It reports false
// if no other pool has an idle conn.
func (m *Manager[C]) stealLocked(p *pool[C], closing []*conn[C]) ([]*conn[C], bool) {
	if m.mu.idle == 0 {
		return closing, false
	}
	var victim *pool[C]
	for _, q := range m.mu.pools {
		if q == p || len(q.idle) == 0 {
			continue
		}
		if victim == nil || len(q.idle) > len(victim.idle) ||
			len(q.idle) == len(victim.idle) && q.idle[0].idleSince < victim.idle[0].idleSince {
			victim = q
		}
	}
	if victim == nil {
		return closing, false
	}
	c := victim.popOldestIdle()
	m.mu.idle--
	victim.counters.ClosedForCap++
	return m.dropLocked(victim, c, closing), true
}

// closePoolLocked closes p's idle conns, fails its waiters and removes it.
func (m *Manager[C]) closePoolLocked(p *pool[C], closing []*conn[C]) []*conn[C] {
	p.closed = true
	delete(m.mu.pools, p.key)
	for len(p.idle) > 0 {
		c := p.popIdle()
		m.mu.idle--
		closing = m.dropLocked(p, c, closing)
	}
	for p.waiters.n > 0 {
		w := p.waiters.pop()
		var err error = errPoolClosed(p.key)
		if m.mu.closed {
			err = errShutdown()
		}
		w.ch <- grant[C]{err: err}
	}
	m.updateRingLocked(p)
	m.markActiveLocked(p)
	m.mu.retired.add(p.counters)
	p.counters = Counters{}
	return closing
}

// dropLocked gives up c's capacity; the caller closes it after unlocking
// and grants the capacity.
func (m *Manager[C]) dropLocked(p *pool[C], c *conn[C], closing []*conn[C]) []*conn[C] {
	p.total--
	m.mu.total--
	m.updateRingLocked(p)
	return append(closing, c)
}

func (m *Manager[C]) useLocked(p *pool[C]) {
	p.inUse++
	m.mu.inUse++
	m.markActiveLocked(p)
}

// reserveLocked takes a slot for a dial that is about to start.
func (m *Manager[C]) reserveLocked(p *pool[C]) {
	p.total++
	p.dialing++
	m.mu.total++
	m.mu.dialing++
	m.updateRingLocked(p)
	m.markActiveLocked(p)
}

// unreserveLocked gives back a slot whose dial failed or was abandoned.
func (m *Manager[C]) unreserveLocked(p *pool[C]) {
	m.endDialLocked(p)
	p.total--
	m.mu.total--
	m.updateRingLocked(p)
	m.markActiveLocked(p)
}

// endDialLocked ends a dial: its slot is now an open conn, or free.
func (m *Manager[C]) endDialLocked(p *pool[C]) {
	p.dialing--
	m.mu.dialing--
}

// finishDialLocked books the outcome of a dial into a slot reserved for p.
// On error it frees the slot and grants it on; on success it returns the
// new conn, counted in p.total but neither idle nor leased.
func (m *Manager[C]) finishDialLocked(p *pool[C], c C, err error, now mono) (*conn[C], []*conn[C]) {
	p.counters.Dials++
	if err != nil {
		p.counters.DialErrors++
		m.unreserveLocked(p)
		return nil, m.grantLocked(now, nil)
	}
	m.endDialLocked(p)
	return newConn(c, p, now), nil
}

// markActiveLocked keeps m.mu.activePools, the divisor of the fair share,
// in step with p: a pool is active while it has leases, waiters or dials
// of its own (MinIdle top-ups do not count). Every change that can end
// activity reads the clock first, so lastActive is current.
func (m *Manager[C]) markActiveLocked(p *pool[C]) {
	a := p.inUse+p.waiters.n+p.dialing-p.topUp > 0
	if a != p.active {
		p.active = a
		if a {
			m.mu.activePools++
		} else {
			m.mu.activePools--
			p.lastActive = m.mu.seen
		}
	}
}

// fairShareLocked is how many conns a pool may keep while others are
// blocked on the global cap.
func (m *Manager[C]) fairShareLocked() int {
	n := max(m.mu.activePools, 1)
	return (m.maxConns + n - 1) / n
}

// othersBlockedLocked reports whether a pool other than p is waiting for
// global capacity.
func (m *Manager[C]) othersBlockedLocked(p *pool[C]) bool {
	return m.mu.ringLen > 1 || m.mu.ringLen == 1 && m.mu.ringHead != p
}

// updateRingLocked puts p in the ring, at the tail, or takes it out, after
// a change to its waiters, total, Size or closed state.
func (m *Manager[C]) updateRingLocked(p *pool[C]) {
	if e := p.eligible(); e != p.inRing {
		if e {
			m.ringPushLocked(p)
		} else {
			m.ringRemoveLocked(p)
		}
	}
}

func (m *Manager[C]) ringPushLocked(p *pool[C]) {
	p.inRing = true
	p.ringPrev, p.ringNext = m.mu.ringTail, nil
	if m.mu.ringTail != nil {
		m.mu.ringTail.ringNext = p
	} else {
		m.mu.ringHead = p
	}
	m.mu.ringTail = p
	m.mu.ringLen++
}

func (m *Manager[C]) ringRemoveLocked(p *pool[C]) {
	if p.ringPrev != nil {
		p.ringPrev.ringNext = p.ringNext
	} else {
		m.mu.ringHead = p.ringNext
	}
	if p.ringNext != nil {
		p.ringNext.ringPrev = p.ringPrev
	} else {
		m.mu.ringTail = p.ringPrev
	}
	p.ringPrev, p.ringNext, p.inRing = nil, nil, false
	m.mu.ringLen--
}

func closeConns[C Conn](cs []*conn[C]) {
	for _, c := range cs {
		_ = c.c.Close()
	}
}

// cloneOverrides copies overrides with their keys in lower case: the
// configuration loader folds map keys, so tenants are matched regardless
// of case.
func cloneOverrides(in map[string]Override) map[string]Override {
	out := make(map[string]Override, len(in))
	for t, o := range in {
		out[strings.ToLower(t)] = Override{
			Size:        clonePtr(o.Size),
			MinIdle:     clonePtr(o.MinIdle),
			MaxLifetime: clonePtr(o.MaxLifetime),
			IdleTimeout: clonePtr(o.IdleTimeout),
			WaitTimeout: clonePtr(o.WaitTimeout),
			Mode:        clonePtr(o.Mode),
		}
	}
	return out
}

func clonePtr[T any](p *T) *T {
	if p == nil {
		return nil
	}
	v := *p
	return &v
}

func lowerKeys(in map[string]string) map[string]string {
	out := make(map[string]string, len(in))
	for k, v := range in {
		out[strings.ToLower(k)] = v
	}
	return out
}
