package proxy

import (
	"bufio"
	"context"
	"errors"
	"io"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5/pgproto3"
	"github.com/rs/zerolog"

	"github.com/pgtenant/pgtenant/auth"
	"github.com/pgtenant/pgtenant/pgerr"
	"github.com/pgtenant/pgtenant/poolmgr"
	"github.com/pgtenant/pgtenant/proxy/wire"
)

const (
	clientReadBuffer  = 16 << 10
	clientWriteBuffer = 16 << 10
	// maxKeptScratch is the largest buffer for client messages that do not
	// fit clientReadBuffer that a session keeps between messages.
	maxKeptScratch = 1 << 20
)

// injectKind says what the proxy put ahead of a sync group's messages.
type injectKind uint8

const (
	injectNone    injectKind = iota
	injectLocal              // Bind+Execute of the SET LOCALs, unsynced
	injectBlock              // the same as SET LOCAL, ahead of a BEGIN with transaction modes (see backendConn.injectBlock)
	injectSession            // a Query of session-level SETs
	injectParams             // Bind+Execute of set_config per setting, then Sync
)

// group is one sync group in flight: the client messages up to and including
// a Sync, Query or FunctionCall, each of which the backend answers with
// exactly one ReadyForQuery.
type group struct {
	params    bool // a synced unit setting session parameters comes first
	inject    injectKind
	injected  int           // CommandCompletes that answer the injected context
	readAt    time.Time     // when its first message was read
	in        time.Duration // from then until its last message was written to the backend
	sentAt    time.Time     // when its last message was written to the backend
	sql       string        // with Config.SlowQueries: the statement it runs (see noteSQL)
	txControl bool          // some message in it may open or close a transaction block
	inBlock   bool          // its context is injected inside a transaction block (after a BEGIN)
	ended     bool          // its Sync/Query/FunctionCall has been sent
	ops       []stmtOp      // Parses and Closes, in order
}

// attachment is a backend serving the session for the current transaction.
// The pump goroutine owns the lease: it releases or destroys it, exactly once.
type attachment struct {
	lease *poolmgr.Lease[*backendConn]
	b     *backendConn
	// cancels counts cancel requests being delivered to b; the pump waits
	// for them before b goes back to the pool, so a cancel meant for this
	// client never reaches another client's query on the same backend.
	cancels sync.WaitGroup
}

