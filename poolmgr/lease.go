package poolmgr

// Lease is one Acquire's hold on a backend connection. The holder must end
// it with exactly one call of Release or Destroy; further calls of either are
// no-ops. A Lease is not for concurrent use, apart from those calls being
// safe to race. After it ends, the connection belongs to the pool again and
// the holder must not use it.
type Lease[C Conn] struct {
	c    *conn[C]
	done bool // guarded by the Manager's mu
}

// Conn returns the leased connection. It is valid until Release or Destroy.
func (l *Lease[C]) Conn() C { return l.c.c }

// Key returns the pool the connection belongs to.
func (l *Lease[C]) Key() Key { return l.c.p.key }

// Release returns a clean connection to its pool: to the pool's first
// waiter, or idle. It closes the connection instead when the pool or the
// Manager is closed, when the connection is past MaxLifetime or the pool is
// above its (lowered) Size, and when other tenants are waiting for global
// capacity that this connection would otherwise keep idle (see Manager).
func (l *Lease[C]) Release() { l.end(false) }

// Destroy closes the connection, for one that is broken or in an unknown
// state, and frees its capacity for waiters.
func (l *Lease[C]) Destroy() { l.end(true) }

func (l *Lease[C]) end(destroy bool) {
	if l == nil || l.c == nil {
		return
	}
	m := l.c.p.m
	now := m.clock() // outside the lock: it is the costliest step
	m.mu.Lock()
	if l.done {
		m.mu.Unlock()
		return
	}
	l.done = true
	closing := m.putLocked(l.c, destroy, m.observeLocked(now), nil)
	m.mu.Unlock()
	closeConns(closing)
}
