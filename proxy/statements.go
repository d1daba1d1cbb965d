package proxy

import (
	"bytes"
	"strconv"
	"strings"
	"sync/atomic"

	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/pgtenant/pgtenant/proxy/wire"
)

// Named prepared statements under transaction pooling.
//
// A client's statement lives on whichever backends served its transactions,
// so the proxy keeps each client's Parse and gives the statement a name of
// its own on the backends, "pgt_<session>_<n>". Before a Bind or a Describe
// of a statement that the current backend has not seen, the proxy sends the
// Parse again and swallows its ParseComplete. The unnamed statement is
// carried the same way, so drivers that Parse in one transaction and Bind in
// the next (pgx's describe modes) work too. Close, DEALLOCATE and DISCARD ALL
// change only the client's own view.

// serverStmtPrefix starts every statement name pgtenant creates on backends.
const serverStmtPrefix = "pgt_"

// unknownStmt replaces a client statement name that pgtenant would map to
// another client's statement: PostgreSQL then reports that it does not exist.
const unknownStmt = "pgtenant_unknown_statement"

var sessionIDs atomic.Uint64

// clientStmt is a statement a client prepared.
type clientStmt struct {
	server string    // name on backends; "" for the unnamed statement
	rest   []byte    // the Parse body after the name: query, parameter types
	flags  stmtFlags // what scanSQL found in the query
	// refuse, when set, is the SQL raising the error the statement is
	// refused with: the session state it would create (see state.go), or
	// the guard's rule (see guard.go). Its Binds are pointed at it.
	refuse string
}

// stmtOp is a Parse or Close the proxy wrote to the backend in a sync group,
// in order. PostgreSQL answers each with ParseComplete or CloseComplete, or
// skips it after an error until the Sync; the pump matches the replies to the
// ops and, at the group's ReadyForQuery, undoes the ops that did not happen,
// so the client's view of its statements follows what PostgreSQL did.
type stmtOp struct {
	kind     byte        // '1' (Parse) or '3' (Close)
	injected bool        // a Parse the proxy added: its ParseComplete is swallowed
	stmt     *clientStmt // the statement parsed or closed; nil for a portal or unknown name
	name     string      // the client's name for stmt
	prev     *clientStmt // the client's statement under name before the op
	had      bool        // Close: the backend had stmt
	taken    bool        // Parse of a name in use: fails, changes nothing
	done     bool
}

// backendStmts is what one backend connection has prepared for clients.
// Guarded by the mutex of the session that holds the backend.
type backendStmts struct {
	has     map[string]*clientStmt // by server statement name
	unnamed *clientStmt            // the client statement the unnamed statement holds
	used    map[string]uint64      // when each named one was last bound, for LRU
	clock   uint64
}

// touch records a use of cs on the backend.
func (bs *backendStmts) touch(cs *clientStmt) {
	if cs.server == "" {
		return
	}
	if bs.used == nil {
		bs.used = map[string]uint64{}
	}
	bs.clock++
	bs.used[cs.server] = bs.clock
}

// victim returns the named statement used longest ago.
func (bs *backendStmts) victim() *clientStmt {
	var oldest *clientStmt
	var at uint64
	for name, cs := range bs.has {
		if u := bs.used[name]; oldest == nil || u < at {
			oldest, at = cs, u
		}
	}
	return oldest
}

func (bs *backendStmts) prepared(cs *clientStmt) bool {
	if cs.server == "" {
		return bs.unnamed == cs
	}
	return bs.has[cs.server] != nil
}

func (bs *backendStmts) set(cs *clientStmt, ok bool) {
	if cs.server == "" {
		if ok {
			bs.unnamed = cs
		} else if bs.unnamed == cs {
			bs.unnamed = nil
		}
		return
	}
	if ok {
		if bs.has == nil {
			bs.has = map[string]*clientStmt{}
		}
		bs.has[cs.server] = cs
		bs.touch(cs)
	} else {
		delete(bs.has, cs.server)
		delete(bs.used, cs.server)
	}
}

