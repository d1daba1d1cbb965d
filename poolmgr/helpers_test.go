package poolmgr_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/pgtenant/pgtenant/pgerr"
	"github.com/pgtenant/pgtenant/poolmgr"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

var (
	acme   = poolmgr.Key{Database: "app", Tenant: "acme"}
	globex = poolmgr.Key{Database: "app", Tenant: "globex"}
)

// fakeConn stands in for a backend connection.
type fakeConn struct {
	id     int
	key    poolmgr.Key
	b      *backend
	closes atomic.Int32
}

func (c *fakeConn) Close() error {
	if c.closes.Add(1) > 1 {
		c.b.doubleCloses.Add(1)
	}
	c.b.open.Add(-1)
	return nil
}

func (c *fakeConn) closed() bool { return c.closes.Load() > 0 }

// backend is a fake Dialer that records what it opened.
type backend struct {
	mu    sync.Mutex
	conns []*fakeConn
	// hook, when set, runs before each dial; an error fails the dial.
	hook func(ctx context.Context) error

	open         atomic.Int64 // dialed and not closed
	doubleCloses atomic.Int64
}

func (b *backend) dial(ctx context.Context, key poolmgr.Key) (*fakeConn, error) {
	b.mu.Lock()
	hook := b.hook
	b.mu.Unlock()
	if hook != nil {
		if err := hook(ctx); err != nil {
			return nil, err
		}
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	c := &fakeConn{id: len(b.conns) + 1, key: key, b: b}
	b.conns = append(b.conns, c)
	b.open.Add(1)
	return c, nil
}

func (b *backend) setHook(h func(ctx context.Context) error) {
	b.mu.Lock()
	b.hook = h
	b.mu.Unlock()
}

func (b *backend) dials() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return len(b.conns)
}

// newManager returns a Manager over a fresh backend, closed at the end of
// the test. Its maintenance loop is slowed down so that tests run
// maintenance themselves, unless opts say otherwise.
func newManager(t testing.TB, cfg poolmgr.Config, opts ...poolmgr.Option) (*poolmgr.Manager[*fakeConn], *backend) {
	t.Helper()
	b := &backend{}
	opts = append([]poolmgr.Option{poolmgr.WithMaintenanceInterval(time.Hour)}, opts...)
	m := poolmgr.New(cfg, b.dial, opts...)
	t.Cleanup(func() {
		m.Close()
		if n := b.doubleCloses.Load(); n > 0 {
			t.Errorf("%d connections were closed more than once", n)
		}
	})
	return m, b
}

// clock is a settable time source for WithClock.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func newClock() *clock { return &clock{t: time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)} }

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) Advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

type result struct {
	l   *poolmgr.Lease[*fakeConn]
	err error
}

func acquireAsync(ctx context.Context, m *poolmgr.Manager[*fakeConn], key poolmgr.Key) <-chan result {
	ch := make(chan result, 1)
	go func() {
		l, err := m.Acquire(ctx, key)
		ch <- result{l, err}
	}()
	return ch
}

func mustAcquire(t testing.TB, m *poolmgr.Manager[*fakeConn], key poolmgr.Key) *poolmgr.Lease[*fakeConn] {
	t.Helper()
	l, err := m.Acquire(context.Background(), key)
	if err != nil {
		t.Fatalf("Acquire(%v): %v", key, err)
	}
	return l
}

// receive waits for an async Acquire, failing the test if it takes longer
// than a generous bound.
func receive(t testing.TB, ch <-chan result) result {
	t.Helper()
	select {
	case r := <-ch:
		return r
	case <-time.After(10 * time.Second):
		t.Fatal("Acquire did not return within 10s")
		return result{}
	}
}

func mustReceive(t testing.TB, ch <-chan result) *poolmgr.Lease[*fakeConn] {
	t.Helper()
	r := receive(t, ch)
	if r.err != nil {
		t.Fatalf("Acquire: %v", r.err)
	}
	return r.l
}

// eventually fails the test unless cond holds within a generous bound.
func eventually(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("not within 10s: %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}

func poolStat(m *poolmgr.Manager[*fakeConn], key poolmgr.Key) (poolmgr.PoolStat, bool) {
	for _, p := range m.Stat().Pools {
		if p.Key == key {
			return p, true
		}
	}
	return poolmgr.PoolStat{}, false
}

// enqueue starts an Acquire of key and returns once it waits in the pool's
// queue as its nth waiter.
func enqueue(t testing.TB, ctx context.Context, m *poolmgr.Manager[*fakeConn], key poolmgr.Key, nth int) <-chan result {
	t.Helper()
	ch := acquireAsync(ctx, m, key)
	waitForWaiters(t, m, key, nth)
	return ch
}

// waitForWaiters blocks until key's pool has n waiters.
func waitForWaiters(t testing.TB, m *poolmgr.Manager[*fakeConn], key poolmgr.Key, n int) {
	t.Helper()
	eventually(t, fmt.Sprintf("%d waiters for %s", n, key.Tenant), func() bool {
		s, _ := poolStat(m, key)
		return s.Waiting == n
	})
}

// pgError asserts that err is a *pgerr.Error with code and reason.
func pgError(t testing.TB, err error, code, reason string) *pgerr.Error {
	t.Helper()
	var pe *pgerr.Error
	if !errors.As(err, &pe) {
		t.Fatalf("error %v (%T) is not a *pgerr.Error", err, err)
	}
	if pe.Code != code || pe.Reason != reason {
		t.Fatalf("error code/reason = %s/%s, want %s/%s (%v)", pe.Code, pe.Reason, code, reason, err)
	}
	return pe
}

func intp(v int) *int                     { return &v }
func durp(v time.Duration) *time.Duration { return &v }
