package poolmgr_test

import (
	"context"
	"errors"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pgtenant/pgtenant/pgerr"
	"github.com/pgtenant/pgtenant/poolmgr"
)

func TestReleasedConnIsReusedByTheNextAcquire(t *testing.T) {
	m, b := newManager(t, poolmgr.Config{})
	l1 := mustAcquire(t, m, acme)
	c1 := l1.Conn()
	l1.Release()

	l2 := mustAcquire(t, m, acme)
	defer l2.Release()
	if l2.Conn() != c1 {
		t.Fatalf("got conn %d, want the idle conn %d", l2.Conn().id, c1.id)
	}
	if got := b.dials(); got != 1 {
		t.Fatalf("dials = %d, want 1", got)
	}
	if s, _ := poolStat(m, acme); s.InUse != 1 || s.Idle != 0 || s.Total != 1 || s.Acquires != 2 {
		t.Fatalf("pool stat = %+v", s)
	}
}

func TestPoolNeverOpensMoreThanSizeConns(t *testing.T) {
	m, b := newManager(t, poolmgr.Config{Settings: poolmgr.Settings{Size: 3}})
	var leased, most atomic.Int64
	var wg sync.WaitGroup
	for range 20 {
		wg.Go(func() {
			for range 50 {
				l, err := m.Acquire(context.Background(), acme)
				if err != nil {
					t.Error(err)
					return
				}
				n := leased.Add(1)
				for o := most.Load(); n > o && !most.CompareAndSwap(o, n); o = most.Load() {
				}
				leased.Add(-1)
				l.Release()
			}
		})
	}
	wg.Wait()
	if most.Load() > 3 || b.dials() > 3 {
		t.Fatalf("at most %d leased at once and %d dials, want at most 3 of each", most.Load(), b.dials())
	}
}

func TestAcquireTimesOutWithTooManyConnectionsNamingTheConfigKeys(t *testing.T) {
	m, _ := newManager(t, poolmgr.Config{Settings: poolmgr.Settings{Size: 1, WaitTimeout: 50 * time.Millisecond}})
	l := mustAcquire(t, m, acme)
	defer l.Release()

	_, err := m.Acquire(context.Background(), acme)
	pe := pgError(t, err, pgerr.TooManyConnections, poolmgr.ReasonWaitTimeout)
	if want := `timed out after 50ms waiting for a backend connection for tenant "acme"`; pe.Message != want {
		t.Errorf("message = %q, want %q", pe.Message, want)
	}
	for _, key := range []string{"pool.size", "pool.tenants.acme.size", "pool.max_backend_connections"} {
		if !strings.Contains(pe.Hint, key) {
			t.Errorf("hint %q does not name %s", pe.Hint, key)
		}
	}
	if !strings.Contains(pe.Detail, "1 connections of the tenant's pool") {
		t.Errorf("detail %q does not say the pool is full", pe.Detail)
	}
	s, _ := poolStat(m, acme)
	if s.Waiting != 0 || s.WaitCount != 1 || s.WaitTimeouts != 1 || s.WaitDuration <= 0 {
		t.Fatalf("pool stat = %+v", s)
	}
}

func TestWaitTimeoutAtTheGlobalCapSaysSo(t *testing.T) {
	m, _ := newManager(t, poolmgr.Config{
		Settings:        poolmgr.Settings{WaitTimeout: 20 * time.Millisecond},
		MaxBackendConns: 1,
	})
	l := mustAcquire(t, m, acme)
	defer l.Release()
	_, err := m.Acquire(context.Background(), globex)
	pe := pgError(t, err, pgerr.TooManyConnections, poolmgr.ReasonWaitTimeout)
	if !strings.Contains(pe.Detail, "pool.max_backend_connections") {
		t.Fatalf("detail %q does not name the global cap", pe.Detail)
	}
}