// lookupStmtLocked returns the client's statement called name, or nil.
func (s *session) lookupStmtLocked(name string) *clientStmt {
	if name == "" {
		return s.unnamed
	}
	return s.stmts[name]
}

// setStmtLocked makes cs the client's statement called name (nil removes it).
func (s *session) setStmtLocked(name string, cs *clientStmt) {
	switch {
	case name == "":
		s.unnamed = cs
	case cs == nil:
		delete(s.stmts, name)
	default:
		if s.stmts == nil {
			s.stmts = map[string]*clientStmt{}
		}
		s.stmts[name] = cs
	}
}

// newStmtLocked makes a statement for a client's Parse of name.
func (s *session) newStmtLocked(name string, rest []byte, flags stmtFlags) *clientStmt {
	cs := &clientStmt{rest: append([]byte(nil), rest...), flags: flags, refuse: s.refusal}
	if flags&flagSessionState != 0 && !s.sessionMode && cs.refuse == "" {
		if kind := sessionStateKind(parseQuery(rest)); kind != "" {
			cs.refuse = refuseSQL(kind)
		}
	}
	if name == "" {
		return cs
	}
	// Backend names are never reused, so no backend can hold a stale text
	// under one.
	if s.stmtSession == 0 {
		s.stmtSession = sessionIDs.Add(1)
	}
	s.nextStmt++
	cs.server = serverStmtPrefix + strconv.FormatUint(s.stmtSession, 36) + "_" + strconv.Itoa(s.nextStmt)
	return cs
}

// forgetStatements applies DEALLOCATE and DISCARD ALL in a client's SQL to
// its own view of its statements.
func (s *session) forgetStatements(sql []byte) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, stmt := range strings.Split(string(sql), ";") {
		fields := strings.Fields(stmt)
		switch {
		case len(fields) >= 2 && strings.EqualFold(fields[0], "DISCARD") && strings.EqualFold(fields[1], "ALL"):
			s.stmts, s.unnamed = nil, nil
		case len(fields) >= 2 && strings.EqualFold(fields[0], "DEALLOCATE"):
			name, ok := deallocateTarget(stmt)
			switch {
			case !ok:
			case name == "":
				s.stmts = nil // DEALLOCATE ALL
			default:
				delete(s.stmts, name)
			}
		}
	}
}

// dropsProxyStatements reports whether a DEALLOCATE, DISCARD or PREPARE
// text may drop the statements pgtenant prepared on the backend: ALL, or a
// name of pgtenant's. A session-mode client keeps its backend otherwise.
func dropsProxyStatements(sql []byte) bool {
	for _, w := range sqlWords(sql) {
		lw := strings.ToLower(w)
		if lw == "all" || strings.HasPrefix(lw, "pgtenant_") || strings.HasPrefix(lw, serverStmtPrefix) {
			return true
		}
	}
	return false
}

// deallocateTarget returns the statement name of one DEALLOCATE statement,
// folded as PostgreSQL folds identifiers, or "" for DEALLOCATE ALL.
func deallocateTarget(stmt string) (string, bool) {
	fields := strings.Fields(stmt)
	rest := strings.TrimSpace(strings.TrimSpace(stmt)[len(fields[0]):])
	if len(fields) >= 3 && strings.EqualFold(fields[1], "PREPARE") {
		rest = strings.TrimSpace(rest[len(fields[1]):])
	}
	if strings.EqualFold(rest, "ALL") {
		return "", true
	}
	return sqlIdentifier(rest)
}

