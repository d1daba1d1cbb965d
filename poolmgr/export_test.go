package poolmgr

import "fmt"

// RunMaintenance runs one pass of the maintenance loop now, so tests need
// not wait for the ticker. Top-up dials it starts finish asynchronously.
func (m *Manager[C]) RunMaintenance() { m.maintain() }

// CheckInvariants reports the first inconsistency in the bookkeeping of
// the open pools.
func (m *Manager[C]) CheckInvariants() error {
	m.mu.Lock()
	defer m.mu.Unlock()
	idle, inRing := 0, 0
	for k, p := range m.mu.pools {
		idle += len(p.idle)
		if p.inRing {
			inRing++
		}
		if p.inRing != p.eligible() {
			return fmt.Errorf("pool %v: in ring %v, eligible %v", k, p.inRing, p.eligible())
		}
		if p.total != len(p.idle)+p.inUse+p.dialing {
			return fmt.Errorf("pool %v: total %d != idle %d + in use %d + dialing %d", k, p.total, len(p.idle), p.inUse, p.dialing)
		}
		if p.waiters.n > 0 && len(p.idle) > 0 {
			return fmt.Errorf("pool %v: %d waiters while %d conns idle", k, p.waiters.n, len(p.idle))
		}
		if p.active != (p.inUse+p.waiters.n+p.dialing-p.topUp > 0) {
			return fmt.Errorf("pool %v: active flag %v is stale", k, p.active)
		}
	}
	if idle != m.mu.idle {
		return fmt.Errorf("idle: pools hold %d, manager counts %d", idle, m.mu.idle)
	}
	n := 0
	for p := m.mu.ringHead; p != nil; p = p.ringNext {
		n++
	}
	if n != m.mu.ringLen || n != inRing {
		return fmt.Errorf("ring: %d linked, length %d, %d pools flagged", n, m.mu.ringLen, inRing)
	}
	if n > 0 && m.mu.total < m.maxConns {
		return fmt.Errorf("%d pools wait for global capacity with %d of %d slots used", n, m.mu.total, m.maxConns)
	}
	if m.mu.total > m.maxConns {
		return fmt.Errorf("global total %d above the cap %d", m.mu.total, m.maxConns)
	}
	return nil
}