// session is one client connection. Two goroutines serve it: run reads the
// client and writes to the attached backend; pump reads the backend and
// writes to the client. pump is started at the first transaction and serves
// one attachment after another, handed over on pumpCh; it reports the end of
// each on pumpDone and exits when run closes pumpCh. The client writer s.w
// belongs to pump while it serves an attachment and to run otherwise (run
// calls waitPump before touching it). The session closes the client socket
// when run returns.
type session struct {
	srv          *Server
	conn         net.Conn
	r            *bufio.Reader
	w            *bufio.Writer
	log          zerolog.Logger
	id           auth.Identity
	key          poolmgr.Key
	cancelPID    uint32 // the BackendKeyData pgtenant issued
	cancelSecret [4]byte
	tls          bool
	sawProbe     bool
	// sessionMode keeps one backend for the whole session (pool mode
	// "session"): session state works, and nothing is refused.
	sessionMode bool

	ctx    context.Context
	cancel context.CancelFunc

	// wmu is held by run while it writes to the attached backend, and by
	// pump while it decides to detach at a ReadyForQuery: the reply to a
	// message can arrive before the Flush that sent it returns, and a
	// message that belongs to no sync group (CopyData, Flush) keeps nothing
	// attached. So run never touches a backend that went back to the pool.
	wmu sync.Mutex

	// Fields below are used by run only.
	scratch       []byte
	inGroup       bool                   // a sync group is open on the attached backend
	skipUntilSync bool                   // an error was reported mid extended-protocol sequence
	pumpCh        chan *attachment       // nil until the pump goroutine starts
	pumpDone      chan struct{}          // one value per attachment served
	pumpBusy      bool                   // an attachment was handed over and its end not yet received
	stmtSession   uint64                 // for backend statement names; set at the first named Parse
	stmts         map[string]*clientStmt // the client's named statements
	unnamed       *clientStmt            // the client's unnamed statement (stmts and unnamed: guarded by mu)
	nextStmt      int
	outBuf        []byte                 // a rewritten message
	preBuf        []byte                 // an injected Parse
	sqlBuf        []byte                 // a copy of the client's SQL, kept while its frame is rewritten
	namesBuf      []byte                 // a Query or Parse with SQL statement names rewritten
	replans       replanState            // the latest group, for a retry (guarded by wmu)
	refusals      map[string]*clientStmt // statements raising a refusal, by its SQL (guarded by mu)
	refusal       string                 // the guard's refusal of the message being forwarded, or ""
	startup       map[string]string      // session settings from the startup packet; read-only after login
	paramBuf      []byte                 // the pending session-parameter unit
	pendingParams []byte                 // set by admit for forward
	pendingCtx    []byte                 // set by admit for forward: context statements re-prepared
	readAt        time.Time              // when the message being forwarded was read
	stats         *tenantStats           // the tenant's counters, once logged in
	waiting       atomic.Bool            // waiting for a pool connection
	// org is the tenant the session counts against, once admitted (guarded
	// by srv.mu).
	org string

	mu struct {
		sync.Mutex
		cond     sync.Cond
		att      *attachment
		groups   []group      // in flight, oldest first
		status   byte         // status of the last ReadyForQuery
		unsure   int          // groups in flight with txControl
		closing  bool         // the client is gone or the session is ending
		shutdown bool         // the server is shutting down
		ended    *pgerr.Error // set by terminate: what the client is told
		admitted uint64       // sync groups admitted so far; see armIdleInTxLocked
		// ctxDeferred: the open transaction has no context yet; the
		// next group that executes gets it (see admit).
		ctxDeferred bool

		params        map[string]string // the client's session settings
		paramsVersion uint64            // bumped when params change
		refresh       map[string]bool   // settings to read back when the transaction ends
		resetAll      bool              // the client ran RESET ALL or DISCARD ALL
		paramsLost    bool              // the client ran set_config: the backend cannot be reused
		sqlPrepares   []sqlPrepare      // SQL PREPAREs whose types are read back when the transaction ends
		replanning    bool              // the pump is sending a group again (see replan.go)
		reported      map[string]string // ParameterStatus values the client has been sent
	}
}

func newSession(srv *Server, c net.Conn) *session {
	s := &session{srv: srv, conn: c}
	s.ctx, s.cancel = context.WithCancel(context.Background())
	newClientIO(s)
	s.log = srv.log.With().Str("client_addr", c.RemoteAddr().String()).Logger()
	s.mu.cond.L = &s.mu.Mutex
	s.mu.status = 'I'
	return s
}

// waitPump waits until the pump has finished with the last attachment it
// was given, and so let go of the client writer.
func (s *session) waitPump() {
	if s.pumpBusy {
		<-s.pumpDone
		s.pumpBusy = false
	}
}

// run serves the session to its end and closes the client socket.
func (s *session) run() {
	defer s.conn.Close()
	defer s.cancel()
	defer func() {
		if s.pumpCh != nil {
			close(s.pumpCh)
		}
	}()
	err := s.login(s.ctx)
	if err == nil {
		err = s.serve()
	}
	s.finish(err)
}

// finish reports err to the client when it is worth reporting and lets go
// of any attached backend.
func (s *session) finish(err error) {
	s.mu.Lock()
	s.mu.closing = true
	att := s.mu.att
	shutdown, ended := s.mu.shutdown, s.mu.ended
	s.mu.Unlock()
	if att != nil {
		// Mid-transaction: the backend is dirty. The pump destroys it.
		if s.busy() {
			att.b.cancel(DefaultCancelTimeout)
		}
		att.b.Close()
		s.cancel()
	}
	s.waitPump()
	if err == nil || errors.Is(err, errNoStartup) {
		return
	}
	if ended != nil {
		err = ended
	} else if shutdown && isTimeout(err) {
		err = pgerr.NewFatal(pgerr.AdminShutdown, "shutdown", "terminating connection due to administrator command").
			WithDetail("pgtenant is shutting down.")
	}
	var pe *pgerr.Error
	if !errors.As(err, &pe) {
		if !isEOF(err) {
			s.log.Debug().Err(err).Msg("client connection ended")
		}
		return
	}
	ev := s.log.Info()
	if pe.Code == pgerr.InternalError {
		ev = s.log.Error()
	}
	ev.Str("sqlstate", pe.Code).Str("reason", pe.Reason).Err(pe.Err).Msg(pe.Message)
	s.writeError(pe)
	_ = s.w.Flush()
}