// mapStatement rewrites a Parse, Bind, Describe or Close for the attached
// backend. It returns the frame to send and, when the backend lacks the
// statement, a Parse to send before it. Called by run after admit, with the
// message's sync group open in s.mu.groups.
func (s *session) mapStatement(b *backendConn, typ byte, frame []byte) (out, pre []byte, err error) {
	body := wire.Body(frame)
	s.mu.Lock()
	defer s.mu.Unlock()
	g := &s.mu.groups[len(s.mu.groups)-1]
	switch typ {
	case 'P':
		name, rest, err := wire.CString(body)
		if err != nil {
			return nil, nil, err
		}
		if old := s.lookupStmtLocked(name); old != nil && name != "" {
			// The name is taken: PostgreSQL answers 42P05, and does here,
			// for the client's statement's backend name, which the backend
			// is made to have first.
			server, pre := s.ensurePreparedLocked(b, g, name)
			g.ops = append(g.ops, stmtOp{kind: '1', taken: true})
			return s.rebuild('P', nil, server, rest), pre, nil
		}
		cs := s.newStmtLocked(name, rest, scanSQL(parseQuery(rest)))
		pre := s.evictLocked(b, g, cs, s.preBuf[:0])
		g.ops = append(g.ops, stmtOp{kind: '1', stmt: cs, name: name, prev: s.lookupStmtLocked(name)})
		s.setStmtLocked(name, cs)
		b.stmts.set(cs, true)
		if len(pre) == 0 {
			pre = nil
		}
		s.preBuf = pre
		return s.rebuild('P', nil, cs.server, rest), pre, nil
	case 'B':
		portal, rest, err := wire.CString(body)
		if err != nil {
			return nil, nil, err
		}
		name, rest, err := wire.CString(rest)
		if err != nil {
			return nil, nil, err
		}
		if cs := s.lookupStmtLocked(name); cs != nil && cs.refuse != "" {
			// Bind the portal to the refusal instead, without parameters:
			// Execute then raises 0A000 from the backend.
			rs := s.refusalLocked(cs.refuse)
			pre := s.prepareLocked(b, g, rs)
			return s.rebuild('B', body[:len(portal)+1], rs.server, []byte{0, 0, 0, 0, 0, 0}), pre, nil
		}
		server, pre := s.ensurePreparedLocked(b, g, name)
		return s.rebuild('B', body[:len(portal)+1], server, rest), pre, nil
	case 'D', 'C':
		if len(body) < 2 || body[0] != 'S' {
			if typ == 'C' {
				g.ops = append(g.ops, stmtOp{kind: '3'}) // a portal
			}
			return frame, nil, nil // portals are per transaction: nothing to map
		}
		name, _, err := wire.CString(body[1:])
		if err != nil {
			return nil, nil, err
		}
		if typ == 'D' {
			server, pre := s.ensurePreparedLocked(b, g, name)
			return s.rebuild('D', []byte{'S'}, server, nil), pre, nil
		}
		cs := s.lookupStmtLocked(name)
		server := s.serverNameLocked(name)
		op := stmtOp{kind: '3', stmt: cs, name: name, prev: cs}
		if cs != nil {
			op.had = b.stmts.prepared(cs)
			s.setStmtLocked(name, nil)
			b.stmts.set(cs, false)
		}
		g.ops = append(g.ops, op)
		return s.rebuild('C', []byte{'S'}, server, nil), nil, nil
	}
	return frame, nil, nil
}

// serverNameLocked is the backend name for the client's statement name.
func (s *session) serverNameLocked(name string) string {
	if cs := s.lookupStmtLocked(name); cs != nil {
		return cs.server
	}
	if proxyStmtName(name) {
		return unknownStmt // never another client's statement, nor the proxy's own
	}
	return name // unknown: PostgreSQL says it does not exist, by the client's name
}

// proxyStmtName reports whether name is one pgtenant gives statements on
// backends: its clients' (pgt_...) and its own (pgtenant_ctx_local ...). A
// client that could Bind or Close those could set any setting without the
// guard, or drop the tenant context.
func proxyStmtName(name string) bool {
	return strings.HasPrefix(name, serverStmtPrefix) || strings.HasPrefix(name, "pgtenant_")
}

