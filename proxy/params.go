package proxy

import (
	"bytes"
	"context"
	"errors"
	"strings"

	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/pgtenant/pgtenant/pgerr"
	"github.com/pgtenant/pgtenant/proxy/wire"
)

// Session parameters under transaction pooling.
//
// A backend serves many clients of its tenant, one transaction at a time, so
// the proxy keeps each client's session settings itself: the startup
// parameters, and every later change. Changes to reported settings
// (application_name, DateStyle, TimeZone ...) arrive as ParameterStatus
// messages; other session-level SET and RESET statements are found in the
// client's SQL and their results read back from the backend when the
// transaction ends. When a transaction lands on a backend whose settings
// differ from the client's, the proxy sets them in a synced unit ahead of the
// client's messages, in the same write: no extra round trip, and nothing one
// client sets is seen by another.

// Names of the statements that set session parameters on a backend.
const (
	setParamStmt   = "pgtenant_set_param"
	resetParamStmt = "pgtenant_reset_param"
)

const (
	setParamSQL = "SELECT pg_catalog.set_config($1, $2, false)"
	// The reset value is the backend's own default for its role and database.
	resetParamSQL = "SELECT pg_catalog.set_config($1, (SELECT reset_val FROM pg_catalog.pg_settings WHERE lower(name) = lower($1)), false)"
)

// startupParams are the startup packet parameters that become session
// settings; user, database and options are handled apart.
var startupParams = map[string]bool{
	"application_name": true, "datestyle": true, "timezone": true, "intervalstyle": true,
	"search_path": true, "client_encoding": true, "extra_float_digits": true,
}

// fixedReported are reported settings a client cannot change.
var fixedReported = map[string]bool{
	"server_version": true, "server_encoding": true, "integer_datetimes": true, "is_superuser": true,
	"session_authorization": true, "in_hot_standby": true, "scram_iterations": true,
}

// reservedSetting reports whether a client may not set name: the tenant
// context and what could change whose rows a session sees.
func reservedSetting(name, tenancySetting string) bool {
	n := strings.ToLower(name)
	return n == strings.ToLower(tenancySetting) || strings.HasPrefix(n, "app.") || n == "role" ||
		n == "session_authorization" || n == "row_security"
}

// validSettingName reports whether name can be embedded in SQL quoted: a
// setting name as PostgreSQL spells them.
func validSettingName(name string) bool {
	if name == "" || len(name) > 128 {
		return false
	}
	for _, c := range []byte(name) {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '.') {
			return false
		}
	}
	return true
}

// sessionParamsFromStartup returns the session settings a startup packet
// asks for, from its parameters and its -c/--name=value options.
func sessionParamsFromStartup(params map[string]string, tenancySetting string) (map[string]string, error) {
	out := map[string]string{}
	for k, v := range params {
		if startupParams[strings.ToLower(k)] {
			out[strings.ToLower(k)] = v
		}
	}
	fields := strings.Fields(params["options"])
	for i := 0; i < len(fields); i++ {
		f := fields[i]
		switch {
		case f == "-c" && i+1 < len(fields):
			i++
			f = fields[i]
		case strings.HasPrefix(f, "-c"):
			f = f[2:]
		case strings.HasPrefix(f, "--"):
			f = f[2:]
		default:
			return nil, pgerr.NewFatal(pgerr.FeatureNotSupported, "bad_startup",
				"unsupported startup option "+quoteString(f)).WithHint("pgtenant accepts only -c name=value options.")
		}
		name, value, ok := strings.Cut(f, "=")
		name = strings.ReplaceAll(name, "-", "_")
		if !ok || !validSettingName(name) {
			return nil, pgerr.NewFatal(pgerr.InvalidParameterValue, "bad_startup", "invalid startup option "+quoteString(f))
		}
		if reservedSetting(name, tenancySetting) {
			return nil, pgerr.NewFatal(pgerr.InsufficientPrivilege, "reserved_setting",
				"setting "+quoteString(name)+" is reserved by pgtenant")
		}
		out[strings.ToLower(name)] = value
	}
	return out, nil
}

