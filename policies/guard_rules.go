package policies

import (
	"strings"

	pg "github.com/pganalyze/pg_query_go/v6"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
)

// Rule names. They are stable: configuration (GuardConfig.Allow), messages,
// audit events and metric labels use them.
const (
	RuleReservedSetting = "reserved_setting"
	RuleResetAll        = "reset_all"
	RuleDiscardAll      = "discard_all"
	RuleSetRole         = "set_role"
	RuleDoBlock         = "do_block"
	RuleFunctionDDL     = "function_ddl"
	RuleListenNotify    = "listen_notify"
	RuleOtherSessions   = "other_sessions"
	RuleSignal          = "signal"
	RuleAdvisoryLock    = "advisory_lock"
	RuleTruncate        = "truncate"
	RuleCopyFile        = "copy_file"
	RuleDynamicSQL      = "dynamic_sql"
	RuleLargeObject     = "large_object"
	RuleLockTable       = "lock_table"
	RuleDDL             = "ddl"
	// RuleTooComplex blocks statements the guard cannot check safely: nested
	// too deeply or slow to scan (see guard_limits.go), or parsed into a
	// tree the guard cannot read. It cannot be switched off.
	RuleTooComplex = "too_complex"
)

// ruleID indexes rules; zero means allowed. Cache entries hold one.
type ruleID uint8

const (
	allowed ruleID = iota
	ruleReservedSetting
	ruleResetAll
	ruleDiscardAll
	ruleSetRole
	ruleDoBlock
	ruleFunctionDDL
	ruleListenNotify
	ruleOtherSessions
	ruleSignal
	ruleAdvisoryLock
	ruleTruncate
	ruleCopyFile
	ruleDynamicSQL
	ruleLargeObject
	ruleLockTable
	ruleDDL
	ruleTooComplex
	numRules
)

// rules describes each rule; what completes "pgtenant: <what> is not allowed
// for tenant sessions".
var rules = [numRules]struct{ name, what, hint string }{
	ruleReservedSetting: {RuleReservedSetting, "changing a reserved setting",
		"pgtenant manages app.*, pgtenant.*, row_security and the settings that decide how SQL text is read; other settings can be changed with SET or with set_config and a literal setting name"},
	ruleResetAll: {RuleResetAll, "RESET ALL",
		"reset the settings you changed one by one"},
	ruleDiscardAll: {RuleDiscardAll, "DISCARD ALL",
		"pgtenant resets session state between clients itself; DISCARD PLANS, SEQUENCES and TEMP are allowed"},
	ruleSetRole: {RuleSetRole, "changing the session role",
		"pgtenant chooses the role from your token"},
	ruleDoBlock: {RuleDoBlock, "a DO block",
		"run the statements directly, or ask an administrator to install a function"},
	ruleFunctionDDL: {RuleFunctionDDL, "creating or changing server-side code (functions, procedures, triggers, rules, operators, casts)",
		"server-side code is installed by an administrator"},
	ruleListenNotify: {RuleListenNotify, "LISTEN/NOTIFY",
		"notification channels are shared by every tenant of the database"},
	ruleOtherSessions: {RuleOtherSessions, "looking at or acting on other sessions, or at shared activity statistics",
		"views such as pg_stat_activity, pg_locks and pg_stat_user_tables show other tenants' sessions and activity"},
	ruleSignal: {RuleSignal, "signalling server processes",
		"ask an administrator"},
	ruleAdvisoryLock: {RuleAdvisoryLock, "taking advisory locks",
		"advisory lock keys are shared by every tenant of the database"},
	ruleTruncate: {RuleTruncate, "TRUNCATE",
		"use DELETE, which row-level security applies to"},
	ruleCopyFile: {RuleCopyFile, "reading or writing server files or programs",
		"use COPY ... FROM STDIN or COPY ... TO STDOUT"},
	ruleDynamicSQL: {RuleDynamicSQL, "running SQL given as text (query_to_xml, ts_stat, ts_rewrite, dblink ...)",
		"run the query directly"},
	ruleLargeObject: {RuleLargeObject, "using large objects",
		"large objects have no row-level security and are shared by every tenant of the database; store the data in a bytea column of a tenant table"},
	ruleLockTable: {RuleLockTable, "LOCK TABLE",
		"a table lock also blocks the other tenants of the table; rely on row locks (SELECT ... FOR UPDATE)"},
	ruleDDL: {RuleDDL, "changing the schema (DDL)",
		"schema changes are made by an administrator"},
	ruleTooComplex: {RuleTooComplex, "a statement this complex",
		"split long chains of operators, UNIONs or JOINs into smaller statements, and avoid long runs of operator characters and deeply nested comments"},
}