// ensurePreparedLocked returns the backend name of the client's statement
// and, if the backend does not have it yet, the Parse that prepares it.
func (s *session) ensurePreparedLocked(b *backendConn, g *group, name string) (string, []byte) {
	cs := s.lookupStmtLocked(name)
	if cs == nil {
		if name == "" {
			// The backend's unnamed statement may be another client's.
			return unknownStmt, nil
		}
		return s.serverNameLocked(name), nil
	}
	return cs.server, s.prepareLocked(b, g, cs)
}

// prepareLocked returns the Parse that prepares cs on b, or nil if b has it.
// When b is at its statement limit, the Parse comes after a Close of the
// statement bound longest ago (its CloseComplete is swallowed too).
func (s *session) prepareLocked(b *backendConn, g *group, cs *clientStmt) []byte {
	if cs.rest == nil {
		// An SQL PREPARE whose types are not read back yet: this backend
		// had it, unless evicted, and PostgreSQL says which.
		return nil
	}
	if b.stmts.prepared(cs) {
		b.stmts.touch(cs)
		return nil
	}
	s.preBuf = s.evictLocked(b, g, cs, s.preBuf[:0])
	g.ops = append(g.ops, stmtOp{kind: '1', injected: true, stmt: cs})
	b.stmts.set(cs, true)
	s.preBuf = appendFrame(s.preBuf, 'P', nil, cs.server, cs.rest)
	return s.preBuf
}

// evictLocked appends to buf, when b is at its statement limit and cs is a
// named statement about to be prepared, a Close of the statement bound
// longest ago; its CloseComplete is swallowed.
func (s *session) evictLocked(b *backendConn, g *group, cs *clientStmt, buf []byte) []byte {
	if cs.server == "" || len(b.stmts.has) < s.srv.cfg.MaxBackendStatements {
		return buf
	}
	old := b.stmts.victim()
	if old == nil {
		return buf
	}
	g.ops = append(g.ops, stmtOp{kind: '3', injected: true, stmt: old, had: true})
	b.stmts.set(old, false)
	return appendFrame(buf, 'C', []byte{'S'}, old.server, nil)
}

// refusalLocked returns the statement that runs the refusal sql, made once
// per session and prepared on backends like a client's.
func (s *session) refusalLocked(sql string) *clientStmt {
	if rs := s.refusals[sql]; rs != nil {
		return rs
	}
	if s.refusals == nil {
		s.refusals = map[string]*clientStmt{}
	}
	rest := append([]byte(sql), 0, 0, 0)
	saved := s.refusal
	s.refusal = ""
	rs := s.newStmtLocked(refuseStmt, rest, 0)
	s.refusal = saved
	s.refusals[sql] = rs
	return rs
}

// stmtReplyLocked matches a ParseComplete or CloseComplete to its op and
// reports whether the proxy injected that op (so the reply is not the
// client's).
func (s *session) stmtReplyLocked(kind byte) bool {
	if len(s.mu.groups) == 0 {
		return false
	}
	g := &s.mu.groups[0]
	for i := range g.ops {
		if op := &g.ops[i]; op.kind == kind && !op.done {
			op.done = true
			return op.injected
		}
	}
	return false
}

// undoStmtOpsLocked undoes, newest first, the ops of a finished group that
// PostgreSQL skipped or refused.
func (s *session) undoStmtOpsLocked(b *backendConn, g *group) {
	for i := len(g.ops) - 1; i >= 0; i-- {
		op := g.ops[i]
		if op.done || op.stmt == nil {
			continue
		}
		switch op.kind {
		case '1':
			b.stmts.set(op.stmt, false)
			if !op.injected {
				s.setStmtLocked(op.name, op.prev)
			}
		case '3':
			if !op.injected {
				s.setStmtLocked(op.name, op.prev)
			}
			if op.had {
				b.stmts.set(op.stmt, true)
			}
		}
	}
}