func (s *session) busy() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.mu.groups) > 0
}

// writeError sends err as an ErrorResponse; for a non-fatal error it is the
// caller's job to follow with ReadyForQuery. The caller must own s.w.
func (s *session) writeError(err error) {
	buf, _ := pgerr.WireError(err).Encode(s.w.AvailableBuffer())
	_, _ = s.w.Write(buf)
}

// serve is the transaction-pooling loop: it reads client messages and
// forwards them to the tenant's backend, attaching one when a transaction
// starts.
func (s *session) serve() error {
	for {
		h, err := wire.PeekHeader(s.r, s.srv.cfg.MaxMessageSize)
		s.readAt = time.Now()
		if err != nil {
			if errors.Is(err, wire.ErrTooLarge) {
				return pgerr.NewFatal(pgerr.ProgramLimitExceeded, "message_too_large", "message too large").
					WithDetail(err.Error()).WithHint("Raise client.max_message_size, or send the data with COPY.")
			}
			if !isEOF(err) && !isTimeout(err) && !errors.Is(err, net.ErrClosed) {
				return pgerr.NewFatal(pgerr.ProtocolViolation, "protocol_violation", "invalid message from client").Wrap(err)
			}
			return err
		}
		switch h.Type {
		case 'X':
			return nil
		case 'd', 'c', 'f', 'H':
			// COPY data is only meaningful while a COPY runs and is ignored
			// otherwise, as PostgreSQL ignores it outside COPY; Flush only
			// matters while a backend is attached.
			if err := s.forwardLoose(h); err != nil {
				return err
			}
			continue
		case 'Q', 'P', 'B', 'D', 'E', 'C', 'S', 'F':
		default:
			return pgerr.NewFatal(pgerr.ProtocolViolation, "protocol_violation",
				"invalid frontend message type "+quoteByte(h.Type))
		}
		frame, err := wire.ReadFrame(s.r, h, &s.scratch)
		if err != nil {
			return err
		}
		if s.skipUntilSync {
			if h.Type == 'S' {
				s.skipUntilSync = false
				if err := s.writeReady('I'); err != nil {
					return err
				}
			}
			continue
		}
		flags, err := s.classify(h.Type, wire.Body(frame))
		if err != nil {
			return err
		}
		err = s.forward(h.Type, frame, flags)
		if cap(s.scratch) > maxKeptScratch {
			s.scratch = nil // a rare large message: do not hold its memory for the session's life
		}
		if err != nil {
			var pe *pgerr.Error
			if errors.As(err, &pe) && !pe.Fatal() {
				// Could not get a backend: report it like PostgreSQL reports
				// a failed statement, and keep the session.
				s.waitPump()
				s.writeError(pe)
				switch h.Type {
				case 'Q', 'F', 'S':
					err = s.writeReady('I')
				default:
					s.skipUntilSync = true
					err = s.w.Flush()
				}
				if err != nil {
					return err
				}
				continue
			}
			return err
		}
	}
}

// classify scans the SQL in Query and Parse messages, and remembers what it
// found for Binds of the same statement.
func (s *session) classify(typ byte, body []byte) (stmtFlags, error) {
	s.refusal = ""
	switch typ {
	case 'Q':
		text, err := wire.QueryText(body)
		if err != nil {
			return 0, pgerr.NewFatal(pgerr.ProtocolViolation, "protocol_violation", err.Error())
		}
		if s.refusal = s.guardRefusal(text); s.refusal != "" {
			return 0, nil // nothing of the text runs
		}
		return scanSQL(text), nil
	case 'P':
		_, text, err := wire.ParseText(body)
		if err != nil {
			return 0, pgerr.NewFatal(pgerr.ProtocolViolation, "protocol_violation", err.Error())
		}
		if s.refusal = s.guardRefusal(text); s.refusal != "" {
			return 0, nil // the statement's Binds are refused (see mapStatement)
		}
		return scanSQL(text), nil
	case 'F':
		s.refusal = s.functionCallRefusal(body)
	case 'B':
		name, err := wire.BindStatement(body)
		if err != nil {
			return 0, pgerr.NewFatal(pgerr.ProtocolViolation, "protocol_violation", err.Error())
		}
		s.mu.Lock()
		cs := s.lookupStmtLocked(name)
		s.mu.Unlock()
		if cs != nil {
			return cs.flags, nil
		}
		return flagTxControl, nil // unknown statement: assume the worst
	}
	return 0, nil
}