// verdicts holds the Verdict of each rule, built once so that Check does not
// allocate.
var verdicts = func() (v [numRules]Verdict) {
	for id := ruleID(1); id < numRules; id++ {
		r := rules[id]
		v[id] = Verdict{
			Rule:    r.name,
			Message: "pgtenant: " + r.what + " is not allowed for tenant sessions (rule " + r.name + ")",
			Hint:    r.hint,
		}
	}
	return v
}()

// ruleByName finds a rule by its name.
func ruleByName(name string) (ruleID, bool) {
	for id := ruleID(1); id < numRules; id++ {
		if rules[id].name == name {
			return id, true
		}
	}
	return allowed, false
}

// Functions blocked by name, whatever their schema: pg_catalog.x and x are the
// same function to the guard, and quoting does not matter.
var funcRules = map[string]ruleID{
	"pg_notify": ruleListenNotify,

	"pg_stat_get_activity":                 ruleOtherSessions,
	"pg_blocking_pids":                     ruleOtherSessions,
	"pg_safe_snapshot_blocking_pids":       ruleOtherSessions,
	"pg_isolation_test_session_is_blocked": ruleOtherSessions,
	"pg_stat_statements":                   ruleOtherSessions,
	"pg_stat_statements_info":              ruleOtherSessions,
	"pg_stat_statements_reset":             ruleOtherSessions,
	"pg_lock_status":                       ruleOtherSessions, // behind pg_locks
	"pg_prepared_xact":                     ruleOtherSessions, // behind pg_prepared_xacts
	"pg_stat_get_progress_info":            ruleOtherSessions, // behind pg_stat_progress_*
	"pg_stat_get_wal_senders":              ruleOtherSessions, // behind pg_stat_replication

	"pg_cancel_backend":              ruleSignal,
	"pg_terminate_backend":           ruleSignal,
	"pg_signal_backend":              ruleSignal,
	"pg_reload_conf":                 ruleSignal,
	"pg_rotate_logfile":              ruleSignal,
	"pg_log_backend_memory_contexts": ruleSignal,

	"pg_read_file":        ruleCopyFile,
	"pg_read_binary_file": ruleCopyFile,
	"pg_stat_file":        ruleCopyFile,
	"lo_import":           ruleCopyFile,
	"lo_export":           ruleCopyFile,

	"ts_stat":    ruleDynamicSQL,
	"ts_rewrite": ruleDynamicSQL, // ts_rewrite(tsquery, text) runs the text as a query

	"loread":  ruleLargeObject,
	"lowrite": ruleLargeObject,
}

// funcPrefixRules block functions by name prefix.
var funcPrefixRules = []struct {
	prefix string
	rule   ruleID
}{
	{"pg_stat_get_", ruleOtherSessions}, // the counters behind pg_stat_* (other sessions, shared tables)
	{"pg_stat_clear_snapshot", ruleOtherSessions},
	{"lo_", ruleLargeObject}, // lo_get, lo_put, lo_unlink, lo_open ...
	{"pg_advisory_", ruleAdvisoryLock},
	{"pg_try_advisory_", ruleAdvisoryLock},
	{"pg_ls_", ruleCopyFile},   // pg_ls_dir, pg_ls_logdir, pg_ls_waldir ...
	{"pg_file_", ruleCopyFile}, // adminpack
	{"query_to_xml", ruleDynamicSQL},
	{"table_to_xml", ruleDynamicSQL},
	{"schema_to_xml", ruleDynamicSQL},
	{"database_to_xml", ruleDynamicSQL},
	{"dblink", ruleDynamicSQL},
}