func TestReleasedConnIsHandedToWaitersInArrivalOrder(t *testing.T) {
	m, b := newManager(t, poolmgr.Config{Settings: poolmgr.Settings{Size: 1}})
	l := mustAcquire(t, m, acme)
	c := l.Conn()

	first := enqueue(t, context.Background(), m, acme, 1)
	second := enqueue(t, context.Background(), m, acme, 2)

	l.Release()
	l1 := mustReceive(t, first)
	if l1.Conn() != c {
		t.Fatalf("first waiter got conn %d, want the released conn %d", l1.Conn().id, c.id)
	}
	select {
	case <-second:
		t.Fatal("second waiter was served before the first released")
	default:
	}
	l1.Release()
	l2 := mustReceive(t, second)
	defer l2.Release()
	if l2.Conn() != c || b.dials() != 1 {
		t.Fatalf("second waiter got conn %d after %d dials, want conn %d after 1", l2.Conn().id, b.dials(), c.id)
	}
}

func TestAcquireAtTheGlobalCapClosesAnotherTenantsLongestIdleConn(t *testing.T) {
	m, _ := newManager(t, poolmgr.Config{MaxBackendConns: 2})
	l1, l2 := mustAcquire(t, m, acme), mustAcquire(t, m, acme)
	oldest, newest := l1.Conn(), l2.Conn()
	l1.Release()
	l2.Release()

	l := mustAcquire(t, m, globex)
	defer l.Release()
	if !oldest.closed() || newest.closed() {
		t.Fatalf("closed: longest idle %v, most recent %v; want only the longest idle", oldest.closed(), newest.closed())
	}
	s, _ := poolStat(m, acme)
	if s.Idle != 1 || s.Total != 1 || s.ClosedForCap != 1 {
		t.Fatalf("acme pool stat = %+v", s)
	}
	if st := m.Stat(); st.Total != 2 {
		t.Fatalf("global total = %d, want 2", st.Total)
	}
}

func TestTenantWithOneWaiterIsServedWhileAnotherHasMany(t *testing.T) {
	m, _ := newManager(t, poolmgr.Config{
		Settings:        poolmgr.Settings{Size: 10, WaitTimeout: time.Minute},
		MaxBackendConns: 2,
	})
	ctx, stop := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	for range 30 {
		wg.Go(func() {
			for ctx.Err() == nil {
				l, err := m.Acquire(ctx, acme)
				if err != nil {
					continue
				}
				time.Sleep(100 * time.Microsecond)
				l.Release()
			}
		})
	}
	defer func() { stop(); wg.Wait() }()
	eventually(t, "acme holds the whole cap and has a queue", func() bool {
		s, _ := poolStat(m, acme)
		return s.Total == 2 && s.Waiting >= 10
	})

	// Without fairness every acme release goes to acme's queue, which never
	// empties, and globex waits out its timeout.
	got := acquireAsync(context.Background(), m, globex)
	l := mustReceive(t, got)
	l.Release()
	if s, _ := poolStat(m, acme); s.ClosedForCap == 0 {
		t.Fatalf("acme closed no conn to make room for globex: %+v", s)
	}
}

func TestFreedGlobalSlotsGoRoundRobinOverTenants(t *testing.T) {
	third := poolmgr.Key{Database: "app", Tenant: "initech"}
	m, _ := newManager(t, poolmgr.Config{Settings: poolmgr.Settings{Size: 10}, MaxBackendConns: 3})
	held := []*poolmgr.Lease[*fakeConn]{mustAcquire(t, m, acme), mustAcquire(t, m, acme), mustAcquire(t, m, acme)}

	var acmeWaiters []<-chan result
	for i := range 3 {
		acmeWaiters = append(acmeWaiters, enqueue(t, context.Background(), m, acme, i+1))
	}
	globexWaiter := enqueue(t, context.Background(), m, globex, 1)
	thirdWaiter := enqueue(t, context.Background(), m, third, 1)

	// Destroying frees global slots: acme, which queued first, gets the
	// first, then globex and initech, each with one waiter, before acme's
	// second and third.
	held[0].Destroy()
	a1 := mustReceive(t, acmeWaiters[0])
	held[1].Destroy()
	g := mustReceive(t, globexWaiter)
	held[2].Destroy()
	i := mustReceive(t, thirdWaiter)
	if s, _ := poolStat(m, acme); s.Waiting != 2 {
		t.Fatalf("acme has %d waiters, want 2 still queued", s.Waiting)
	}
	for _, l := range []*poolmgr.Lease[*fakeConn]{a1, g, i} {
		l.Destroy()
	}
	for _, ch := range acmeWaiters[1:] {
		mustReceive(t, ch).Release()
	}
}

