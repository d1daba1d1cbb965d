package poolmgr

import "time"

// maintenanceLoop runs maintain every interval until Close.
func (m *Manager[C]) maintenanceLoop() {
	defer close(m.loopDone)
	t := time.NewTicker(m.interval)
	defer t.Stop()
	for {
		select {
		case <-m.stop:
			return
		case <-t.C:
			m.maintain()
		}
	}
}

// maintain closes idle conns past MaxLifetime or IdleTimeout (keeping
// MinIdle of the latter), reaps pools inactive for ReapAfter, and starts
// dials to top pools up to MinIdle. Top-ups use only spare global capacity:
// none start while any pool waits for it.
func (m *Manager[C]) maintain() {
	m.mu.Lock()
	if m.mu.closed {
		m.mu.Unlock()
		return
	}
	now := m.nowLocked()
	var closing []*conn[C]
	for _, p := range m.mu.pools {
		closing = m.expireIdleLocked(p, now, closing)
		if !p.active && p.dialing == 0 && now.sub(p.lastActive) >= m.reapAfter {
			closing = m.closePoolLocked(p, closing)
		}
	}
	closing = m.grantLocked(now, closing)

	var dials []*pool[C]
	if m.mu.ringLen == 0 {
		for _, p := range m.mu.pools {
			for len(p.idle)+p.topUp < p.s.MinIdle && p.total < p.s.Size && m.mu.total < m.maxConns {
				p.topUp++
				m.reserveLocked(p)
				dials = append(dials, p)
			}
		}
	}
	m.topUps.Add(len(dials)) // under the lock, before Close can set closed and Wait
	m.mu.Unlock()

	closeConns(closing)
	for _, p := range dials {
		go m.topUp(p)
	}
}

// expireIdleLocked closes p's idle conns past MaxLifetime, then those idle
// longer than IdleTimeout beyond the first MinIdle.
func (m *Manager[C]) expireIdleLocked(p *pool[C], now mono, closing []*conn[C]) []*conn[C] {
	kept := p.idle[:0]
	for _, c := range p.idle {
		if c.expired(now, p.s.MaxLifetime) {
			p.counters.ClosedLifetime++
			m.mu.idle--
			closing = m.dropLocked(p, c, closing)
			continue
		}
		kept = append(kept, c)
	}
	clear(p.idle[len(kept):])
	p.idle = kept
	// idle[0] has been idle longest: release order is LIFO.
	for len(p.idle) > p.s.MinIdle && now.sub(p.idle[0].idleSince) >= p.s.IdleTimeout {
		c := p.popOldestIdle()
		p.counters.ClosedIdle++
		m.mu.idle--
		closing = m.dropLocked(p, c, closing)
	}
	return closing
}

// topUp dials one MinIdle conn for p into a slot maintain reserved.
func (m *Manager[C]) topUp(p *pool[C]) {
	defer m.topUps.Done()
	c, err := m.dial(m.ctx, p.key)
	m.mu.Lock()
	now := m.nowLocked()
	p.topUp--
	pc, closing := m.finishDialLocked(p, c, err, now)
	if pc != nil {
		closing = m.deliverLocked(p, pc, now, closing)
	}
	m.markActiveLocked(p)
	m.mu.Unlock()
	closeConns(closing)
}
