package proxy

import (
	"crypto/tls"
	"errors"
	"net"
	"syscall"
	"time"
)

// aliveCheckAfter is how long a connection must have been idle before
// checkout checks that PostgreSQL has not closed it. A connection reused
// sooner skips the check (one system call): under load, connections are
// reused within microseconds and are almost never closed in between; one that
// was is reported to its client as a lost backend (08006).
const aliveCheckAfter = 100 * time.Millisecond

// alive reports whether an idle backend connection is still usable: nothing
// may be waiting to be read on it. PostgreSQL sends a FATAL ErrorResponse and
// closes the socket when a backend is terminated (pg_terminate_backend, a
// restart, idle_session_timeout), so anything readable, or EOF, means the
// connection is dead. One non-blocking peek: no round trip.
func (b *backendConn) alive() bool {
	if b.r.Buffered() > 0 {
		return false
	}
	c := b.conn
	if tc, ok := c.(*tls.Conn); ok {
		c = tc.NetConn()
	}
	sc, ok := c.(syscall.Conn)
	if !ok {
		return true
	}
	raw, err := sc.SyscallConn()
	if err != nil {
		return false
	}
	alive := true
	err = raw.Read(func(fd uintptr) bool {
		var buf [1]byte
		n, _, err := syscall.Recvfrom(int(fd), buf[:], syscall.MSG_PEEK|syscall.MSG_DONTWAIT)
		switch {
		case n > 0:
			alive = false // unsolicited data: a FATAL error before close
		case err == nil:
			alive = false // EOF
		case errors.Is(err, syscall.EAGAIN), errors.Is(err, syscall.EINTR):
		default:
			alive = false
		}
		return true // never wait for readiness
	})
	return err == nil && alive
}

var _ net.Conn = (*tls.Conn)(nil)