// Relations (views) blocked by name, whatever their schema.
var relRules = map[string]ruleID{
	"pg_stat_activity":        ruleOtherSessions,
	"pg_stat_statements":      ruleOtherSessions,
	"pg_stat_statements_info": ruleOtherSessions,
	"pg_locks":                ruleOtherSessions,
	"pg_prepared_xacts":       ruleOtherSessions,
	"pg_stat_ssl":             ruleOtherSessions,
	"pg_stat_gssapi":          ruleOtherSessions,
	"pg_stat_replication":     ruleOtherSessions,
	"pg_stat_wal_receiver":    ruleOtherSessions,

	"pg_largeobject":          ruleLargeObject,
	"pg_largeobject_metadata": ruleLargeObject,
}

// relPrefixRules block relations by name prefix.
var relPrefixRules = []struct {
	prefix string
	rule   ruleID
}{
	{"pg_stat_", ruleOtherSessions},   // pg_stat_progress_*, pg_stat_user_tables, pg_stat_database ...
	{"pg_statio_", ruleOtherSessions}, // block reads of every tenant's tables
}

// pgSettings is the view whose UPDATE rule calls set_config.
const pgSettings = "pg_settings"

// plainStmts are statements that are not DDL; the tree walker decides some
// of them by their contents (CopyStmt, DiscardStmt, VariableSetStmt ...).
// Every other statement node (a message whose name ends in "Stmt") is DDL,
// so that node types a newer parser adds are blocked until someone looks at
// them.
var plainStmts = []proto.Message{
	&pg.RawStmt{}, &pg.SelectStmt{}, &pg.InsertStmt{}, &pg.UpdateStmt{}, &pg.DeleteStmt{},
	&pg.MergeStmt{}, &pg.SetOperationStmt{}, &pg.ReturnStmt{}, &pg.PLAssignStmt{},
	&pg.VariableShowStmt{}, &pg.TransactionStmt{}, &pg.DiscardStmt{}, &pg.CopyStmt{},
	&pg.VariableSetStmt{}, &pg.ConstraintsSetStmt{},
	&pg.PrepareStmt{}, &pg.ExecuteStmt{}, &pg.DeallocateStmt{}, &pg.ExplainStmt{},
	&pg.DeclareCursorStmt{}, &pg.FetchStmt{}, &pg.ClosePortalStmt{},
	&pg.CallStmt{}, &pg.CheckPointStmt{},
	// Maintenance: PostgreSQL lets only the owner run them, and they read no rows.
	&pg.VacuumStmt{}, &pg.ClusterStmt{}, &pg.ReindexStmt{},
}

// stmtRules maps each statement node type to the rule it falls under
// whatever its contents.
var stmtRules = func() map[protoreflect.MessageDescriptor]ruleID {
	m := map[protoreflect.MessageDescriptor]ruleID{}
	msgs := pg.File_pg_query_proto.Messages()
	for i := 0; i < msgs.Len(); i++ {
		if d := msgs.Get(i); strings.HasSuffix(string(d.Name()), "Stmt") {
			m[d] = ruleDDL
		}
	}
	set := func(r ruleID, msgs ...proto.Message) {
		for _, msg := range msgs {
			if r == allowed {
				delete(m, msg.ProtoReflect().Descriptor())
			} else {
				m[msg.ProtoReflect().Descriptor()] = r
			}
		}
	}
	set(allowed, plainStmts...)
	set(allowed, objectStmts...) // decided by their object type
	set(ruleDoBlock, &pg.DoStmt{})
	set(ruleListenNotify, &pg.ListenStmt{}, &pg.NotifyStmt{}, &pg.UnlistenStmt{})
	set(ruleTruncate, &pg.TruncateStmt{})
	set(ruleLockTable, &pg.LockStmt{})
	set(ruleFunctionDDL, &pg.CreateFunctionStmt{}, &pg.AlterFunctionStmt{}, &pg.CreateTrigStmt{},
		&pg.RuleStmt{}, &pg.CreateCastStmt{}, &pg.CreateEventTrigStmt{}, &pg.AlterEventTrigStmt{},
		&pg.CreatePLangStmt{}, &pg.CreateTransformStmt{}, &pg.AlterOperatorStmt{},
		&pg.LoadStmt{}) // LOAD puts a shared library's code into the backend
	set(ruleDDL, &pg.IntoClause{}) // SELECT INTO, CREATE TABLE AS
	return m
}()

