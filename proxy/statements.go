package proxy

import (
	"strconv"
	"strings"
	"sync/atomic"

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
}

// parseSent is a Parse the proxy wrote to the backend in a sync group, in
// order: the ParseComplete replies are matched to them to tell the ones the
// client asked for from the ones the proxy injected.
type parseSent struct {
	stmt     *clientStmt
	injected bool
}

// backendStmts is what one backend connection has prepared for clients.
// Guarded by the mutex of the session that holds the backend.
type backendStmts struct {
	has     map[string]bool // server statement names
	unnamed *clientStmt     // the client statement the unnamed statement holds
}

func (bs *backendStmts) prepared(cs *clientStmt) bool {
	if cs.server == "" {
		return bs.unnamed == cs
	}
	return bs.has[cs.server]
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
			bs.has = map[string]bool{}
		}
		bs.has[cs.server] = true
	} else {
		delete(bs.has, cs.server)
	}
}

// lookupStmt returns the client's statement called name, or nil.
func (s *session) lookupStmt(name string) *clientStmt {
	if name == "" {
		return s.unnamed
	}
	return s.stmts[name]
}

// rememberParse records a client's Parse and returns its statement.
func (s *session) rememberParse(name string, rest []byte, flags stmtFlags) *clientStmt {
	cs := &clientStmt{rest: append([]byte(nil), rest...), flags: flags}
	if name == "" {
		s.unnamed = cs
		return cs
	}
	// A Parse over an existing name replaces it (PostgreSQL would refuse
	// with 42P05): the statement gets a new backend name, so no backend can
	// hold a stale text under it.
	if s.stmts == nil {
		s.stmts = map[string]*clientStmt{}
		s.stmtSession = sessionIDs.Add(1)
	}
	s.nextStmt++
	cs.server = serverStmtPrefix + strconv.FormatUint(s.stmtSession, 36) + "_" + strconv.Itoa(s.nextStmt)
	s.stmts[name] = cs
	return cs
}

// forgetStatements applies DEALLOCATE and DISCARD ALL in a client's SQL to
// its own view of its statements.
func (s *session) forgetStatements(sql []byte) {
	words := strings.Fields(strings.NewReplacer(";", " ; ", "\"", " ").Replace(string(sql)))
	for i, w := range words {
		switch strings.ToUpper(w) {
		case "DISCARD":
			if i+1 < len(words) && strings.EqualFold(words[i+1], "ALL") {
				s.stmts, s.unnamed = nil, nil
			}
		case "DEALLOCATE":
			j := i + 1
			if j < len(words) && strings.EqualFold(words[j], "PREPARE") {
				j++
			}
			if j < len(words) {
				if strings.EqualFold(words[j], "ALL") {
					s.stmts = nil
				} else {
					delete(s.stmts, words[j])
				}
			}
		}
	}
}

// mapStatement rewrites a Parse, Bind, Describe or Close for the attached
// backend. It returns the frame to send and, when the backend lacks the
// statement, a Parse to send before it. Called by run after admit, with the
// message's sync group open in s.mu.groups.
func (s *session) mapStatement(b *backendConn, typ byte, frame []byte) (out, pre []byte, err error) {
	body := wire.Body(frame)
	switch typ {
	case 'P':
		name, rest, err := wire.CString(body)
		if err != nil {
			return nil, nil, err
		}
		cs := s.rememberParse(name, rest, scanSQL(parseQuery(rest)))
		s.mu.Lock()
		s.recordParseLocked(b, cs, false)
		s.mu.Unlock()
		return s.rebuild('P', nil, cs.server, rest), nil, nil
	case 'B':
		portal, rest, err := wire.CString(body)
		if err != nil {
			return nil, nil, err
		}
		name, rest, err := wire.CString(rest)
		if err != nil {
			return nil, nil, err
		}
		server, pre := s.ensurePrepared(b, name)
		return s.rebuild('B', body[:len(portal)+1], server, rest), pre, nil
	case 'D', 'C':
		if len(body) < 2 || body[0] != 'S' {
			return frame, nil, nil // portals are per transaction: nothing to map
		}
		name, _, err := wire.CString(body[1:])
		if err != nil {
			return nil, nil, err
		}
		if typ == 'C' {
			cs := s.lookupStmt(name)
			server := s.serverName(name)
			if cs != nil {
				if name == "" {
					s.unnamed = nil
				} else {
					delete(s.stmts, name)
				}
				s.mu.Lock()
				b.stmts.set(cs, false)
				s.mu.Unlock()
			}
			return s.rebuild('C', []byte{'S'}, server, nil), nil, nil
		}
		server, pre := s.ensurePrepared(b, name)
		return s.rebuild('D', []byte{'S'}, server, nil), pre, nil
	}
	return frame, nil, nil
}

// serverName is the backend name for the client's statement name.
func (s *session) serverName(name string) string {
	if cs := s.lookupStmt(name); cs != nil {
		return cs.server
	}
	if strings.HasPrefix(name, serverStmtPrefix) {
		return unknownStmt // never another client's statement
	}
	return name // unknown: PostgreSQL says it does not exist, by the client's name
}

// ensurePrepared returns the backend name of the client's statement and, if
// the backend does not have it yet, the Parse that prepares it.
func (s *session) ensurePrepared(b *backendConn, name string) (string, []byte) {
	cs := s.lookupStmt(name)
	if cs == nil {
		return s.serverName(name), nil
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if b.stmts.prepared(cs) {
		return cs.server, nil
	}
	s.recordParseLocked(b, cs, true)
	s.preBuf = appendFrame(s.preBuf[:0], 'P', nil, cs.server, cs.rest)
	return cs.server, s.preBuf
}

// recordParseLocked notes a Parse about to be written in the open group and
// marks the statement prepared on b; the pump undoes the mark if the Parse
// does not complete.
func (s *session) recordParseLocked(b *backendConn, cs *clientStmt, injected bool) {
	g := &s.mu.groups[len(s.mu.groups)-1]
	g.parses = append(g.parses, parseSent{stmt: cs, injected: injected})
	b.stmts.set(cs, true)
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