// forward sends one client message to the backend, attaching a backend and
// injecting the tenant context first when the message starts a transaction.
func (s *session) forward(typ byte, frame []byte, flags stmtFlags) error {
	terminal := typ == 'S' || typ == 'Q' || typ == 'F'
	first := !s.inGroup // the message starts a sync group
	att, inject, err := s.admit(typ, flags, terminal)
	if err != nil || att == nil {
		return err
	}
	if s.srv.cfg.SlowQueries != nil {
		s.noteSQL(typ, frame)
	}
	b := att.b
	var pre []byte
	var clientSQL []byte // the client's text, for what depends on it after a rewrite
	if flags&flagDropsStatements != 0 {
		clientSQL = append(s.sqlBuf[:0], sqlText(typ, frame)...)
		s.sqlBuf = clientSQL
	}
	if s.refusal != "" && (typ == 'Q' || typ == 'F') {
		frame = raiseQuery(s.refusal)
	}
	switch typ {
	case 'Q':
		// PostgreSQL drops the unnamed statement at every simple Query.
		s.mu.Lock()
		if s.unnamed != nil {
			b.stmts.set(s.unnamed, false)
			s.unnamed = nil
		}
		s.mu.Unlock()
		if flags&flagSessionState != 0 && !s.sessionMode {
			sql, _ := wire.QueryText(wire.Body(frame))
			if kind := sessionStateKind(sql); kind != "" {
				frame, flags = raiseQuery(refuseSQL(kind)), 0
			}
		}
		if flags&flagDropsStatements != 0 {
			if f, p, ok := s.mapDeallocate(b, clientSQL); ok {
				frame, pre = f, p
			}
			s.forgetStatements(clientSQL)
		}
	}
	var sqlPre []byte // what the rewrite of SQL-level statement names needs on the backend first
	keep := true
	if flags&flagSQLNames != 0 && !s.sessionMode && (typ == 'Q' || typ == 'P') {
		frame, sqlPre, keep = s.mapSQLNames(b, typ, frame)
	}
	switch typ {
	case 'P', 'B', 'D', 'C':
		if frame, pre, err = s.mapStatement(b, typ, frame); err != nil {
			return pgerr.NewFatal(pgerr.ProtocolViolation, "protocol_violation", "malformed message").Wrap(err)
		}
	}
	if sqlPre != nil {
		pre = append(sqlPre, pre...)
	}
	if flags&flagSessionSet != 0 && !s.sessionMode { // a session-mode backend keeps its settings
		s.noteSessionSets(sqlText(typ, frame))
	}
	// The group bookkeeping keeps the backend attached until this message
	// is answered, but the answer can arrive before Flush returns: wmu makes
	// the pump wait for this goroutine to let go of b.w before it releases b.
	s.wmu.Lock()
	if s.pendingParams != nil {
		_, _ = b.w.Write(s.pendingParams)
		s.pendingParams = nil
	}
	switch inject {
	case injectLocal, injectBlock:
		if s.pendingCtx != nil {
			_, _ = b.w.Write(s.pendingCtx)
		}
		if inject == injectBlock {
			_, _ = b.w.Write(b.injectBlock)
		} else {
			_, _ = b.w.Write(b.injectLocal)
		}
	case injectSession:
		_, _ = b.w.Write(s.srv.dialer.sessionContextQuery(b, time.Now()))
		b.sessionContext = true
	}
	if !keep || flags&flagDropsStatements != 0 && (!s.sessionMode || dropsProxyStatements(clientSQL)) {
		b.dropped = true
	}
	if pre != nil {
		_, _ = b.w.Write(pre)
	}
	_, err = b.w.Write(frame)
	s.replans.note(typ, frame, first)
	if err == nil && s.r.Buffered() < wire.HeaderLen {
		err = b.w.Flush()
	}
	s.wmu.Unlock()
	if err != nil {
		return s.backendWriteFailed(att, err)
	}
	return nil
}

// sqlText returns the SQL of a Query or Parse frame.
func sqlText(typ byte, frame []byte) []byte {
	var sql []byte
	if typ == 'Q' {
		sql, _ = wire.QueryText(wire.Body(frame))
	} else if typ == 'P' {
		_, sql, _ = wire.ParseText(wire.Body(frame))
	}
	return sql
}

