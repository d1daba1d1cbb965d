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
		// The client's reply goes out before any housekeeping round trip;
		// the backend goes back to the pool as soon as it is clean.
		readBack, prepared := s.paramsToReadBack(), s.preparedToReadBack()
		var flushErr error
		if b.sessionContext || readBack || prepared {
			flushErr = s.w.Flush()
		}
		if b.sessionContext {
			err = resetSessionContext(b)
		}
		if err == nil && readBack && !s.readBackParams(b) {
			b.dropped = true // its settings are unknown: not reused
		}
		if prepared && (err != nil || !s.readBackPrepared(b)) {
			s.dropPendingSQLPrepares()
			b.dropped = true
		}
		// A cancel signal still on its way would hit the next client's
		// query; once delivered, it finds the backend idle, and PostgreSQL
		// ignores it.
		att.cancels.Wait()
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
	s.dropPendingSQLPrepares()
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
	if !closing {
		s.conn.Close() // ends run's read; a closing run reports its own error first
	}
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
			inject, injected, params, inFlight := injectNone, 0, false, len(s.mu.groups) > 0
			if inFlight {
				g := &s.mu.groups[0]
				inject, injected, params = g.inject, g.injected, g.params
			}
			s.mu.Unlock()
			groupStart = !inFlight
			if params {
				if err := s.skipInjected(b, injectParams, 0); err != nil {
					return err
				}
			}
			if inject != injectNone {
				if err := s.skipInjected(b, inject, injected); err != nil {
					return err
				}
				continue
			}
			if params {
				continue
			}
		}
		switch h.Type {
		case 'E':
			if err := fatalBackendError(b, h); err != nil {
				return err
			}
			s.auditBackendError(b, h)
			if replanned, err := s.replan(b, h); err != nil {
				return err
			} else if replanned {
				groupStart = true
				continue
			}
			if renamed, err := s.clientNamesInError(b, h); err != nil {
				return err
			} else if renamed {
				continue
			}
		case 'S':
			if wire.Fits(b.r, h) {
				if frame, err := wire.PeekFrame(b.r, h); err == nil {
					s.noteParameterStatus(b, frame)
				}
			}
		case '1', '3':
			s.mu.Lock()
			injected := s.stmtReplyLocked(h.Type)
			s.mu.Unlock()
			if injected {
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
		readyAt := time.Now()
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
		var answered group
		if len(s.mu.groups) > 0 {
			g := &s.mu.groups[0]
			if g.txControl {
				s.mu.unsure--
			}
			s.undoStmtOpsLocked(b, g)
			answered = *g
			s.mu.groups = append(s.mu.groups[:0], s.mu.groups[1:]...)
		}
		s.mu.status = status
		if status != 'I' && len(s.mu.groups) == 0 {
			s.armIdleInTxLocked()
		}
		// In session mode the backend stays, unless a client dropped the
		// proxy's own statements on it.
		detach := len(s.mu.groups) == 0 && status == 'I' && !s.mu.closing && (!s.sessionMode || b.dropped)
		if detach {
			s.mu.att = nil
		}
		s.mu.cond.Broadcast()
		s.mu.Unlock()
		s.wmu.Unlock()
		if !answered.sentAt.IsZero() {
			m, took := s.srv.metrics, readyAt.Sub(answered.sentAt)
			m.backend.Observe(took.Seconds())
			if sink := s.srv.cfg.SlowQueries; sink != nil && answered.sql != "" && took >= s.srv.cfg.SlowQueryThreshold {
				sink.Offer(s.key.Database, s.key.Tenant, answered.sql)
			}
			m.overhead.Observe((answered.in + time.Since(readyAt)).Seconds())
			s.stats.queries.Add(1)
		}
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
func (s *session) skipInjected(b *backendConn, kind injectKind, statements int) error {
	completes := 0
	for {
		h, err := wire.PeekHeader(b.r, 0)
		if err != nil {
			return err
		}
		switch h.Type {
		case '1', '2', '3', 'N', 'D': // '1', '3': a token refresh (see context.go)
			if err := wire.Discard(b.r, h); err != nil {
				return err
			}
		case 'S', 'A':
			// A setting the proxy applied: the client hears of it only if
			// the value is news to it.
			if h.Type == 'S' && wire.Fits(b.r, h) {
				if frame, err := wire.PeekFrame(b.r, h); err == nil && !s.noteParameterStatus(b, frame) {
					if err := wire.Discard(b.r, h); err != nil {
						return err
					}
					continue
				}
			}
			if err := wire.Forward(s.w, b.r, h); err != nil {
				return err
			}
		case 'C':
			if err := wire.Discard(b.r, h); err != nil {
				return err
			}
			if completes++; (kind == injectLocal || kind == injectBlock) && completes == statements {
				return nil
			}
			// injectSession waits for its ReadyForQuery; injectParams may
			// have more set_config calls before it.
		case 'Z':
			if err := wire.Discard(b.r, h); err != nil {
				return err
			}
			if kind == injectSession || kind == injectParams {
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

// settingError is an ErrorResponse PostgreSQL gave to a housekeeping query.
type settingError struct{ code, msg string }

func (e *settingError) Error() string { return e.msg + " (SQLSTATE " + e.code + ")" }

// resetSessionContext undoes a session-level context before the backend is
// reused, synchronously: this runs after the client already has its reply.
func resetSessionContext(b *backendConn) error {
	if _, err := roundTrip(b, b.resetQuery); err != nil {
		return err
	}
	b.sessionContext = false
	return nil
}

// queryRow runs a one-row simple query on an idle backend and returns the
// row's values (nil for NULL).
func queryRow(b *backendConn, sql string) ([][]byte, error) {
	msg, err := (&pgproto3.Query{String: sql}).Encode(nil)
	if err != nil {
		return nil, err
	}
	return roundTrip(b, msg)
}

// roundTrip sends msg, a simple Query, to an idle backend and reads the
// replies up to ReadyForQuery, returning the last DataRow's values. It is
// for the proxy's own housekeeping between clients.
func roundTrip(b *backendConn, msg []byte) ([][]byte, error) {
	_ = b.conn.SetDeadline(time.Now().Add(DefaultCancelTimeout))
	defer b.conn.SetDeadline(time.Time{})
	if _, err := b.w.Write(msg); err != nil {
		return nil, err
	}
	if err := b.w.Flush(); err != nil {
		return nil, err
	}
	var row [][]byte
	var failed error
	var buf []byte
	for {
		h, err := wire.PeekHeader(b.r, 0)
		if err != nil {
			return nil, err
		}
		frame, err := wire.ReadFrame(b.r, h, &buf)
		if err != nil {
			return nil, err
		}
		body := wire.Body(frame)
		switch h.Type {
		case 'D':
			var dr pgproto3.DataRow
			if err := dr.Decode(body); err != nil {
				return nil, err
			}
			row = make([][]byte, len(dr.Values))
			for i, v := range dr.Values {
				if v != nil {
					row[i] = append([]byte{}, v...)
				}
			}
		case 'E':
			_, msg, code := wire.ErrorFields(body)
			if failed == nil {
				failed = &settingError{code: code, msg: msg}
			}
		case 'Z':
			if h.BodyLen != 1 || body[0] != 'I' {
				return nil, errors.New("backend not idle after a housekeeping query")
			}
			return row, failed
		}
	}
}