func quoteString(s string) string { return "\"" + strings.ReplaceAll(s, "\"", "\\\"") + "\"" }

// paramUnitLocked encodes the Bind+Execute pairs that bring b's session
// settings to the client's, followed by a Sync, into s.paramBuf, and records
// the result as b's settings. It returns nil when they already match.
func (s *session) paramUnitLocked(b *backendConn) []byte {
	if b.paramsOf == s && b.paramsVersion == s.mu.paramsVersion {
		return nil
	}
	buf := s.paramBuf[:0]
	n := 0
	for name, want := range s.mu.params {
		if have, ok := b.sessionParams[name]; !ok || have != want {
			buf = appendBindExecute(buf, setParamStmt, name, want)
			n++
		}
	}
	for name := range b.sessionParams {
		if _, ok := s.mu.params[name]; !ok {
			buf = appendBindExecute(buf, resetParamStmt, name)
			n++
		}
	}
	b.paramsOf, b.paramsVersion = s, s.mu.paramsVersion
	if n == 0 {
		return nil // same settings: nothing to record either
	}
	b.sessionParams = cloneParams(s.mu.params)
	buf, _ = (&pgproto3.Sync{}).Encode(buf)
	s.paramBuf = buf
	return buf
}

func appendBindExecute(buf []byte, stmt string, params ...string) []byte {
	values := make([][]byte, len(params))
	for i, p := range params {
		values[i] = []byte(p)
	}
	buf, _ = (&pgproto3.Bind{PreparedStatement: stmt, Parameters: values}).Encode(buf)
	buf, _ = (&pgproto3.Execute{}).Encode(buf)
	return buf
}

func cloneParams(m map[string]string) map[string]string {
	out := make(map[string]string, len(m))
	for k, v := range m {
		out[k] = v
	}
	return out
}

// noteParameterStatus records a reported setting the client's statements
// changed, and reports whether the client must be told (it has not been told
// this value yet). Called by the pump for every ParameterStatus.
func (s *session) noteParameterStatus(b *backendConn, frame []byte) (tell bool) {
	name, rest, err := wire.CString(wire.Body(frame))
	if err != nil {
		return true
	}
	value, _, err := wire.CString(rest)
	if err != nil {
		return true
	}
	lower := strings.ToLower(name)
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.mu.reported[name] == value {
		tell = false
	} else {
		tell = true
		if s.mu.reported == nil {
			s.mu.reported = map[string]string{}
		}
		s.mu.reported[name] = value
	}
	if fixedReported[lower] || (s.mu.params[lower] == value && b.sessionParams[lower] == value) {
		return tell
	}
	s.setParamLocked(b, lower, value)
	return tell
}

func (s *session) setParamLocked(b *backendConn, name, value string) {
	if s.mu.params == nil {
		s.mu.params = map[string]string{}
	}
	if b.sessionParams == nil {
		b.sessionParams = map[string]string{}
	}
	s.mu.params[name] = value
	b.sessionParams[name] = value
	s.mu.paramsVersion++
	b.paramsOf, b.paramsVersion = s, s.mu.paramsVersion
}

