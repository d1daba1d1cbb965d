package poolmgr

import (
	"math/rand/v2"
	"time"
)

// pool is the connections of one Key. All of its fields are guarded by the
// manager's mu; "total" counts open connections plus reserved dial slots.
type pool[C Conn] struct {
	m   *Manager[C]
	key Key
	s   Settings

	idle    []*conn[C] // LIFO: idle[len-1] was released last, idle[0] has been idle longest
	total   int        // open + dialing
	inUse   int        // leased, or handed to a waiter that has not picked it up yet
	dialing int        // reserved slots whose dial has not finished
	topUp   int        // of dialing, those dialed by maintenance for MinIdle

	waiters waitQueue[C]

	closed     bool // ClosePool, reaping or Close: no longer in m.mu.pools
	active     bool // counted in m.mu.activePools
	lastActive mono // when it last stopped being active, for reaping

	// Round-robin ring of pools whose waiters are blocked on the global cap
	// only (waiters > 0, total < Size). See Manager.grantLocked.
	inRing             bool
	ringPrev, ringNext *pool[C]

	counters Counters
}

// conn is one backend connection with its bookkeeping.
type conn[C Conn] struct {
	c         C
	p         *pool[C]
	created   mono
	idleSince mono
	jitter    float64 // fraction of MaxLifetime cut from this conn's life
}

func newConn[C Conn](c C, p *pool[C], now mono) *conn[C] {
	return &conn[C]{c: c, p: p, created: now, jitter: rand.Float64() * lifetimeJitter}
}

// expired reports whether c has outlived lifetime (shortened by its jitter).
// The lifetime is looked up on each check, so a changed MaxLifetime applies
// to open connections too.
func (c *conn[C]) expired(now mono, lifetime time.Duration) bool {
	return now.sub(c.created) >= lifetime-time.Duration(float64(lifetime)*c.jitter)
}

// eligible reports whether p belongs in the ring: it has waiters and room
// under its own Size, so only global capacity keeps them waiting.
func (p *pool[C]) eligible() bool {
	return !p.closed && p.waiters.n > 0 && p.total < p.s.Size
}

// popIdle removes and returns the most recently released idle conn.
func (p *pool[C]) popIdle() *conn[C] {
	n := len(p.idle) - 1
	c := p.idle[n]
	p.idle[n] = nil
	p.idle = p.idle[:n]
	return c
}

// popOldestIdle removes and returns the conn idle longest.
func (p *pool[C]) popOldestIdle() *conn[C] {
	c := p.idle[0]
	n := copy(p.idle, p.idle[1:])
	p.idle[n] = nil
	p.idle = p.idle[:n]
	return c
}

// grant is what a waiter is woken with: a live conn, permission to dial
// (a slot already reserved for it), or an error.
type grant[C Conn] struct {
	c    *conn[C]
	dial bool
	err  error
}

// waiter is one Acquire waiting in a pool's FIFO queue. ch has room for the
// one grant it ever receives, so granting never blocks under the lock.
type waiter[C Conn] struct {
	prev, next *waiter[C]
	queued     bool
	start      mono
	ch         chan grant[C]
}

// waitQueue is a FIFO of waiters that can also drop one from the middle
// when it gives up.
type waitQueue[C Conn] struct {
	head, tail *waiter[C]
	n          int
}

func (q *waitQueue[C]) push(w *waiter[C]) {
	w.queued = true
	w.prev, w.next = q.tail, nil
	if q.tail != nil {
		q.tail.next = w
	} else {
		q.head = w
	}
	q.tail = w
	q.n++
}

func (q *waitQueue[C]) remove(w *waiter[C]) {
	if w.prev != nil {
		w.prev.next = w.next
	} else {
		q.head = w.next
	}
	if w.next != nil {
		w.next.prev = w.prev
	} else {
		q.tail = w.prev
	}
	w.prev, w.next, w.queued = nil, nil, false
	q.n--
}

func (q *waitQueue[C]) pop() *waiter[C] {
	w := q.head
	q.remove(w)
	return w
}