func TestDestroyClosesTheConnAndFreesCapacityForAWaiter(t *testing.T) {
	m, b := newManager(t, poolmgr.Config{Settings: poolmgr.Settings{Size: 1}})
	l := mustAcquire(t, m, acme)
	broken := l.Conn()
	waiter := enqueue(t, context.Background(), m, acme, 1)

	l.Destroy()
	l2 := mustReceive(t, waiter)
	defer l2.Release()
	if !broken.closed() || l2.Conn() == broken || b.dials() != 2 {
		t.Fatalf("destroyed conn closed=%v, waiter got a new conn=%v, dials=%d", broken.closed(), l2.Conn() != broken, b.dials())
	}
}

func TestDialErrorIsAConnectionExceptionAndFreesTheReservedSlot(t *testing.T) {
	m, b := newManager(t, poolmgr.Config{Settings: poolmgr.Settings{Size: 1}})
	cause := errors.New("dial tcp 10.0.0.1:5432: connection refused")
	b.setHook(func(context.Context) error { return cause })

	_, err := m.Acquire(context.Background(), acme)
	pe := pgError(t, err, pgerr.ConnectionException, poolmgr.ReasonConnectFailed)
	if !strings.Contains(pe.Message, "cannot connect to the backend database") || strings.Contains(pe.Message, "10.0.0.1") {
		t.Errorf("message %q should say what failed without the cause", pe.Message)
	}
	if !errors.Is(err, cause) {
		t.Errorf("error %v does not wrap the dial error", err)
	}
	if s, _ := poolStat(m, acme); s.Total != 0 || s.Dials != 1 || s.DialErrors != 1 {
		t.Fatalf("pool stat = %+v", s)
	}

	b.setHook(nil)
	mustAcquire(t, m, acme).Release()
}

func TestFailedDialWakesAWaiterToDialAgain(t *testing.T) {
	m, b := newManager(t, poolmgr.Config{Settings: poolmgr.Settings{Size: 1}})
	started, fail := make(chan struct{}), make(chan struct{})
	var calls atomic.Int32
	b.setHook(func(context.Context) error {
		if calls.Add(1) == 1 {
			close(started)
			<-fail
			return errors.New("connection refused")
		}
		return nil
	})
	first := acquireAsync(context.Background(), m, acme)
	<-started
	second := acquireAsync(context.Background(), m, acme) // the slot is reserved: it waits
	waitForWaiters(t, m, acme, 1)

	close(fail)
	pgError(t, receive(t, first).err, pgerr.ConnectionException, poolmgr.ReasonConnectFailed)
	mustReceive(t, second).Release()
}

func TestCanceledContextEndsTheWaitWithQueryCanceled(t *testing.T) {
	m, _ := newManager(t, poolmgr.Config{Settings: poolmgr.Settings{Size: 1}})
	l := mustAcquire(t, m, acme)
	defer l.Release()

	ctx, cancel := context.WithCancel(context.Background())
	waiter := enqueue(t, ctx, m, acme, 1)
	cancel()
	err := receive(t, waiter).err
	pgError(t, err, pgerr.QueryCanceled, poolmgr.ReasonWaitCanceled)
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("error %v does not wrap context.Canceled", err)
	}

	dctx, dcancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer dcancel()
	_, err = m.Acquire(dctx, acme)
	pgError(t, err, pgerr.TooManyConnections, poolmgr.ReasonWaitTimeout)
	if s, _ := poolStat(m, acme); s.Waiting != 0 {
		t.Fatalf("%d waiters left behind", s.Waiting)
	}
}

func TestWaiterThatGivesUpDoesNotLeakAConnOrSlotHandedToIt(t *testing.T) {
	m, _ := newManager(t, poolmgr.Config{Settings: poolmgr.Settings{Size: 1}})
	for i := range 400 {
		l := mustAcquire(t, m, acme)
		ctx, cancel := context.WithCancel(context.Background())
		waiter := enqueue(t, ctx, m, acme, 1)
		// Cancel and end the lease at once: the conn (on Release) or its
		// freed slot (on Destroy) may be handed to the waiter just as it
		// gives up.
		cancel()
		if i%2 == 0 {
			l.Release()
		} else {
			l.Destroy()
		}
		if r := receive(t, waiter); r.err == nil {
			r.l.Release()
		}
		cancel()
	}
	s := m.Stat()
	if s.InUse != 0 || s.Waiting != 0 || s.Dialing != 0 || s.Total != s.Idle || s.Total > 1 {
		t.Fatalf("stat after the races = %+v", s)
	}
	l, err := m.Acquire(context.Background(), acme)
	if err != nil {
		t.Fatalf("the pool's only slot leaked: %v", err)
	}
	l.Release()
}

