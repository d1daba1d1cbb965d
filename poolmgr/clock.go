package poolmgr

import "time"

// mono is a point on a Manager's clock: the time since the Manager was
// created. Reading it costs one monotonic clock read, where time.Now
// also reads the wall clock, and it is half the size of a time.Time.
type mono time.Duration

func (t mono) sub(u mono) time.Duration { return time.Duration(t - u) }

// since is t.sub(u) but never negative: Release reads the clock before it
// takes the lock, so its reading may precede a waiter's start.
func (t mono) since(u mono) time.Duration { return max(t.sub(u), 0) }

// newClock returns a Manager's clock, starting now: monotonic runtime time,
// or now's readings when a test supplies them.
func newClock(now func() time.Time) func() mono {
	if now == nil {
		epoch := time.Now()
		return func() mono { return mono(time.Since(epoch)) }
	}
	epoch := now()
	return func() mono { return mono(now().Sub(epoch)) }
}

// nowLocked reads the clock and remembers the reading for Acquire, which
// does not read the clock itself.
func (m *Manager[C]) nowLocked() mono { return m.observeLocked(m.clock()) }

// observeLocked remembers a clock reading taken before the lock, and
// returns it.
func (m *Manager[C]) observeLocked(t mono) mono {
	m.mu.seen = max(m.mu.seen, t)
	return t
}