// objectStmts create, drop or alter an object of a type they name; they are
// function_ddl for code objects and ddl for the rest.
var objectStmts = []proto.Message{
	&pg.DefineStmt{}, &pg.DropStmt{}, &pg.RenameStmt{},
	&pg.AlterObjectSchemaStmt{}, &pg.AlterOwnerStmt{}, &pg.AlterObjectDependsStmt{},
}

// codeObjects are the object types (pg_query ObjectType names) that
// objectStmts treat as function_ddl.
var codeObjects = func() map[string]bool {
	m := map[string]bool{}
	for _, t := range []pg.ObjectType{
		pg.ObjectType_OBJECT_FUNCTION, pg.ObjectType_OBJECT_PROCEDURE, pg.ObjectType_OBJECT_ROUTINE,
		pg.ObjectType_OBJECT_AGGREGATE, pg.ObjectType_OBJECT_OPERATOR, pg.ObjectType_OBJECT_CAST,
		pg.ObjectType_OBJECT_TRIGGER, pg.ObjectType_OBJECT_RULE, pg.ObjectType_OBJECT_EVENT_TRIGGER,
		pg.ObjectType_OBJECT_LANGUAGE, pg.ObjectType_OBJECT_TRANSFORM,
	} {
		m[t.String()] = true
	}
	return m
}()

func objectRule(objectType string) ruleID {
	if codeObjects[objectType] {
		return ruleFunctionDDL
	}
	return ruleDDL
}

// Enum values, as pg_query names them, that rules look for.
var (
	discardAll       = pg.DiscardMode_DISCARD_ALL.String()
	commitPrepared   = pg.TransactionStmtKind_TRANS_STMT_COMMIT_PREPARED.String()
	rollbackPrepared = pg.TransactionStmtKind_TRANS_STMT_ROLLBACK_PREPARED.String()
	varSetValue      = pg.VariableSetKind_VAR_SET_VALUE.String()
	varSetMulti      = pg.VariableSetKind_VAR_SET_MULTI.String()
	varResetAll      = pg.VariableSetKind_VAR_RESET_ALL.String()
)

// constant is what a rule needs to know of an expression: whether it is a
// literal constant and, if so, its text.
type constant struct {
	text    string
	literal bool // a non-null A_Const whose text is exact
	quoted  bool // a string constant ('...', E'...', $$...$$)
}

func relRule(name string) ruleID {
	name = strings.ToLower(name)
	if r, ok := relRules[name]; ok {
		return r
	}
	for _, p := range relPrefixRules {
		if strings.HasPrefix(name, p.prefix) {
			return p.rule
		}
	}
	return allowed
}

// settingsViewRule blocks writes to pg_settings, which change settings
// through the view's rules just as set_config does.
func settingsViewRule(target string) ruleID {
	if strings.EqualFold(target, pgSettings) {
		return ruleReservedSetting
	}
	return allowed
}

func copyRule(isProgram bool, filename string) ruleID {
	if isProgram || filename != "" {
		return ruleCopyFile
	}
	return allowed
}

// funcRule decides a call of the function name (its last, unqualified
// part) with nargs arguments, of which args holds the first two.
func (g *Guard) funcRule(name string, args [2]constant, nargs int) ruleID {
	name = strings.ToLower(name)
	if name == "set_config" {
		return g.setConfigRule(args, nargs)
	}
	if r, ok := funcRules[name]; ok {
		return r
	}
	for _, p := range funcPrefixRules {
		if strings.HasPrefix(name, p.prefix) {
			return p.rule
		}
	}
	return allowed
}