// admit records the message in the session's group bookkeeping and returns
// the backend to write it to and what to inject ahead of it. It returns a nil
// attachment when the proxy answered the message itself.
func (s *session) admit(typ byte, flags stmtFlags, terminal bool) (*attachment, injectKind, error) {
	executes := typ != 'S'
	// COMMIT or ROLLBACK AND CHAIN starts a transaction without the context.
	chains := flags&(flagChain|flagTxControl) == flagChain|flagTxControl
	s.mu.Lock()
	for {
		if s.inGroup {
			att := s.mu.att
			if att == nil { // the backend was lost; the pump reports it
				s.mu.Unlock()
				return nil, injectNone, errBackendGone
			}
			g := &s.mu.groups[len(s.mu.groups)-1]
			if flags&flagTxControl != 0 && !g.txControl {
				g.txControl = true
				s.mu.unsure++
			}
			if chains {
				s.mu.ctxDeferred = true
			}
			if terminal {
				g.ended = true
				s.inGroup = false
				g.sentAt = time.Now()
				g.in = g.sentAt.Sub(g.readAt)
			}
			s.mu.Unlock()
			return att, injectNone, nil
		}
		// First message of a new sync group. If an earlier group in flight
		// may have opened or closed a transaction block, wait for its
		// ReadyForQuery: only then is it known whether this one starts a new
		// transaction.
		if executes && s.mustWaitLocked() {
			// What was written so far must reach the backend, or the
			// answer we wait for never comes.
			s.mu.Unlock()
			if err := s.flushBackend(); err != nil {
				return nil, injectNone, err
			}
			s.mu.Lock()
			for s.mustWaitLocked() {
				s.mu.cond.Wait()
			}
		}
		if s.mu.closing {
			s.mu.Unlock()
			return nil, injectNone, errBackendGone
		}
		if att := s.mu.att; att != nil {
			g := group{txControl: flags&flagTxControl != 0, ended: terminal, readAt: s.readAt}
			if terminal {
				g.sentAt = time.Now()
				g.in = g.sentAt.Sub(g.readAt)
			}
			s.pendingParams, s.pendingCtx = nil, nil
			s.mu.admitted++
			if executes && s.mu.status == 'I' && s.sessionMode {
				// A session-mode client keeps its backend: its token is
				// checked at each transaction instead of each attach.
				if err := s.checkExpiry(); err != nil {
					s.mu.Unlock()
					return nil, injectNone, err
				}
			}
			deferred := s.mu.ctxDeferred
			if executes {
				s.mu.ctxDeferred = false
			}
			switch {
			case executes && s.mu.status == 'I':
				s.stats.transactions.Add(1)
				s.pendingParams = s.paramUnitLocked(att.b)
				g.params = s.pendingParams != nil
				switch {
				case typ == 'Q' && flags&flagBegin != 0:
					// A BEGIN on its own: the context goes ahead of the
					// transaction's next statement, inside the block, so
					// that SET TRANSACTION can still follow the BEGIN.
					s.mu.ctxDeferred = true
				case flags&flagOwnTransaction != 0:
					g.inject = injectSession
				case g.txControl && flags&flagTxModes != 0:
					g.inject = injectBlock
				default:
					g.inject = injectLocal
				}
			case executes && deferred && s.mu.status == 'T':
				// The first statement after a BEGIN or a CHAIN. If it sets
				// transaction modes, the SET LOCALs, which take no snapshot;
				// otherwise the one set_config SELECT.
				g.inject = cond(flags&flagTxModes != 0, injectBlock, injectLocal)
				g.inBlock = true
			}
			if g.inject == injectLocal || g.inject == injectBlock {
				s.pendingCtx = s.srv.dialer.refresh(att.b, time.Now(), s.tenantSettings())
				g.injected = cond(g.inject == injectBlock, att.b.blockStmts, att.b.localStmts)
			}
			if chains {
				s.mu.ctxDeferred = true
			}
			s.mu.groups = append(s.mu.groups, g)
			if g.txControl {
				s.mu.unsure++
			}
			s.inGroup = !terminal
			s.mu.Unlock()
			return att, g.inject, nil
		}
		s.mu.Unlock()
		// Detached: no transaction is open.
		if typ == 'S' {
			return nil, injectNone, s.writeReady('I')
		}
		if err := s.attach(); err != nil {
			return nil, injectNone, err
		}
		s.mu.Lock()
	}
}