func TestConnPastMaxLifetimeIsClosedOnRelease(t *testing.T) {
	clk := newClock()
	m, _ := newManager(t, poolmgr.Config{Settings: poolmgr.Settings{MaxLifetime: time.Hour}}, poolmgr.WithClock(clk.Now))
	l := mustAcquire(t, m, acme)
	clk.Advance(time.Hour)
	l.Release()
	if !l.Conn().closed() {
		t.Fatal("conn past its lifetime was kept")
	}
	if s, _ := poolStat(m, acme); s.Total != 0 || s.ClosedLifetime != 1 {
		t.Fatalf("pool stat = %+v", s)
	}
}

func TestIdleConnPastMaxLifetimeIsNotLeased(t *testing.T) {
	clk := newClock()
	m, _ := newManager(t, poolmgr.Config{Settings: poolmgr.Settings{MaxLifetime: time.Hour}}, poolmgr.WithClock(clk.Now))
	l := mustAcquire(t, m, acme)
	old := l.Conn()
	l.Release()
	other := mustAcquire(t, m, globex)
	clk.Advance(time.Hour)
	// Acquire judges idle conns by the manager's latest clock reading, taken
	// by any Release or maintenance pass: here globex's.
	other.Release()

	l = mustAcquire(t, m, acme)
	defer l.Release()
	if l.Conn() == old || !old.closed() {
		t.Fatal("an expired idle conn was leased instead of closed")
	}
	if s, _ := poolStat(m, acme); s.ClosedLifetime != 1 {
		t.Fatalf("pool stat = %+v", s)
	}
}

func TestLifetimeIsJitteredSoConnsDoNotExpireTogether(t *testing.T) {
	clk := newClock()
	m, _ := newManager(t, poolmgr.Config{Settings: poolmgr.Settings{MaxLifetime: time.Hour}}, poolmgr.WithClock(clk.Now))
	var ls []*poolmgr.Lease[*fakeConn]
	for range 20 {
		ls = append(ls, mustAcquire(t, m, acme))
	}
	clk.Advance(57 * time.Minute) // within the 10% jitter window
	for _, l := range ls {
		l.Release()
	}
	s, _ := poolStat(m, acme)
	if s.ClosedLifetime == 0 || s.ClosedLifetime == 20 {
		t.Fatalf("%d of 20 conns of the same age expired, want some but not all", s.ClosedLifetime)
	}
}

func TestMaintenanceClosesExpiredIdleConnsAndKeepsMinIdle(t *testing.T) {
	clk := newClock()
	m, _ := newManager(t, poolmgr.Config{
		Settings:  poolmgr.Settings{MinIdle: 1, IdleTimeout: 10 * time.Minute, MaxLifetime: time.Hour},
		ReapAfter: 24 * time.Hour,
	}, poolmgr.WithClock(clk.Now))
	ls := []*poolmgr.Lease[*fakeConn]{mustAcquire(t, m, acme), mustAcquire(t, m, acme), mustAcquire(t, m, acme)}
	for _, l := range ls {
		l.Release()
	}
	clk.Advance(11 * time.Minute)
	m.RunMaintenance()
	s, _ := poolStat(m, acme)
	if s.Idle != 1 || s.ClosedIdle != 2 {
		t.Fatalf("after idle timeout: %+v, want 1 idle kept and 2 closed", s)
	}
	if ls[2].Conn().closed() {
		t.Fatal("the most recently used conn was closed instead of the longest idle")
	}

	clk.Advance(time.Hour)
	m.RunMaintenance() // closes the kept conn for its lifetime, then tops up
	eventually(t, "a fresh conn replaces the expired one", func() bool {
		s, _ := poolStat(m, acme)
		return s.ClosedLifetime == 1 && s.Idle == 1
	})
}