// mapDeallocate rewrites a simple Query that is just DEALLOCATE of one of
// the client's protocol-level statements to use its backend name (after
// preparing it on this backend if needed), as psycopg does when its
// statement cache overflows. It returns ok=false for anything else.
func (s *session) mapDeallocate(b *backendConn, sql []byte) (frame, pre []byte, ok bool) {
	text := strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(string(sql)), ";"))
	fields := strings.Fields(text)
	if len(fields) < 2 || !strings.EqualFold(fields[0], "DEALLOCATE") || strings.Contains(text, ";") {
		return nil, nil, false
	}
	name, ok := deallocateTarget(text)
	if !ok || name == "" {
		return nil, nil, false
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.lookupStmtLocked(name) == nil {
		return nil, nil, false
	}
	server, pre := s.ensurePreparedLocked(b, &s.mu.groups[len(s.mu.groups)-1], name)
	s.outBuf = appendFrame(s.outBuf[:0], 'Q', nil, "DEALLOCATE "+server, nil)
	return s.outBuf, pre, true
}

// sqlIdentifier parses one SQL identifier, quoted or not, that is all of s.
func sqlIdentifier(s string) (string, bool) {
	if strings.HasPrefix(s, `"`) {
		if len(s) < 2 || !strings.HasSuffix(s, `"`) {
			return "", false
		}
		inner := s[1 : len(s)-1]
		if strings.Contains(strings.ReplaceAll(inner, `""`, ""), `"`) {
			return "", false
		}
		return strings.ReplaceAll(inner, `""`, `"`), true
	}
	for _, c := range []byte(s) {
		if !isWordByte(c) {
			return "", false
		}
	}
	return strings.ToLower(s), s != ""
}

// clientNamesInError forwards an ErrorResponse that names one of the
// client's statements by its backend name with the client's name instead,
// as PostgreSQL would have written it. It reports whether it did so (the
// frame is then consumed).
func (s *session) clientNamesInError(b *backendConn, h wire.Header) (bool, error) {
	if !wire.Fits(b.r, h) {
		return false, nil
	}
	frame, err := wire.PeekFrame(b.r, h)
	if err != nil || !bytes.Contains(frame, []byte(`"`+serverStmtPrefix)) {
		return false, err
	}
	var er pgproto3.ErrorResponse
	if err := er.Decode(wire.Body(frame)); err != nil {
		return false, nil
	}
	s.mu.Lock()
	for name, cs := range s.stmts {
		er.Message = strings.ReplaceAll(er.Message, `"`+cs.server+`"`, `"`+name+`"`)
	}
	// Statements the client closed or replaced in messages still in flight.
	for _, g := range s.mu.groups {
		for _, op := range g.ops {
			if op.injected {
				continue // the proxy's own: it carries no client name
			}
			for _, cs := range []*clientStmt{op.stmt, op.prev} {
				if cs != nil && cs.server != "" {
					er.Message = strings.ReplaceAll(er.Message, `"`+cs.server+`"`, `"`+op.name+`"`)
				}
			}
		}
	}
	s.mu.Unlock()
	out, err := er.Encode(nil)
	if err != nil {
		return false, nil
	}
	if err := wire.Discard(b.r, h); err != nil {
		return false, err
	}
	_, err = s.w.Write(out)
	return true, err
}

// rebuild encodes a message with the statement name replaced, into a buffer
// of the session's (valid until the next rebuild).
func (s *session) rebuild(typ byte, head []byte, name string, tail []byte) []byte {
	s.outBuf = appendFrame(s.outBuf[:0], typ, head, name, tail)
	return s.outBuf
}

// appendFrame appends a message made of head, name as a C string, and tail.
func appendFrame(dst []byte, typ byte, head []byte, name string, tail []byte) []byte {
	n := 4 + len(head) + len(name) + 1 + len(tail)
	dst = append(dst, typ, byte(n>>24), byte(n>>16), byte(n>>8), byte(n))
	dst = append(dst, head...)
	dst = append(dst, name...)
	dst = append(dst, 0)
	return append(dst, tail...)
}

// parseQuery returns the query text of a Parse body after the name.
func parseQuery(rest []byte) []byte {
	for i, c := range rest {
		if c == 0 {
			return rest[:i]
		}
	}
	return rest
}
