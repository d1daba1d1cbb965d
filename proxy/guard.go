package proxy

import (
	"strings"
	"time"
	"unsafe"

	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/pgtenant/pgtenant/audit"
	"github.com/pgtenant/pgtenant/pgerr"
	"github.com/pgtenant/pgtenant/proxy/wire"
)

// StatementGuard classifies client SQL before it is forwarded (DESIGN.md
// contract 5); policies.Guard implements it. It must be safe for concurrent
// use.
type StatementGuard interface {
	// Check returns the rule that blocks sql for a tenant of database and
	// the message for the client, or an empty rule when sql may run. sql is
	// only valid during the call (it shares the session's read buffer):
	// what Check keeps, it copies.
	Check(database, tenant, sql string) (rule, message string)
	// Fingerprint returns sql normalized without literal values.
	Fingerprint(sql string) string
}

// Auditor receives audit events (DESIGN.md contract 6); audit.Log
// implements it. Record must not block.
type Auditor interface {
	Record(audit.Event)
}

// blockedHint is the hint of every guard refusal.
const blockedHint = "pgtenant's statement guard refuses what could reach another tenant's data or sessions; " +
	"the operator can allow a rule with guard.allow."

// guardRefusal returns the SQL that raises the guard's refusal of sql (in
// the backend, so that a transaction block is aborted and a pipeline skips
// to its Sync exactly as for any error), or "" when sql may run. The
// refusal is audited (the audit log also writes it to the log).
func (s *session) guardRefusal(sql []byte) string {
	g := s.srv.cfg.Guard
	if g == nil {
		return ""
	}
	if len(sql) == 0 {
		return ""
	}
	// No copy per statement: Check does not keep what it is given.
	text := unsafe.String(&sql[0], len(sql))
	rule, msg := g.Check(s.key.Database, s.id.Org, text)
	if rule == "" {
		return ""
	}
	// The event outlives the buffer: its fingerprint is made from a copy.
	s.audit(audit.ReasonBlockedStatement, rule, pgerr.InsufficientPrivilege, g.Fingerprint(strings.Clone(text)), "")
	return raiseSQL("insufficient_privilege", msg, blockedHint)
}

// raiseSQL is a statement that raises an error with the given condition
// name, message and hint. The texts are the proxy's own, but they may quote
// a setting name from the client, so they are made safe for the literal.
func raiseSQL(condition, msg, hint string) string {
	return "DO $pgtenant$BEGIN RAISE EXCEPTION USING ERRCODE = '" + condition + "', MESSAGE = '" +
		plainLiteral(msg) + "', HINT = '" + plainLiteral(hint) + "'; END$pgtenant$"
}

// plainLiteral drops the bytes that could end the literal or the dollar
// quote around it in raiseSQL, and doubles quotes.
func plainLiteral(s string) string {
	s = strings.Map(func(r rune) rune {
		if r == '\\' || r == '$' || r < ' ' {
			return -1
		}
		return r
	}, s)
	return strings.ReplaceAll(s, "'", "''")
}

// raiseQuery is a Query message running raiseSQL.
func raiseQuery(sql string) []byte {
	b, _ := (&pgproto3.Query{String: sql}).Encode(nil)
	return b
}

// audit records an event of this session's.
func (s *session) audit(reason, rule, sqlstate, fingerprint, detail string) {
	a := s.srv.cfg.Audit
	if a == nil {
		return
	}
	a.Record(audit.Event{
		Time: time.Now(), Org: s.id.Org, Subject: s.id.Subject, TokenID: s.id.TokenID,
		ClientAddr: s.conn.RemoteAddr().String(), Reason: reason, Rule: rule,
		SQLState: sqlstate, Fingerprint: fingerprint, Detail: detail,
	})
}

// largeObjectFunctions are the functions libpq calls through FunctionCall
// (its large-object API), by their fixed OIDs. With a guard, FunctionCall of
// anything else is refused, as it would bypass the guard's reading of SQL
// (set_config by OID, for one), and of these only where the guard allows
// large objects (rule large_object, which is on by default).
var largeObjectFunctions = map[uint32]bool{
	715: true, 952: true, 953: true, 954: true, 955: true, 956: true, 957: true,
	958: true, 964: true, 1004: true, 3170: true, 3171: true, 3172: true,
}

// largeObjectProbe is a statement the guard refuses unless it allows large
// objects.
const largeObjectProbe = "SELECT pg_catalog.lo_open(0, 0)"

// functionCallRefusal is guardRefusal for a FunctionCall message.
func (s *session) functionCallRefusal(body []byte) string {
	g := s.srv.cfg.Guard
	if g == nil {
		return ""
	}
	if len(body) >= 4 && largeObjectFunctions[uint32(body[0])<<24|uint32(body[1])<<16|uint32(body[2])<<8|uint32(body[3])] {
		if rule, _ := g.Check(s.key.Database, s.id.Org, largeObjectProbe); rule == "" {
			return ""
		}
	}
	s.audit(audit.ReasonBlockedStatement, "function_call", pgerr.InsufficientPrivilege, "", "FunctionCall message")
	return raiseSQL("insufficient_privilege",
		"pgtenant: the FunctionCall protocol message is only allowed for large objects, where the guard allows them (rule function_call)", blockedHint)
}

// auditBackendError audits an error PostgreSQL reported to a tenant's
// statement when it is a cross-tenant attempt: a rejected signed context
// (SQLSTATE class PT, see the policies package) or a row that RLS refused.
func (s *session) auditBackendError(b *backendConn, h wire.Header) {
	if s.srv.cfg.Audit == nil || !wire.Fits(b.r, h) {
		return
	}
	frame, err := wire.PeekFrame(b.r, h)
	if err != nil {
		return
	}
	_, msg, code := wire.ErrorFields(wire.Body(frame))
	switch {
	case strings.HasPrefix(code, "PT"):
		s.audit(audit.ReasonForgedContext, "", code, "", msg)
	case code == pgerr.InsufficientPrivilege && strings.Contains(msg, "row-level security"):
		s.audit(audit.ReasonRLSViolation, "", code, "", msg)
	}
}

// guardStartupSettings puts the settings of the startup packet (and its
// options) to the guard as the SET statements they amount to: a tenant must
// not reach by the startup packet what it cannot SET, such as
// standard_conforming_strings = off, under which PostgreSQL would read
// string literals differently from the guard.
func (s *session) guardStartupSettings() error {
	g := s.srv.cfg.Guard
	if g == nil {
		return nil
	}
	for name, value := range s.startup {
		sql := "SET " + quoteIdent(name) + " TO '" + strings.ReplaceAll(value, "'", "''") + "'"
		if rule, msg := g.Check(s.key.Database, s.id.Org, sql); rule != "" {
			s.audit(audit.ReasonBlockedStatement, rule, pgerr.InsufficientPrivilege, "", "startup parameter "+name)
			return pgerr.NewFatal(pgerr.InsufficientPrivilege, "blocked_startup_setting", msg).
				WithDetail("The startup parameter " + name + " sets it.")
		}
	}
	return nil
}

// quoteIdent quotes a setting name, part by part.
func quoteIdent(name string) string {
	parts := strings.Split(name, ".")
	for i, p := range parts {
		parts[i] = `"` + strings.ReplaceAll(p, `"`, `""`) + `"`
	}
	return strings.Join(parts, ".")
}