// setConfigRule decides set_config(name, value, is_local): the name must be
// a string literal naming a setting a tenant may change, since a computed
// name ('app.' || 'x', a column, a cast, a named argument) could be anything.
func (g *Guard) setConfigRule(args [2]constant, nargs int) ruleID {
	if nargs == 0 || !args[0].literal || !args[0].quoted {
		return ruleReservedSetting
	}
	return g.settingRule(args[0].text, args[1], true)
}

// setStmtRule decides SET, SET LOCAL and RESET of name; value is the first
// of nargs values.
func (g *Guard) setStmtRule(kind, name string, value constant, nargs int) ruleID {
	switch kind {
	case varResetAll:
		return ruleResetAll
	case varSetMulti:
		return allowed // SET TRANSACTION ..., SET SESSION CHARACTERISTICS ...
	case varSetValue:
		if nargs != 1 {
			value = constant{}
		}
		return g.settingRule(name, value, true)
	default: // RESET x, SET x TO DEFAULT, SET x FROM CURRENT
		return g.settingRule(name, constant{}, false)
	}
}

// settingRule decides a change of setting name to value; changesValue is
// false for a reset to the session default.
func (g *Guard) settingRule(name string, value constant, changesValue bool) ruleID {
	name = strings.ToLower(name) // setting names are case-insensitive
	switch {
	case name == "role" || name == "session_authorization":
		return ruleSetRole
	case !plainSettingName(name) || g.reserved.contains(name):
		return ruleReservedSetting
	case changesValue && !sqlTextSettingSafe(name, value):
		return ruleReservedSetting
	}
	return allowed
}

// plainSettingName reports whether name has only the characters a setting
// name can have. Anything else is not a real setting, so blocking it costs
// nothing and leaves no room for tricks with the name's spelling.
func plainSettingName(name string) bool {
	if name == "" {
		return false
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '_' || c == '.' || c == '$' || c >= 0x80) {
			return false
		}
	}
	return true
}

// sqlTextSettingSafe guards the two settings that change how PostgreSQL
// splits SQL text into tokens. The guard reads text the way PostgreSQL does
// with standard_conforming_strings on and an ASCII-safe client encoding;
// with the string rules of standard_conforming_strings off, or with SJIS,
// BIG5, GBK, UHC, JOHAB or GB18030 bytes (whose second byte may be a
// backslash or a quote), a statement could end a string literal in one place
// for PostgreSQL and in another for the guard, hiding code from it. Other
// settings are not checked here.
func sqlTextSettingSafe(name string, value constant) bool {
	switch name {
	case "standard_conforming_strings":
		if !value.literal {
			return false
		}
		switch strings.ToLower(strings.TrimSpace(value.text)) {
		case "on", "true", "yes", "1", "t", "tr", "tru", "y", "ye":
			return true
		}
		return false
	case "client_encoding":
		return value.literal && !unsafeClientEncodings[cleanEncodingName(value.text)]
	}
	return true
}

// unsafeClientEncodings are PostgreSQL's client-only encodings, under every
// alias PostgreSQL accepts (src/common/encnames.c), spelled as
// cleanEncodingName spells them.
var unsafeClientEncodings = map[string]bool{
	"sjis": true, "mskanji": true, "shiftjis": true, "win932": true, "windows932": true,
	"shiftjis2004": true,
	"big5":         true, "win950": true, "windows950": true,
	"gbk": true, "win936": true, "windows936": true,
	"uhc": true, "win949": true, "windows949": true,
	"johab":   true,
	"gb18030": true,
}

// cleanEncodingName lowercases an encoding name and drops everything but
// letters and digits, as PostgreSQL does before looking it up.
func cleanEncodingName(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c >= 'A' && c <= 'Z':
			b.WriteByte(c + 'a' - 'A')
		case c >= 'a' && c <= 'z' || c >= '0' && c <= '9':
			b.WriteByte(c)
		}
	}
	return b.String()
}