func TestMaintenanceTopsUpMinIdleWithinTheCaps(t *testing.T) {
	m, b := newManager(t, poolmgr.Config{Settings: poolmgr.Settings{MinIdle: 3}, MaxBackendConns: 2})
	mustAcquire(t, m, acme).Release()
	m.RunMaintenance()
	eventually(t, "min idle topped up to the global cap", func() bool {
		s, _ := poolStat(m, acme)
		return s.Idle == 2 && s.Dialing == 0
	})
	m.RunMaintenance()
	if b.dials() != 2 {
		t.Fatalf("dials = %d, want 2: the global cap bounds top-ups", b.dials())
	}
}

func TestMaintenanceLoopRunsOnItsOwn(t *testing.T) {
	m, _ := newManager(t, poolmgr.Config{Settings: poolmgr.Settings{MinIdle: 2}},
		poolmgr.WithMaintenanceInterval(5*time.Millisecond))
	mustAcquire(t, m, acme).Release()
	eventually(t, "the loop tops up min idle", func() bool {
		s, _ := poolStat(m, acme)
		return s.Idle == 2
	})
}

func TestInactivePoolIsReapedWithItsMinIdleConns(t *testing.T) {
	clk := newClock()
	m, _ := newManager(t, poolmgr.Config{
		Settings:  poolmgr.Settings{MinIdle: 1},
		ReapAfter: 15 * time.Minute,
	}, poolmgr.WithClock(clk.Now))
	l := mustAcquire(t, m, acme)
	c := l.Conn()
	l.Release()
	busy := mustAcquire(t, m, globex)

	clk.Advance(16 * time.Minute)
	m.RunMaintenance()
	if _, ok := poolStat(m, acme); ok || !c.closed() {
		t.Fatal("the inactive pool was not reaped with its idle conn")
	}
	if _, ok := poolStat(m, globex); !ok {
		t.Fatal("a pool with a lease out was reaped")
	}
	busy.Release()
	if s := m.Stat(); s.Acquires != 2 {
		t.Fatalf("manager counters lost the reaped pool: %+v", s.Counters)
	}
}

func TestOverridesApplyToExistingPoolsWithoutRestart(t *testing.T) {
	m, b := newManager(t, poolmgr.Config{Settings: poolmgr.Settings{Size: 1}})
	l1 := mustAcquire(t, m, acme)
	waiter := enqueue(t, context.Background(), m, acme, 1)

	m.SetOverrides(map[string]poolmgr.Override{"acme": {Size: intp(3)}})
	l2 := mustReceive(t, waiter)
	l3 := mustAcquire(t, m, acme)
	if s, _ := poolStat(m, acme); s.Size != 3 || s.InUse != 3 || b.dials() != 3 {
		t.Fatalf("after growing: %+v, %d dials", s, b.dials())
	}
	l1.Release()
	l2.Release()

	m.SetOverrides(map[string]poolmgr.Override{"acme": {Size: intp(1)}})
	if s, _ := poolStat(m, acme); s.Size != 1 || s.Idle != 0 || s.Total != 1 {
		t.Fatalf("after shrinking, idle conns beyond the size should close: %+v", s)
	}
	l3.Release()
	if s, _ := poolStat(m, acme); s.Total != 1 || s.Idle != 1 {
		t.Fatalf("after the last release: %+v", s)
	}

	m.SetOverrides(nil)
	if s, _ := poolStat(m, acme); s.Size != 1 {
		t.Fatalf("size %d after removing the override, want the base 1", s.Size)
	}
}

func TestConfiguredOverrideSizesANewPool(t *testing.T) {
	m, _ := newManager(t, poolmgr.Config{
		Settings: poolmgr.Settings{Size: 5},
		Tenants:  map[string]poolmgr.Override{"acme": {Size: intp(2), WaitTimeout: durp(time.Second)}},
	})
	mustAcquire(t, m, acme).Release()
	mustAcquire(t, m, globex).Release()
	a, _ := poolStat(m, acme)
	g, _ := poolStat(m, globex)
	if a.Size != 2 || g.Size != 5 {
		t.Fatalf("sizes: acme %d, globex %d; want 2 and 5", a.Size, g.Size)
	}
}