// noteSessionSets finds session-level SET and RESET statements and
// set_config calls in a client's SQL and records which settings to read back
// from the backend when the transaction ends. A DO block, and a set_config
// whose name is not a plain string literal, cannot be followed: the backend
// is then closed, not pooled, and the client is told nothing.
func (s *session) noteSessionSets(sql []byte) {
	words := sqlWords(sql)
	s.mu.Lock()
	defer s.mu.Unlock()
	if names, ok := s.setConfigNames(sql); ok {
		s.noteRefreshLocked(names...)
	} else {
		s.mu.paramsLost = true
	}
	for i := 0; i < len(words); i++ {
		w := strings.ToUpper(words[i])
		if w == "DO" && (i == 0 || words[i-1] == ";") {
			s.mu.paramsLost = true // a SET in its body is not followed
			continue
		}
		if w == "DISCARD" && i+1 < len(words) && strings.EqualFold(words[i+1], "ALL") {
			s.mu.resetAll = true
			continue
		}
		if (w != "SET" && w != "RESET") || (i > 0 && words[i-1] != ";") {
			continue
		}
		j := i + 1
		if j < len(words) && strings.EqualFold(words[j], "SESSION") {
			j++
		}
		if j >= len(words) {
			continue
		}
		name := strings.ToLower(words[j])
		switch name {
		case "local", "transaction", "constraints":
			continue // transaction-scoped
		case "characteristics":
			// SET SESSION CHARACTERISTICS AS TRANSACTION ... changes the
			// session's defaults (JDBC's setTransactionIsolation and
			// setReadOnly send it).
			s.noteRefreshLocked("default_transaction_isolation", "default_transaction_read_only", "default_transaction_deferrable")
			continue
		case "all":
			if w == "RESET" {
				s.mu.resetAll = true
			}
			continue
		case "time":
			name = "timezone"
		case "schema":
			name = "search_path"
		case "names":
			name = "client_encoding"
		case "xml":
			name = "xmloption" // SET XML OPTION
		}
		if validSettingName(name) {
			s.noteRefreshLocked(name)
		}
	}
}

func (s *session) noteRefreshLocked(names ...string) {
	if s.mu.refresh == nil {
		s.mu.refresh = map[string]bool{}
	}
	for _, n := range names {
		s.mu.refresh[n] = true
	}
}

// setConfigNames returns the names of the settings the set_config calls in
// sql change, and false when one of them is not a plain string literal (a
// parameter, an expression, an escape string) or names a reserved setting.
// A call whose is_local argument is the word true changes nothing that
// outlives the transaction and is left out; for any other, reading the
// setting back finds the session's value.
func (s *session) setConfigNames(sql []byte) (names []string, ok bool) {
	l := sqlLexer{sql: sql}
	hidden := wordCount(sql, "SET_CONFIG") // less the calls the lexer finds
	for {
		t, more := l.next()
		if !more {
			// One in a string, a comment or a dollar-quoted body (a DO
			// block) cannot be read.
			return names, hidden == 0
		}
		if name, _ := identName(sql, t); name != "set_config" {
			continue
		}
		hidden--
		if t.quoted {
			return nil, false
		}
		// The lexer skips string literals: the name is the text between
		// the parenthesis and the first comma.
		open, _ := l.next()
		comma, _ := l.next()
		if open.punct != '(' || comma.punct != ',' {
			return nil, false
		}
		lit := bytes.TrimSpace(sql[open.end:comma.start])
		if len(lit) < 2 || lit[0] != '\'' || bytes.IndexByte(lit[1:], '\'') != len(lit)-2 {
			return nil, false // not one plain literal
		}
		name := strings.ToLower(string(lit[1 : len(lit)-1]))
		if !validSettingName(name) || reservedSetting(name, s.srv.cfg.Setting) ||
			strings.EqualFold(name, s.srv.cfg.TokenSetting) || strings.EqualFold(name, s.srv.cfg.FlagsSetting) {
			return nil, false
		}
		if !localCall(&l) {
			names = append(names, name)
		}
	}
}

// wordCount counts the occurrences of the upper-case word kw in sql, outside
// words and wherever else they are.
func wordCount(sql []byte, kw string) int {
	n := 0
	for i := 0; i+len(kw) <= len(sql); i++ {
		if wordIs(sql[i:i+len(kw)], kw) && (i == 0 || !isWordByte(sql[i-1])) &&
			(i+len(kw) == len(sql) || !isWordByte(sql[i+len(kw)])) {
			n++
		}
	}
	return n
}

// localCall reads the rest of a set_config call, after its first argument
// and comma, and reports whether its third argument is the word true: a
// transaction-local call, which leaves nothing to read back.
func localCall(l *sqlLexer) bool {
	depth, commas := 0, 0
	var third []sqlToken
	for {
		t, more := l.next()
		switch {
		case !more:
			return false
		case t.punct == '(':
			depth++
		case t.punct == ')' && depth == 0:
			return commas == 1 && len(third) == 1 && third[0].word && wordIs(l.sql[third[0].start:third[0].end], "TRUE")
		case t.punct == ')':
			depth--
		case t.punct == ',' && depth == 0:
			commas++
			continue
		}
		if commas == 1 {
			third = append(third, t)
		}
	}
}

