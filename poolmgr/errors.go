package poolmgr

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/pgtenant/pgtenant/pgerr"
)

// Reasons of the errors Acquire returns (pgerr.Error.Reason). They label
// metrics, so they are fixed strings.
const (
	ReasonWaitTimeout    = "pool_wait_timeout"      // 53300: no connection within WaitTimeout
	ReasonWaitCanceled   = "pool_wait_canceled"     // 57014: the caller's context was canceled
	ReasonConnectFailed  = "backend_connect_failed" // 08000: the Dialer failed
	ReasonPoolClosed     = "pool_closed"            // 57P01: ClosePool was called for the key
	ReasonManagerClosing = "shutdown"               // 57P01: the Manager is closed
)

// limitState is what a waiter saw when it gave up, for the error detail.
type limitState struct {
	size, poolTotal, waiting, max int
}

func errWaitTimeout(key Key, waited time.Duration, ls limitState, cause error) *pgerr.Error {
	var detail string
	if ls.poolTotal >= ls.size {
		detail = fmt.Sprintf("All %d connections of the tenant's pool are in use; %d more requests are waiting.",
			ls.size, ls.waiting)
	} else {
		detail = fmt.Sprintf("All %d backend connections allowed by pool.max_backend_connections are in use (%d by this tenant).",
			ls.max, ls.poolTotal)
	}
	return pgerr.New(pgerr.TooManyConnections, ReasonWaitTimeout,
		fmt.Sprintf("timed out after %s waiting for a backend connection for tenant %q", waited, key.Tenant)).
		WithDetail(detail).
		WithHint(fmt.Sprintf("Shorten transactions, or raise pool.tenants.%s.size or pool.size, "+
			"or pool.max_backend_connections if PostgreSQL's max_connections allows it.", key.Tenant)).
		Wrap(cause)
}

// errWaitEnded turns the end of ctx into the error Acquire returns: a
// deadline of the caller's is a wait timeout like WaitTimeout (53300), a
// cancellation is 57014 as for a canceled query.
func errWaitEnded(ctx context.Context, key Key, waited time.Duration, ls limitState) *pgerr.Error {
	err := ctx.Err()
	if errors.Is(err, context.DeadlineExceeded) {
		return errWaitTimeout(key, waited.Round(time.Millisecond), ls, err)
	}
	return pgerr.New(pgerr.QueryCanceled, ReasonWaitCanceled,
		"canceled while waiting for a backend connection").Wrap(err)
}

// errConnect reports a failed dial. A Dialer that already knows what the
// client should be told (an unknown database, say) returns a *pgerr.Error,
// which is passed on unchanged.
func errConnect(key Key, cause error) *pgerr.Error {
	var pe *pgerr.Error
	if errors.As(cause, &pe) {
		return pe
	}
	return pgerr.New(pgerr.ConnectionException, ReasonConnectFailed,
		fmt.Sprintf("cannot connect to the backend database %q for tenant %q", key.Database, key.Tenant)).
		WithHint("Check that PostgreSQL is running and reachable from pgtenant; the proxy log has the cause.").
		Wrap(cause)
}

func errPoolClosed(key Key) *pgerr.Error {
	return pgerr.NewFatal(pgerr.AdminShutdown, ReasonPoolClosed,
		fmt.Sprintf("the backend connection pool for tenant %q was closed", key.Tenant))
}

func errShutdown() *pgerr.Error {
	return pgerr.NewFatal(pgerr.AdminShutdown, ReasonManagerClosing,
		"pgtenant is shutting down")
}
