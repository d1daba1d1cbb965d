package proxy

import (
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/pgtenant/pgtenant/pgerr"
	"github.com/pgtenant/pgtenant/proxy/wire"
)

var aLongTimeAgo = time.Unix(1, 0)

// errInjection marks a failure of a message the proxy injected.
var errInjection = errors.New("injected message failed")

// errClientWrite marks a failed write to the client socket, so that the
// pump can tell a vanished client from a vanished backend.
type errClientWrite struct{ error }

func (e errClientWrite) Unwrap() error { return e.error }

// clientWriter is the client socket as the session's buffered writer sees it:
// its errors are marked as the client's.
type clientWriter struct{ s *session }

func (w clientWriter) Write(p []byte) (int, error) {
	n, err := w.s.conn.Write(p)
	if err != nil {
		err = errClientWrite{err}
	}
	return n, err
}

// pumpAll serves the attachments run hands over until run closes pumpCh.
func (s *session) pumpAll() {
	for att := range s.pumpCh {
		s.pump(att)
		s.pumpDone <- struct{}{}
	}
}

// pump copies the backend's replies to the client as raw frames, swallowing
// the replies to injected messages, until the transaction ends (then it
// releases the backend) or either side fails (then it destroys it).
func (s *session) pump(att *attachment) {
	b := att.b
	err := s.pumpLoop(b)
	s.mu.Lock()
	released := s.mu.att != att // detached cleanly by pumpLoop
	closing := s.mu.closing
	if !released {
		s.mu.att = nil
		s.mu.groups = s.mu.groups[:0]
		s.mu.unsure = 0
		s.mu.closing = true
		s.mu.cond.Broadcast()
	}
	shutdown := s.mu.shutdown
	s.mu.Unlock()

	if released {
		// The client's reply goes out first; the backend goes back to the
		// pool as soon as it is clean.
		var flushErr error
		if b.sessionContext {
			flushErr = s.w.Flush()
			err = resetSessionContext(b)
		}
		b.releasedAt = time.Now()
		if err == nil && !b.dropped && b.r.Buffered() == 0 {
			att.lease.Release()
		} else {
			att.lease.Destroy()
		}
		if flushErr == nil {
			flushErr = s.w.Flush()
		}
		if flushErr != nil || shutdown {
			_ = s.conn.SetReadDeadline(aLongTimeAgo) // wake run to end the session
		}
		return
	}

	att.lease.Destroy()
	var cw errClientWrite
	switch {
	case closing:
		// run ended the session and closed the backend; nothing to report.
	case errors.As(err, &cw):
		s.log.Debug().Err(err).Msg("client went away mid-transaction")
	default:
		var pe *pgerr.Error
		if errors.Is(err, errInjection) {
			pe = pgerr.NewFatal(pgerr.InternalError, "injection_failed", "pgtenant could not set the tenant context for this transaction").Wrap(err)
		} else {
			pe = pgerr.NewFatal(pgerr.ConnectionFailure, "backend_lost", "the connection to the database server was lost; the transaction was rolled back").
				WithHint("Reconnect and retry the transaction.").Wrap(err)
			var bf errBackendFatal
			if errors.As(err, &bf) {
				pe.Detail = bf.Error()
			}
		}
		s.log.Warn().Str("sqlstate", pe.Code).Str("reason", pe.Reason).Err(err).Msg(pe.Message)
		s.writeError(pe)
		_ = s.w.Flush()
	}
	s.conn.Close() // ends run's read
}

// pumpLoop returns nil after a clean detach, an error otherwise.
func (s *session) pumpLoop(b *backendConn) error {
	groupStart := true
	for {
		h, err := wire.PeekHeader(b.r, 0)
		if err != nil {
			return err
		}
		if groupStart {
			// The first reply of a sync group: skip what answers the
			// injected context first. With no group in flight the message
			// is asynchronous (a notice, a parameter change) and the next
			// one may still start a group.
			s.mu.Lock()
			inject, inFlight := injectNone, len(s.mu.groups) > 0
			if inFlight {
				inject = s.mu.groups[0].inject
			}
			s.mu.Unlock()
			groupStart = !inFlight
			if inject != injectNone {
				if err := s.skipInjected(b, inject); err != nil {
					return err
				}
				continue
			}
		}
		switch h.Type {
		case 'E':
			if err := fatalBackendError(b, h); err != nil {
				return err
			}
		case '1':
			if s.injectedParseComplete() {
				if err := wire.Discard(b.r, h); err != nil {
					return err
				}
				continue
			}
		}
		if h.Type != 'Z' {
			if err := wire.Forward(s.w, b.r, h); err != nil {
				return err
			}
			if b.r.Buffered() < wire.HeaderLen {
				if err := s.w.Flush(); err != nil {
					return err
				}
			}
			continue
		}
		frame, err := wire.PeekFrame(b.r, h)
		if err != nil || h.BodyLen != 1 {
			return fmt.Errorf("malformed ReadyForQuery from backend: %v", err)
		}
		status := frame[wire.HeaderLen]
		if _, err := s.w.Write(frame); err != nil {
			return err
		}
		_ = wire.Discard(b.r, h)
		groupStart = true

		// wmu: run may be writing a message that is not part of a group
		// (CopyData, Flush) to this backend; it must finish before the
		// backend can go back to the pool.
		s.wmu.Lock()
		s.mu.Lock()
		if len(s.mu.groups) > 0 {
			g := &s.mu.groups[0]
			if g.txControl {
				s.mu.unsure--
			}
			// Parses skipped after an error, or failed, prepared nothing.
			for _, p := range g.parses[g.completed:] {
				b.stmts.set(p.stmt, false)
			}
			s.mu.groups = append(s.mu.groups[:0], s.mu.groups[1:]...)
		}
		s.mu.status = status
		detach := len(s.mu.groups) == 0 && status == 'I' && !s.mu.closing
		if detach {
			s.mu.att = nil
		}
		s.mu.cond.Broadcast()
		s.mu.Unlock()
		s.wmu.Unlock()
		if detach {
			return nil
		}
		if b.r.Buffered() < wire.HeaderLen {
			if err := s.w.Flush(); err != nil {
				return err
			}
		}
	}
}

