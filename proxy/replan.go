package proxy

import (
	"encoding/binary"
	"time"

	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/pgtenant/pgtenant/proxy/wire"
)

// Transparent re-prepare after a schema change.
//
// When a table's columns change, PostgreSQL refuses to run a statement
// prepared before with "cached plan must not change result type" (0A000):
// the client may have cached the old row description. A client that asks
// for the description with every execution (Bind, Describe of the portal,
// Execute, Sync, as node-postgres and pgconn's ExecPrepared do) cannot be
// misled, so for such a sync group pgtenant prepares the statement again
// and runs the group once more, instead of passing the error on. It does so
// only where nothing of the group's can have been seen or done: the group
// started a transaction, is the only one in flight, opens no transaction
// block, and the failing Bind is its first message. Everything else gets
// PostgreSQL's error, as from PostgreSQL.

// cachedPlanMessage is PostgreSQL's message for the error.
const cachedPlanMessage = "cached plan must not change result type"

// maxReplanGroup bounds the copy of a sync group kept for a retry.
const maxReplanGroup = 64 << 10

// replanState is the copy of the latest sync group that could be retried.
// It is written by run and read by pump, both holding wmu.
type replanState struct {
	frames []byte // Bind, Describe (portal), Execute, Sync, as sent
	ok     bool   // the group so far can be retried
	bound  bool   // the Bind is in frames
}

// note records a message written to the backend for a retry of its
// group; first says that the message starts a group. Called with wmu held.
func (r *replanState) note(typ byte, frame []byte, first bool) {
	if first {
		r.frames, r.ok, r.bound = r.frames[:0], typ == 'B', false
	}
	if !r.ok {
		return
	}
	switch {
	case typ == 'B' && !r.bound:
		r.bound = true
	case typ == 'D' && len(frame) > wire.HeaderLen && frame[wire.HeaderLen] == 'P', typ == 'E', typ == 'S':
	default:
		r.ok = false
		return
	}
	if len(r.frames)+len(frame) > maxReplanGroup {
		r.ok = false
		return
	}
	r.frames = append(r.frames, frame...)
}

// retryable returns the statement of the kept group's Bind when the group
// asks for the portal's row description and binds with at most one result
// format, which then applies to every column, however many the new plan has.
func (r *replanState) retryable() (stmt string, ok bool) {
	if !r.ok || !r.bound {
		return "", false
	}
	bind := wire.Body(r.frames)
	n := binary.BigEndian.Uint32(r.frames[1:5]) - 4
	bind = bind[:n]
	rest := r.frames[wire.HeaderLen+int(n):]
	described := false
	for len(rest) >= wire.HeaderLen {
		l := int(binary.BigEndian.Uint32(rest[1:5])) + 1
		if rest[0] == 'D' {
			described = true
		}
		rest = rest[l:]
	}
	var b pgproto3.Bind
	if !described || b.Decode(bind) != nil || len(b.ResultFormatCodes) > 1 || b.PreparedStatement == "" {
		return "", false
	}
	return b.PreparedStatement, true
}

// replan handles an ErrorResponse at the head of the backend's reply
// stream: when it is the cached-plan error of a group that can be retried,
// it swallows the error and the group's ReadyForQuery, prepares the
// statement again and sends the group once more (with the tenant context
// first, as for any new transaction), and reports true; the pump then reads
// the group's replies as if it had just been sent.
func (s *session) replan(b *backendConn, h wire.Header) (bool, error) {
	if !wire.Fits(b.r, h) {
		return false, nil
	}
	frame, err := wire.PeekFrame(b.r, h)
	if err != nil {
		return false, err
	}
	if _, msg, code := wire.ErrorFields(wire.Body(frame)); code != "0A000" || msg != cachedPlanMessage {
		return false, nil
	}
	s.mu.Lock()
	if len(s.mu.groups) != 1 || s.mu.closing {
		s.mu.Unlock()
		return false, nil
	}
	g := &s.mu.groups[0]
	if g.inject != injectLocal || g.inBlock || g.txControl || !g.ended {
		s.mu.Unlock()
		return false, nil
	}
	s.mu.replanning = true // no new group is admitted until the retry is sent
	s.mu.Unlock()
	done := func() {
		s.mu.Lock()
		s.mu.replanning = false
		s.mu.cond.Broadcast()
		s.mu.Unlock()
	}
	defer done()

	// run has written the whole group once wmu is free.
	s.wmu.Lock()
	defer s.wmu.Unlock()
	server, ok := s.replans.retryable()
	if !ok {
		return false, nil
	}
	s.mu.Lock()
	var cs *clientStmt
	for _, c := range s.stmts {
		if c.server == server && c.rest != nil {
			cs = c
		}
	}
	s.mu.Unlock()
	if cs == nil {
		return false, nil
	}
	// The error, then the ReadyForQuery that ends the skipped group.
	for {
		h, err := wire.PeekHeader(b.r, 0)
		if err != nil {
			return false, err
		}
		if h.Type == 'A' || h.Type == 'S' {
			if err := wire.Forward(s.w, b.r, h); err != nil {
				return false, err
			}
			continue
		}
		if err := wire.Discard(b.r, h); err != nil {
			return false, err
		}
		if h.Type == 'Z' {
			break
		}
	}
	s.mu.Lock()
	g = &s.mu.groups[0]
	g.params = false // the session's settings are on the backend already
	g.ops = append(g.ops[:0],
		stmtOp{kind: '3', injected: true, stmt: cs, had: true},
		stmtOp{kind: '1', injected: true, stmt: cs})
	if refresh := s.srv.dialer.refresh(b, time.Now(), s.tenantSettings()); refresh != nil {
		_, _ = b.w.Write(refresh)
	}
	g.injected = b.localStmts
	s.mu.Unlock()
	_, _ = b.w.Write(b.injectLocal)
	buf := appendFrame(nil, 'C', []byte{'S'}, cs.server, nil)
	buf = appendFrame(buf, 'P', nil, cs.server, cs.rest)
	_, _ = b.w.Write(buf)
	_, _ = b.w.Write(s.replans.frames)
	s.replans.ok = false // once
	if err := b.w.Flush(); err != nil {
		return false, err
	}
	s.log.Debug().Msg("re-prepared a statement whose result type changed, and ran it again")
	return true, nil
}
