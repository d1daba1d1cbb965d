package proxy

import (
	"strconv"
	"strings"

	"github.com/pgtenant/pgtenant/proxy/wire"

	"github.com/pgtenant/pgtenant/internal/sqllex"
)

// SQL-level prepared statements under transaction pooling.
//
// PREPARE, EXECUTE and DEALLOCATE name statements in the same namespace as
// the protocol's Parse and Bind, so the proxy maps them the same way: a
// client's PREPARE is rewritten to create the statement under a backend name
// of the client's, EXECUTE and DEALLOCATE are pointed at it (after preparing
// it on this backend if needed), and once the PREPARE's transaction ends the
// proxy reads the statement's parameter types back from
// pg_prepared_statements, so that later backends can get it with a protocol
// Parse like any other.

// sqlToken is a word or a double-quoted identifier in SQL text, found outside
// string literals and comments; or a single punctuation byte.
type sqlToken struct {
	start, end int  // the token's bytes in the text
	word       bool // an unquoted word: keyword or identifier
	quoted     bool // a "quoted identifier"
	punct      byte // otherwise the punctuation byte, or 0 for anything unreadable
}

// sqlLexer walks SQL text token by token, skipping whitespace, comments,
// string literals (standard, E”, dollar-quoted) and numbers.
type sqlLexer struct {
	sql []byte
	pos int
}

func (l *sqlLexer) next() (sqlToken, bool) {
	sql := l.sql
	for l.pos < len(sql) {
		i := l.pos
		c := sql[i]
		switch {
		case isSpace(c):
			l.pos++
		case c == '-' && i+1 < len(sql) && sql[i+1] == '-':
			for l.pos < len(sql) && sql[l.pos] != '\n' {
				l.pos++
			}
		case c == '/' && i+1 < len(sql) && sql[i+1] == '*':
			if l.pos = sqllex.SkipBlockComment(sql, i); l.pos < 0 {
				l.pos = len(sql)
			}
		case c == '\'':
			l.pos = skipString(sql, i+1, false)
		case (c == 'e' || c == 'E') && i+1 < len(sql) && sql[i+1] == '\'':
			l.pos = skipString(sql, i+2, true)
		case c == '"':
			j := i + 1
			for j < len(sql) {
				if sql[j] == '"' {
					if j+1 < len(sql) && sql[j+1] == '"' {
						j += 2
						continue
					}
					break
				}
				j++
			}
			l.pos = min(j+1, len(sql))
			return sqlToken{start: i, end: l.pos, quoted: true}, true
		case c == '$':
			if end, ok := skipDollarQuote(sql, i); ok {
				l.pos = end
				continue
			}
			l.pos++ // a parameter such as $1: its digits follow
			for l.pos < len(sql) && sql[l.pos] >= '0' && sql[l.pos] <= '9' {
				l.pos++
			}
		case c >= '0' && c <= '9':
			for l.pos < len(sql) && (isWordByte(sql[l.pos]) || sql[l.pos] == '.') {
				l.pos++
			}
		case isWordByte(c):
			j := i
			for j < len(sql) && isWordByte(sql[j]) {
				j++
			}
			l.pos = j
			return sqlToken{start: i, end: j, word: true}, true
		default:
			l.pos++
			return sqlToken{start: i, end: i + 1, punct: c}, true
		}
	}
	return sqlToken{}, false
}

// skipString returns the end of a literal whose body starts at i.
func skipString(sql []byte, i int, backslash bool) int {
	for i < len(sql) {
		switch sql[i] {
		case '\\':
			if backslash {
				i += 2
				continue
			}
		case '\'':
			if i+1 < len(sql) && sql[i+1] == '\'' {
				i += 2
				continue
			}
			return i + 1
		}
		i++
	}
	return len(sql)
}

// skipDollarQuote returns the end of a $tag$...$tag$ literal starting at i.
func skipDollarQuote(sql []byte, i int) (int, bool) {
	j := i + 1
	if j < len(sql) && sql[j] >= '0' && sql[j] <= '9' {
		return 0, false
	}
	for j < len(sql) && sql[j] != '$' {
		if !isWordByte(sql[j]) || sql[j] == '$' {
			return 0, false
		}
		j++
	}
	if j >= len(sql) {
		return 0, false
	}
	tag := sql[i : j+1]
	for k := j + 1; k+len(tag) <= len(sql); k++ {
		if sql[k] == '$' && string(sql[k:k+len(tag)]) == string(tag) {
			return k + len(tag), true
		}
	}
	return len(sql), true
}

