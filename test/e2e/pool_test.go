package e2e

import (
	"context"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/pgtenant/pgtenant/test/testpg"
)

func TestPoolWaitTimeoutGives53300AndTheSessionStaysUsable(t *testing.T) {
	e := startProxy(t, func(c *proxyConfig, _ *jwtConfig) {
		c.Pool.Size = 1
		c.Pool.WaitTimeout = 300 * time.Millisecond
	})
	holder, waiter := e.connect(t, "acme"), e.connect(t, "acme")
	ctx := testpg.Context(t)
	tx, err := holder.Begin(ctx) // holds the tenant's only backend
	if err != nil {
		t.Fatal(err)
	}
	_, err = waiter.Exec(ctx, "SELECT 1")
	if testpg.SQLState(err) != "53300" {
		t.Fatalf("got %v, want SQLSTATE 53300", err)
	}
	if err := tx.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	scanVisible(t, waiter.QueryRow(ctx, visibleSQL)).check(t, "acme")
}

func TestGlobalCapIsSharedFairlyAcrossTenants(t *testing.T) {
	// Two backend connections in all. acme holds both and queues more work
	// than they can serve in time; globex must still get a turn.
	e := startProxy(t, func(c *proxyConfig, _ *jwtConfig) {
		c.Pool.Size = 4
		c.Pool.MaxBackendConns = 2
		c.Pool.WaitTimeout = 5 * time.Second
	})
	ctx := testpg.Context(t)
	var holders []pgx.Tx
	for i := 0; i < 2; i++ {
		tx, err := e.connect(t, "acme").Begin(ctx)
		if err != nil {
			t.Fatal(err)
		}
		holders = append(holders, tx)
	}
	var wg sync.WaitGroup
	for i := 0; i < 4; i++ {
		conn := e.connect(t, "acme")
		wg.Add(1)
		go func() {
			defer wg.Done()
			if _, err := conn.Exec(context.Background(), "SELECT pg_sleep(1.5)"); err != nil {
				t.Errorf("acme waiter: %v", err)
			}
		}()
	}
	globex := e.connect(t, "globex")
	eventually(t, "five clients wait", func() bool { return e.poolStat().Waiting == 4 })
	done := make(chan error, 1)
	go func() {
		var s string
		done <- globex.QueryRow(context.Background(), "SELECT current_setting('app.current_org')").Scan(&s)
	}()
	eventually(t, "globex waits too", func() bool { return e.poolStat().Waiting == 5 })
	for _, tx := range holders {
		if err := tx.Commit(ctx); err != nil {
			t.Fatal(err)
		}
	}
	// Served in round-robin order, globex gets one of the two freed slots
	// at once; first-come-first-served would make it wait behind 4 sleeps.
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(2500 * time.Millisecond):
		t.Fatal("globex was starved by acme's queue")
	}
	wg.Wait()
	if st := e.poolStat(); st.Total > 2 {
		t.Fatalf("global cap exceeded: %d backend connections", st.Total)
	}
}

func TestIdleConnectionsOfAnotherTenantAreClosedAtTheGlobalCap(t *testing.T) {
	e := startProxy(t, func(c *proxyConfig, _ *jwtConfig) {
		c.Pool.MaxBackendConns = 1
		c.Pool.WaitTimeout = 2 * time.Second
	})
	ctx := testpg.Context(t)
	scanVisible(t, e.connect(t, "acme").QueryRow(ctx, visibleSQL)).check(t, "acme")
	scanVisible(t, e.connect(t, "globex").QueryRow(ctx, visibleSQL)).check(t, "globex")
	if st := e.poolStat(); st.ClosedForCap != 1 || st.Total != 1 {
		t.Fatalf("want acme's idle connection closed for globex: %+v", st.Counters)
	}
}

func backendPID(t *testing.T, conn *pgx.Conn) uint32 {
	t.Helper()
	var pid uint32
	if err := conn.QueryRow(testpg.Context(t), "SELECT pg_backend_pid()").Scan(&pid); err != nil {
		t.Fatal(err)
	}
	return pid
}

func terminate(t *testing.T, pid uint32) {
	t.Helper()
	su := superuser(t)
	if _, err := su.Exec(testpg.Context(t), "SELECT pg_terminate_backend($1)", pid); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the backend is gone", func() bool {
		var n int
		_ = su.QueryRow(context.Background(), "SELECT count(*) FROM pg_stat_activity WHERE pid = $1", pid).Scan(&n)
		return n == 0
	})
}

func TestABackendKilledWhileIdleIsReplacedTransparently(t *testing.T) {
	e := startProxy(t, func(c *proxyConfig, _ *jwtConfig) { c.Pool.Size = 1 })
	conn := e.connect(t, "acme")
	pid := backendPID(t, conn)
	terminate(t, pid)
	// Connections idle for less than 100ms are reused without a check.
	time.Sleep(200 * time.Millisecond)
	if again := backendPID(t, conn); again == pid {
		t.Fatal("served by the terminated backend")
	}
	scanVisible(t, conn.QueryRow(testpg.Context(t), visibleSQL)).check(t, "acme")
}