var errBackendGone = errors.New("backend connection lost")

// mustWaitLocked reports whether a new sync group has to wait for the
// replies in flight before the proxy can decide what to inject: when an
// earlier group may have opened or closed a transaction block, or may have
// deallocated the context statements (the backend is then closed when it
// goes idle, and the group gets a fresh one).
func (s *session) mustWaitLocked() bool {
	att := s.mu.att
	if att == nil || len(s.mu.groups) == 0 {
		return false
	}
	if s.mu.unsure > 0 || att.b.dropped || s.mu.replanning {
		return true
	}
	// A Parse or Close in flight may yet be skipped; what the client's
	// statement names mean is known when its group is answered.
	for i := range s.mu.groups {
		if len(s.mu.groups[i].ops) > 0 {
			return true
		}
	}
	return false
}

// attach takes a backend from the tenant's pool and starts its pump.
func (s *session) attach() error {
	if err := s.checkExpiry(); err != nil {
		return err
	}
	s.waiting.Store(true)
	start := time.Now()
	lease, err := s.acquireLive()
	s.stats.wait.observe(time.Since(start))
	s.waiting.Store(false)
	if err != nil {
		var pe *pgerr.Error
		if errors.As(err, &pe) && pe.Code == pgerr.TooManyConnections {
			s.stats.waitTimeouts.Add(1)
		}
		return err
	}
	s.waitPump() // the pump has let go of the client writer
	att := &attachment{lease: lease, b: lease.Conn()}

	s.mu.Lock()
	if s.mu.closing {
		s.mu.Unlock()
		lease.Release()
		return errBackendGone
	}
	s.mu.att = att
	s.mu.status = 'I'
	s.mu.Unlock()
	if s.pumpCh == nil {
		s.pumpCh = make(chan *attachment)
		s.pumpDone = make(chan struct{}, 1)
		go s.pumpAll()
	}
	s.pumpCh <- att
	s.pumpBusy = true
	return nil
}

// checkExpiry ends the session at a transaction boundary once its token
// has expired, when the server is configured to.
func (s *session) checkExpiry() error {
	exp := s.id.ExpiresAt
	if !s.srv.cfg.ExpireSessions || exp.IsZero() || time.Now().Before(exp.Add(s.srv.cfg.TokenLeeway)) {
		return nil
	}
	return pgerr.NewFatal(pgerr.InvalidPassword, "session_token_expired",
		"the token of this session expired at "+exp.UTC().Format(time.RFC3339)).
		WithHint("Reconnect with a new token.")
}

// maxDeadAcquires bounds how many dead idle connections one attach discards
// before giving up; each one is replaced by a fresh dial in the pool.
const maxDeadAcquires = 4

// acquireLive takes a backend whose connection is still alive, discarding
// idle connections that PostgreSQL closed while they sat in the pool.
func (s *session) acquireLive() (*poolmgr.Lease[*backendConn], error) {
	for i := 0; ; i++ {
		lease, err := s.srv.pools.Acquire(s.ctx, s.key)
		if err != nil {
			return nil, err
		}
		b := lease.Conn()
		if time.Since(b.releasedAt) < aliveCheckAfter || b.alive() || i == maxDeadAcquires {
			return lease, nil
		}
		s.log.Debug().Msg("discarded a backend connection that was closed while idle")
		lease.Destroy()
	}
}

// flushBackend sends what run has buffered for the attached backend, if
// one is attached.
func (s *session) flushBackend() error {
	s.wmu.Lock()
	s.mu.Lock()
	att := s.mu.att
	s.mu.Unlock()
	var err error
	if att != nil {
		err = att.b.w.Flush()
	}
	s.wmu.Unlock()
	if err != nil {
		return s.backendWriteFailed(att, err)
	}
	return nil
}

// backendWriteFailed handles a failed write to the backend: the pump will
// see the broken connection too and report it; run waits for that.
func (s *session) backendWriteFailed(att *attachment, err error) error {
	att.b.Close()
	s.waitPump()
	return errBackendGone
}