// sqlWords splits SQL into words and semicolons; dotted names stay whole.
func sqlWords(sql []byte) []string {
	var out []string
	for i := 0; i < len(sql); {
		c := sql[i]
		switch {
		case c == ';':
			out = append(out, ";")
			i++
		case isWordByte(c):
			j := i
			for j < len(sql) && (isWordByte(sql[j]) || sql[j] == '.') {
				j++
			}
			out = append(out, string(sql[i:j]))
			i = j
		default:
			i++
		}
	}
	return out
}

// paramsToReadBack reports whether the transaction that just ended may have
// changed settings the proxy must read back.
func (s *session) paramsToReadBack() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.mu.refresh) > 0 || s.mu.paramsLost || s.mu.resetAll
}

// readBackParams reads the settings the client's transaction changed from
// the backend, once it is idle, into the client's and the backend's records.
// It returns false when the backend must not be reused.
func (s *session) readBackParams(b *backendConn) bool {
	s.mu.Lock()
	lost, resetAll := s.mu.paramsLost, s.mu.resetAll
	names := make([]string, 0, len(s.mu.refresh))
	for n := range s.mu.refresh {
		names = append(names, n)
	}
	if resetAll {
		// RESET ALL returns every setting to its session default: the
		// client's are its startup settings, the backend's its own.
		s.mu.params = cloneParams(s.startup)
		for n := range b.sessionParams {
			names = append(names, n)
		}
		for n := range s.startup {
			names = append(names, n)
		}
		b.sessionParams = nil
		s.mu.paramsVersion++
	}
	s.mu.refresh, s.mu.paramsLost, s.mu.resetAll = nil, false, false
	s.mu.Unlock()
	if lost {
		return false
	}
	if len(names) == 0 {
		return true
	}
	var q strings.Builder
	q.WriteString("SELECT ")
	for i, n := range names {
		if i > 0 {
			q.WriteString(", ")
		}
		q.WriteString("pg_catalog.current_setting('" + n + "', true)")
	}
	row, err := queryRow(b, q.String())
	if err != nil || len(row) != len(names) {
		return false
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for i, n := range names {
		if row[i] == nil {
			continue // not a setting: the client's SET failed
		}
		if resetAll && s.startup[n] != "" {
			b.sessionParams = ensureMap(b.sessionParams)
			b.sessionParams[n] = string(row[i])
			continue
		}
		s.setParamLocked(b, n, string(row[i]))
	}
	b.paramsOf = nil // compare in full next time
	return true
}

func ensureMap(m map[string]string) map[string]string {
	if m == nil {
		return map[string]string{}
	}
	return m
}

// checkStartupSettings tries the client's startup settings on a backend, in
// a transaction that is thrown away, so a bad name or value fails the login
// with PostgreSQL's own error, as it would without pgtenant.
func (s *session) checkStartupSettings(ctx context.Context) error {
	if err := s.guardStartupSettings(); err != nil {
		return err
	}
	if len(s.startup) == 0 || len(s.startup) == 1 && s.startup["application_name"] != "" {
		return nil
	}
	lease, err := s.srv.pools.Acquire(ctx, s.key)
	if err != nil {
		return err
	}
	b := lease.Conn()
	b.stmts.unnamed = nil // replaced below
	var msg []byte
	msg, _ = (&pgproto3.Parse{Query: "SELECT pg_catalog.set_config($1, $2, true)"}).Encode(msg)
	for name, value := range s.startup {
		msg = appendBindExecute(msg, "", name, value)
	}
	msg, _ = (&pgproto3.Sync{}).Encode(msg)
	if _, err := roundTrip(b, msg); err != nil {
		var bad *settingError
		if errors.As(err, &bad) {
			lease.Release()
			return pgerr.NewFatal(bad.code, "bad_startup", bad.msg)
		}
		lease.Destroy()
		return err
	}
	lease.Release()
	return nil
}