func TestABackendKilledMidTransactionGivesTheClient08006AndIsReplaced(t *testing.T) {
	e := startProxy(t, func(c *proxyConfig, _ *jwtConfig) { c.Pool.Size = 1 })
	conn := e.connect(t, "acme")
	ctx := testpg.Context(t)
	tx, err := conn.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var pid uint32
	if err := tx.QueryRow(ctx, "SELECT pg_backend_pid()").Scan(&pid); err != nil {
		t.Fatal(err)
	}
	terminate(t, pid)
	_, err = tx.Exec(ctx, "SELECT 1")
	if testpg.SQLState(err) != "08006" {
		t.Fatalf("got %v, want SQLSTATE 08006", err)
	}
	// A new session of the tenant gets a fresh backend.
	fresh := e.connect(t, "acme")
	if got := backendPID(t, fresh); got == pid {
		t.Fatal("served by the terminated backend")
	}
	eventually(t, "the dead backend leaves the pool", func() bool { return e.poolStat().Total == 1 })
}

func TestAClientKilledMidTransactionLeavesNoOpenTransaction(t *testing.T) {
	e := startProxy(t, nil)
	su := superuser(t)
	for _, tc := range []struct{ name, stmt string }{
		{"idle in transaction", "INSERT INTO items (name) VALUES ('left behind')"},
		{"running a query", "SELECT pg_sleep(60)"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			conn := e.connect(t, "acme")
			ctx := testpg.Context(t)
			if _, err := conn.Exec(ctx, "BEGIN"); err != nil {
				t.Fatal(err)
			}
			pid := backendPID(t, conn)
			if tc.stmt == "SELECT pg_sleep(60)" {
				go conn.Exec(context.Background(), tc.stmt) // returns when the socket is closed
				eventually(t, "the query runs", func() bool {
					var state string
					_ = su.QueryRow(ctx, "SELECT state FROM pg_stat_activity WHERE pid = $1", pid).Scan(&state)
					return state == "active"
				})
			} else if _, err := conn.Exec(ctx, tc.stmt); err != nil {
				t.Fatal(err)
			}
			conn.PgConn().Conn().Close() // the client vanishes without a word
			eventually(t, "the backend's transaction is gone", func() bool {
				var n int
				err := su.QueryRow(ctx, `SELECT count(*) FROM pg_stat_activity
					WHERE pid = $1 AND (state LIKE 'idle in transaction%' OR state = 'active')`, pid).Scan(&n)
				return err == nil && n == 0
			})
		})
	}
	var n int
	if err := su.QueryRow(testpg.Context(t), "SELECT count(*) FROM items WHERE name = 'left behind'").Scan(&n); err != nil || n != 0 {
		t.Fatalf("the abandoned insert was committed (%d rows, %v)", n, err)
	}
}

func TestCancelReachesTheBackendServingTheClient(t *testing.T) {
	e := startProxy(t, nil)
	conn, other := e.connect(t, "acme"), e.connect(t, "acme")
	go func() {
		time.Sleep(300 * time.Millisecond)
		// The key pgtenant issued at login, sent to pgtenant as the
		// protocol prescribes: a CancelRequest on a new connection.
		_ = conn.PgConn().CancelRequest(context.Background())
	}()
	done := make(chan error, 1)
	go func() {
		_, err := other.Exec(context.Background(), "SELECT pg_sleep(2)")
		done <- err
	}()
	start := time.Now()
	_, err := conn.Exec(testpg.Context(t), "SELECT pg_sleep(30)")
	if testpg.SQLState(err) != "57014" {
		t.Fatalf("got %v, want SQLSTATE 57014", err)
	}
	if time.Since(start) > 20*time.Second {
		t.Fatal("the query was not canceled")
	}
	if err := <-done; err != nil {
		t.Fatalf("the cancel reached another client's query: %v", err)
	}
	scanVisible(t, conn.QueryRow(testpg.Context(t), visibleSQL)).check(t, "acme")

	// A guessed key reaches nothing and is counted.
	c, err := net.Dial("tcp", e.addr)
	if err != nil {
		t.Fatal(err)
	}
	msg, _ := (&pgproto3.CancelRequest{ProcessID: conn.PgConn().PID(), SecretKey: []byte{1, 2, 3, 4}}).Encode(nil)
	if _, err := c.Write(msg); err != nil {
		t.Fatal(err)
	}
	_, _ = c.Read(make([]byte, 1)) // pgtenant closes the connection
	c.Close()
	if st := e.srv.CancelStats(); st.Forwarded != 1 || st.Rejected != 1 {
		t.Fatalf("cancel counters %+v, want 1 forwarded and 1 rejected", st)
	}
}