// identName returns the name a word or quoted identifier token stands for,
// folded as PostgreSQL folds identifiers.
func identName(sql []byte, t sqlToken) (string, bool) {
	switch {
	case t.word:
		return strings.ToLower(string(sql[t.start:t.end])), true
	case t.quoted && t.end-t.start >= 2 && sql[t.end-1] == '"':
		// U&"..." arrives as the word U, '&' and this token; its name is
		// not decoded, and the caller's fallback applies.
		return strings.ReplaceAll(string(sql[t.start+1:t.end-1]), `""`, `"`), true
	}
	return "", false
}

// sqlPrepare is an SQL PREPARE whose parameter types the proxy reads back
// from the backend once its transaction has ended.
type sqlPrepare struct {
	cs   *clientStmt
	body []byte // the statement after AS
}

// rewriteSQLNamesLocked points the PREPARE, EXECUTE and DEALLOCATE
// statements in a client's SQL at the client's backend names. It returns
// the rewritten text (nil when nothing changed), the Parses the backend needs
// first, and whether every PREPARE was understood (when not, the backend is
// not reused, as the statement would stay on it under the client's name).
func (s *session) rewriteSQLNamesLocked(b *backendConn, g *group, sql []byte) (out, pre []byte, ok bool) {
	l := sqlLexer{sql: sql}
	ok = true
	var prev sqlToken // the token before tok
	stmtStart := true // tok starts a statement
	last := 0         // sql[:last] is copied to out already
	replace := func(t sqlToken, name string) {
		out = append(out, sql[last:t.start]...)
		out = append(out, name...)
		last = t.end
	}
	for {
		tok, more := l.next()
		if !more {
			break
		}
		start := stmtStart
		stmtStart = tok.punct == ';'
		if !tok.word {
			prev = tok
			continue
		}
		switch {
		case start && wordIs(sql[tok.start:tok.end], "PREPARE"):
			nameTok, _ := l.next()
			if nameTok.word && wordIs(sql[nameTok.start:nameTok.end], "TRANSACTION") {
				prev = nameTok
				continue
			}
			name, named := identName(sql, nameTok)
			body, bodyOK := prepareBody(&l)
			stmtStart = l.pos >= len(sql) || sql[l.pos-1] == ';'
			if !named || !bodyOK {
				ok = false // U&"..." names, or text PostgreSQL will reject anyway
				continue
			}
			if old := s.lookupStmtLocked(name); old != nil {
				// Taken: PostgreSQL reports 42P05 for the backend name,
				// which the backend is made to have first.
				pre = append(pre, s.prepareLocked(b, g, old)...)
				replace(nameTok, old.server)
				continue
			}
			cs := s.newStmtLocked(name, nil, scanSQL(body))
			s.setStmtLocked(name, cs)
			b.stmts.set(cs, true)
			s.mu.sqlPrepares = append(s.mu.sqlPrepares, sqlPrepare{cs: cs, body: body})
			replace(nameTok, cs.server)
		case wordIs(sql[tok.start:tok.end], "EXECUTE") && !(prev.word && wordIs(sql[prev.start:prev.end], "GRANT")):
			nameTok, _ := l.next()
			name, named := identName(sql, nameTok)
			if nameTok.word && name == "u" && l.pos < len(sql) && sql[l.pos] == '&' {
				// U&"\0070gt_..." spells any name: never one pgtenant made.
				l.next()
				quoted, _ := l.next()
				nameTok.end = max(quoted.end, l.pos)
				replace(nameTok, unknownStmt)
				prev = nameTok
				continue
			}
			if !named {
				prev = nameTok
				continue
			}
			if cs := s.lookupStmtLocked(name); cs != nil && name != "" {
				pre = append(pre, s.prepareLocked(b, g, cs)...)
				replace(nameTok, cs.server)
			} else if proxyStmtName(name) {
				replace(nameTok, unknownStmt) // never another client's statement, nor the proxy's
			}
			prev = nameTok
			continue
		}
		prev = tok
	}
	if out == nil {
		return nil, pre, ok
	}
	return append(out, sql[last:]...), pre, ok
}