// injectedParseComplete matches a ParseComplete to the Parse it answers and
// reports whether that Parse was one the proxy injected.
func (s *session) injectedParseComplete() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.mu.groups) == 0 {
		return false
	}
	g := &s.mu.groups[0]
	if g.completed >= len(g.parses) {
		return false
	}
	g.completed++
	return g.parses[g.completed-1].injected
}

// errBackendFatal is a FATAL or PANIC error from PostgreSQL: the backend is
// about to close the connection.
type errBackendFatal struct{ msg, code string }

func (e errBackendFatal) Error() string {
	return "PostgreSQL ended the connection: " + e.msg + " (SQLSTATE " + e.code + ")"
}

// fatalBackendError looks at an ErrorResponse before it is forwarded: a
// FATAL one is not passed on as is, since the client's connection to
// pgtenant outlives any one backend; the session reports the lost backend
// instead.
func fatalBackendError(b *backendConn, h wire.Header) error {
	if !wire.Fits(b.r, h) {
		return nil
	}
	frame, err := wire.PeekFrame(b.r, h)
	if err != nil {
		return err
	}
	sev, msg, code := wire.ErrorFields(wire.Body(frame))
	if sev != "FATAL" && sev != "PANIC" {
		return nil
	}
	_ = wire.Discard(b.r, h)
	return errBackendFatal{msg: msg, code: code}
}

// skipInjected consumes the backend's replies to one injected context
// statement: BindComplete, any notices (PostgreSQL warns that SET LOCAL
// outside a transaction block has no effect beyond the implicit
// transaction), the DataRow of the set_config form, CommandComplete and, for
// the synced form, ReadyForQuery.
// Asynchronous ParameterStatus and NotificationResponse pass through.
func (s *session) skipInjected(b *backendConn, kind injectKind) error {
	for {
		h, err := wire.PeekHeader(b.r, 0)
		if err != nil {
			return err
		}
		switch h.Type {
		case '2', 'N', 'D':
			if err := wire.Discard(b.r, h); err != nil {
				return err
			}
		case 'S', 'A':
			if err := wire.Forward(s.w, b.r, h); err != nil {
				return err
			}
		case 'C':
			if err := wire.Discard(b.r, h); err != nil {
				return err
			}
			if kind == injectLocal {
				return nil
			}
		case 'Z':
			if err := wire.Discard(b.r, h); err != nil {
				return err
			}
			if kind == injectSession {
				return nil
			}
			return fmt.Errorf("%w: unexpected ReadyForQuery", errInjection)
		case 'E':
			var buf []byte
			frame, err := wire.ReadFrame(b.r, h, &buf)
			if err != nil {
				return err
			}
			var er pgproto3.ErrorResponse
			if err := er.Decode(wire.Body(frame)); err != nil {
				return fmt.Errorf("%w: undecodable error", errInjection)
			}
			return fmt.Errorf("%w: %s (SQLSTATE %s)", errInjection, er.Message, er.Code)
		default:
			return fmt.Errorf("%w: unexpected message type %q", errInjection, h.Type)
		}
	}
}

// resetSessionContext undoes a session-level context before the backend is
// reused, synchronously: this runs after the client already has its reply.
func resetSessionContext(b *backendConn) error {
	_ = b.conn.SetDeadline(time.Now().Add(DefaultCancelTimeout))
	defer b.conn.SetDeadline(time.Time{})
	if _, err := b.w.Write(b.resetQuery); err != nil {
		return err
	}
	if err := b.w.Flush(); err != nil {
		return err
	}
	for {
		h, err := wire.PeekHeader(b.r, 0)
		if err != nil {
			return err
		}
		frame, err := wire.PeekFrame(b.r, h)
		if err != nil {
			return err
		}
		status := byte(0)
		if h.Type == 'Z' && h.BodyLen == 1 {
			status = frame[wire.HeaderLen]
		}
		isErr := h.Type == 'E'
		if err := wire.Discard(b.r, h); err != nil {
			return err
		}
		if isErr {
			return errors.New("RESET of the session context failed")
		}
		if h.Type == 'Z' {
			if status != 'I' {
				return errors.New("backend not idle after RESET")
			}
			b.sessionContext = false
			return nil
		}
	}
}