func TestInvalidRuntimeOverrideFieldsAreIgnored(t *testing.T) {
	m, _ := newManager(t, poolmgr.Config{Settings: poolmgr.Settings{Size: 4}})
	m.SetOverrides(map[string]poolmgr.Override{"acme": {Size: intp(0), MinIdle: intp(9)}})
	mustAcquire(t, m, acme).Release()
	if s, _ := poolStat(m, acme); s.Size != 4 || s.MinIdle != 4 {
		t.Fatalf("size %d min idle %d, want the inherited 4 and min idle clamped to it", s.Size, s.MinIdle)
	}
}

func TestCloseFailsWaitersClosesIdleConnsAndIsIdempotent(t *testing.T) {
	m, _ := newManager(t, poolmgr.Config{Settings: poolmgr.Settings{Size: 1}})
	idle := mustAcquire(t, m, globex)
	idle.Release()
	held := mustAcquire(t, m, acme)
	waiter := enqueue(t, context.Background(), m, acme, 1)

	m.Close()
	m.Close()
	pgError(t, receive(t, waiter).err, pgerr.AdminShutdown, poolmgr.ReasonManagerClosing)
	if !idle.Conn().closed() || held.Conn().closed() {
		t.Fatal("Close should close idle conns and leave leased ones to their holder")
	}
	_, err := m.Acquire(context.Background(), acme)
	pgError(t, err, pgerr.AdminShutdown, poolmgr.ReasonManagerClosing)

	held.Release()
	if !held.Conn().closed() {
		t.Fatal("a conn released after Close was kept")
	}
	if s := m.Stat(); s.Total != 0 {
		t.Fatalf("total %d after Close and release, want 0", s.Total)
	}
	m.SetOverrides(map[string]poolmgr.Override{"acme": {Size: intp(1)}}) // harmless after Close
}

func TestClosePoolFailsWaitersAndClosesLeasedConnsOnRelease(t *testing.T) {
	m, _ := newManager(t, poolmgr.Config{Settings: poolmgr.Settings{Size: 1}})
	held := mustAcquire(t, m, acme)
	other := mustAcquire(t, m, globex)
	defer other.Release()
	waiter := enqueue(t, context.Background(), m, acme, 1)

	m.ClosePool(acme)
	pe := pgError(t, receive(t, waiter).err, pgerr.AdminShutdown, poolmgr.ReasonPoolClosed)
	if !pe.Fatal() {
		t.Error("a closed pool's error should end the client session")
	}
	held.Release()
	if !held.Conn().closed() {
		t.Fatal("a conn released to a closed pool was kept")
	}
	if other.Conn().closed() {
		t.Fatal("closing acme's pool touched globex's conn")
	}

	l := mustAcquire(t, m, acme) // a new pool
	defer l.Release()
	if l.Conn() == held.Conn() {
		t.Fatal("the new pool reused a conn of the closed one")
	}
}

func TestSecondReleaseOrDestroyOfALeaseIsANoOp(t *testing.T) {
	m, _ := newManager(t, poolmgr.Config{Settings: poolmgr.Settings{Size: 1, WaitTimeout: 20 * time.Millisecond}})
	l1 := mustAcquire(t, m, acme)
	l1.Release()
	l2 := mustAcquire(t, m, acme) // the same conn, leased again
	l1.Release()
	l1.Destroy()
	if l2.Conn().closed() {
		t.Fatal("a stale Destroy closed a conn leased to someone else")
	}
	if _, err := m.Acquire(context.Background(), acme); err == nil {
		t.Fatal("a stale Release gave a leased conn to another Acquire")
	}
	l2.Destroy()
	l2.Release()
	if s := m.Stat(); s.Total != 0 || s.InUse != 0 {
		t.Fatalf("stat after destroy = %+v", s)
	}
}

func TestNewPanicsOnInvalidConfig(t *testing.T) {
	defer func() {
		if r := recover(); r == nil || !strings.Contains(r.(string), "pool.wait_timeout") {
			t.Fatalf("recovered %v, want a panic naming pool.wait_timeout", r)
		}
	}()
	newManager(t, poolmgr.Config{Settings: poolmgr.Settings{WaitTimeout: -time.Second}})
}