// prepareBody reads the rest of a PREPARE after its name: an optional list
// of parameter types, AS, and the statement up to the end of the PREPARE.
func prepareBody(l *sqlLexer) ([]byte, bool) {
	tok, ok := l.next()
	if ok && tok.punct == '(' {
		for depth := 1; depth > 0; {
			if tok, ok = l.next(); !ok {
				return nil, false
			}
			switch tok.punct {
			case '(':
				depth++
			case ')':
				depth--
			}
		}
		tok, ok = l.next()
	}
	if !ok || !tok.word || !wordIs(l.sql[tok.start:tok.end], "AS") {
		return nil, false
	}
	start := tok.end
	end := len(l.sql)
	for {
		t, more := l.next()
		if !more {
			break
		}
		if t.punct == ';' {
			end = t.start
			break
		}
	}
	body := []byte(strings.TrimSpace(string(l.sql[start:end])))
	return body, len(body) > 0
}

// preparedToReadBack reports whether the transaction that just ended ran
// SQL PREPAREs whose parameter types the proxy must read back.
func (s *session) preparedToReadBack() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.mu.sqlPrepares) > 0
}

// readBackPrepared completes the SQL-prepared statements of the transaction
// that just ended from pg_prepared_statements on the idle backend, so that
// other backends can prepare them with a protocol Parse. A PREPARE that
// failed left nothing there and is forgotten. It returns false when the
// backend must not be reused.
func (s *session) readBackPrepared(b *backendConn) bool {
	s.mu.Lock()
	pending := s.mu.sqlPrepares
	s.mu.sqlPrepares = nil
	s.mu.Unlock()
	for i, p := range pending {
		row, err := queryRow(b, "SELECT pg_catalog.array_to_string(parameter_types::pg_catalog.oid[], ',') "+
			"FROM pg_catalog.pg_prepared_statements WHERE name = '"+p.cs.server+"'")
		if err != nil {
			s.forgetSQLPrepares(b, pending[i:])
			return false
		}
		if row == nil {
			s.forgetSQLPrepares(b, pending[i:i+1])
			continue
		}
		var oids []string
		if len(row[0]) > 0 {
			oids = strings.Split(string(row[0]), ",")
		}
		rest := append(append([]byte(nil), p.body...), 0, byte(len(oids)>>8), byte(len(oids)))
		for _, o := range oids {
			n, err := strconv.ParseUint(o, 10, 32)
			if err != nil {
				s.forgetSQLPrepares(b, pending[i:])
				return false
			}
			rest = append(rest, byte(n>>24), byte(n>>16), byte(n>>8), byte(n))
		}
		s.mu.Lock()
		p.cs.rest = rest
		s.mu.Unlock()
	}
	return true
}

// forgetSQLPrepares forgets SQL-prepared statements the backend does not
// hold, or whose types could not be read; b may be nil when it is gone.
func (s *session) forgetSQLPrepares(b *backendConn, ps []sqlPrepare) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, p := range ps {
		if b != nil {
			b.stmts.set(p.cs, false)
		}
		for name, c := range s.stmts {
			if c == p.cs {
				delete(s.stmts, name)
			}
		}
	}
}

// dropPendingSQLPrepares forgets the SQL PREPAREs of a transaction whose
// backend was lost before their types were read.
func (s *session) dropPendingSQLPrepares() {
	s.mu.Lock()
	pending := s.mu.sqlPrepares
	s.mu.sqlPrepares = nil
	s.mu.Unlock()
	s.forgetSQLPrepares(nil, pending)
}

// mapSQLNames rewrites the statement names in a Query or Parse for the
// attached backend (see rewriteSQLNamesLocked) and returns the frame to send
// and the Parses to send before it; keep is false when the backend must not
// be reused.
func (s *session) mapSQLNames(b *backendConn, typ byte, frame []byte) (out, pre []byte, keep bool) {
	body := wire.Body(frame)
	var name, sql, tail []byte
	if typ == 'P' {
		n, rest, err := wire.CString(body)
		if err != nil {
			return frame, nil, true // mapStatement reports it
		}
		name, sql, tail = []byte(n), parseQuery(rest), rest[len(parseQuery(rest)):]
	} else {
		sql = parseQuery(body)
		tail = body[len(sql):]
	}
	s.mu.Lock()
	text, pre, keep := s.rewriteSQLNamesLocked(b, &s.mu.groups[len(s.mu.groups)-1], sql)
	s.mu.Unlock()
	if text == nil {
		return frame, pre, keep
	}
	n := 4 + len(text) + len(tail)
	if typ == 'P' {
		n += len(name) + 1
	}
	out = append(s.namesBuf[:0], typ, byte(n>>24), byte(n>>16), byte(n>>8), byte(n))
	if typ == 'P' {
		out = append(append(out, name...), 0)
	}
	out = append(append(out, text...), tail...)
	s.namesBuf = out
	return out, pre, keep
}