// forwardLoose forwards a message that belongs to no sync group
// (CopyData, CopyDone, CopyFail, Flush) to the attached backend, and discards
// it when none is attached.
func (s *session) forwardLoose(h wire.Header) error {
	s.wmu.Lock()
	s.mu.Lock()
	att := s.mu.att
	s.mu.Unlock()
	if att == nil || s.skipUntilSync {
		s.wmu.Unlock()
		return wire.Discard(s.r, h)
	}
	b := att.b
	err := wire.Forward(b.w, s.r, h)
	if err == nil && s.r.Buffered() < wire.HeaderLen {
		err = b.w.Flush()
	}
	s.wmu.Unlock()
	if err == nil || isEOF(err) {
		return err
	}
	return s.backendWriteFailed(att, err)
}

func (s *session) writeReady(status byte) error {
	s.waitPump()
	buf, _ := (&pgproto3.ReadyForQuery{TxStatus: status}).Encode(s.w.AvailableBuffer())
	if _, err := s.w.Write(buf); err != nil {
		return err
	}
	if s.r.Buffered() < wire.HeaderLen {
		return s.w.Flush()
	}
	return nil
}

// cancelBackend forwards a client's cancel request to the backend serving
// it, if it is running something, and reports whether it did.
func (s *session) cancelBackend() (sent bool) {
	s.mu.Lock()
	att := s.mu.att
	if att == nil || len(s.mu.groups) == 0 {
		s.mu.Unlock()
		return false // nothing running: nothing to cancel, as in PostgreSQL
	}
	att.cancels.Add(1)
	s.mu.Unlock()
	defer att.cancels.Done()
	att.b.cancel(DefaultCancelTimeout)
	return true
}

// terminateWriteGrace bounds the writes to a terminated session's client:
// one that does not read cannot hold the session open.
const terminateWriteGrace = 2 * time.Second

// terminate ends the session at once with err: a transaction in flight is
// rolled back (its backend connection is closed), and the client is told
// err. It is safe to call from any goroutine, more than once.
func (s *session) terminate(err *pgerr.Error) {
	s.mu.Lock()
	if s.mu.ended == nil {
		s.mu.ended = err
	}
	s.mu.Unlock()
	_ = s.conn.SetReadDeadline(aLongTimeAgo)
	_ = s.conn.SetWriteDeadline(time.Now().Add(terminateWriteGrace))
	s.cancel() // a pool wait
}

// armIdleInTxLocked ends the session with 25P03, as PostgreSQL's
// idle_in_transaction_session_timeout does, when the client leaves the
// transaction the backend just reported open without sending anything for
// the tenant's IdleInTransactionTimeout. Called by the pump, with s.mu held,
// at a ReadyForQuery in a transaction block with nothing in flight.
func (s *session) armIdleInTxLocked() {
	ts := s.tenantSettings()
	if ts == nil || ts.IdleInTransactionTimeout <= 0 {
		return
	}
	seen := s.mu.admitted
	time.AfterFunc(ts.IdleInTransactionTimeout, func() {
		s.mu.Lock()
		idle := s.mu.admitted == seen && !s.mu.closing && s.mu.status != 'I' && len(s.mu.groups) == 0
		s.mu.Unlock()
		if idle {
			s.terminate(pgerr.NewFatal(pgerr.IdleInTransactionTimeout, "idle_in_transaction_timeout",
				"terminating connection due to idle-in-transaction timeout").
				WithDetail("The transaction was left open for more than " + ts.IdleInTransactionTimeout.String() + "; it was rolled back.").
				WithHint("Commit or roll back transactions promptly; the tenant's idle_in_transaction_timeout is set in the tenant registry."))
		}
	})
}

// shutdown asks the session to end: at once if it is between transactions,
// else when its transaction ends.
func (s *session) shutdown() {
	s.mu.Lock()
	s.mu.shutdown = true
	idle := s.mu.att == nil
	s.mu.Unlock()
	if idle {
		_ = s.conn.SetReadDeadline(aLongTimeAgo)
	}
}

func isEOF(err error) bool {
	return errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) ||
		errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE) || errors.Is(err, net.ErrClosed)
}

func isTimeout(err error) bool { return errors.Is(err, os.ErrDeadlineExceeded) }

func quoteByte(b byte) string {
	if b >= 0x20 && b < 0x7f {
		return "'" + string(rune(b)) + "'"
	}
	return "0x" + string("0123456789abcdef"[b>>4]) + string("0123456789abcdef"[b&15])
}