// TestCountsStayConsistentUnderConcurrentUse runs tenants against a small
// global cap with releases, destroys, cancellations and timeouts mixed, and
// checks that no conn or slot leaks.
func TestCountsStayConsistentUnderConcurrentUse(t *testing.T) {
	m, b := newManager(t, poolmgr.Config{
		Settings:        poolmgr.Settings{Size: 3, WaitTimeout: 5 * time.Millisecond},
		MaxBackendConns: 4,
	})
	keys := []poolmgr.Key{acme, globex, {Database: "app", Tenant: "initech"}, {Database: "other", Tenant: "acme"}}
	stop := make(chan struct{})
	checked := make(chan error, 1)
	go func() {
		for {
			select {
			case <-stop:
				checked <- m.CheckInvariants()
				return
			default:
				if err := m.CheckInvariants(); err != nil {
					checked <- err
					return
				}
				time.Sleep(100 * time.Microsecond)
			}
		}
	}()
	var wg sync.WaitGroup
	for g := range 24 {
		wg.Go(func() {
			for i := range 150 {
				ctx, cancel := context.WithCancel(context.Background())
				if i%7 == 0 {
					go cancel()
				}
				l, err := m.Acquire(ctx, keys[(g+i)%len(keys)])
				if err == nil {
					if i%3 == 0 {
						time.Sleep(50 * time.Microsecond)
					}
					if i%5 == 0 {
						l.Destroy()
					} else {
						l.Release()
					}
				}
				cancel()
			}
		})
	}
	wg.Wait()
	close(stop)
	if err := <-checked; err != nil {
		t.Fatal(err)
	}
	s := m.Stat()
	t.Logf("counters: %+v", s.Counters)
	if s.InUse != 0 || s.Waiting != 0 || s.Dialing != 0 || s.Total != s.Idle || s.Total > 4 {
		t.Fatalf("stat after the run = %+v", s)
	}
	if open := b.open.Load(); open != int64(s.Total) {
		t.Fatalf("%d conns open at the backend, the pools count %d", open, s.Total)
	}
	m.Close()
	if open := b.open.Load(); open != 0 {
		t.Fatalf("%d conns still open after Close", open)
	}
}

func TestConnDialedIntoAClosedPoolIsClosedAndReported(t *testing.T) {
	for _, tc := range []struct {
		name   string
		close  func(m *poolmgr.Manager[*fakeConn])
		reason string
	}{
		{"ClosePool", func(m *poolmgr.Manager[*fakeConn]) { m.ClosePool(acme) }, poolmgr.ReasonPoolClosed},
		{"Close", func(m *poolmgr.Manager[*fakeConn]) { m.Close() }, poolmgr.ReasonManagerClosing},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m, b := newManager(t, poolmgr.Config{})
			started, finish := make(chan struct{}), make(chan struct{})
			b.setHook(func(context.Context) error { close(started); <-finish; return nil })
			res := acquireAsync(context.Background(), m, acme)
			<-started
			tc.close(m)
			close(finish)
			pgError(t, receive(t, res).err, pgerr.AdminShutdown, tc.reason)
			if b.open.Load() != 0 || m.Stat().Total != 0 {
				t.Fatalf("the dialed conn was kept: %d open, total %d", b.open.Load(), m.Stat().Total)
			}
		})
	}
}

func TestContextCanceledWhileDialingIsQueryCanceled(t *testing.T) {
	m, b := newManager(t, poolmgr.Config{})
	ctx, cancel := context.WithCancel(context.Background())
	b.setHook(func(ctx context.Context) error { cancel(); <-ctx.Done(); return ctx.Err() })
	_, err := m.Acquire(ctx, acme)
	pgError(t, err, pgerr.QueryCanceled, poolmgr.ReasonWaitCanceled)
	if s := m.Stat(); s.Total != 0 || s.DialErrors != 1 {
		t.Fatalf("stat = %+v", s)
	}
}

func TestLeaseReportsItsKey(t *testing.T) {
	m, _ := newManager(t, poolmgr.Config{})
	l := mustAcquire(t, m, globex)
	defer l.Release()
	if l.Key() != globex || l.Conn().key != globex {
		t.Fatalf("lease key %v, conn dialed for %v; want %v", l.Key(), l.Conn().key, globex)
	}
}
