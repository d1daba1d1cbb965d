package policies

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/pgtenant/pgtenant/test/testpg"
)

// guardCases pairs statement texts with the rule that blocks them; an empty
// rule means allowed. They run against a Guard with the default config.
var guardCases = []struct {
	sql  string
	rule string
}{
	// Plain statements: allowed, most of them without a parse.
	{"select 1", ""},
	{"SELECT id, name FROM items WHERE org_id = $1 AND id = ANY($2)", ""},
	{"insert into items (id, name) values ($1, $2) returning id", ""},
	{"INSERT INTO items SELECT * FROM staging", ""},
	{"update items set name = 'it''s; fine' where id = 1", ""},
	{"delete from items where id = $1;", ""},
	{"with x as (select 1 as a) select a from x", ""},
	{"values (1), (2)", ""},
	{"begin", ""},
	{"START TRANSACTION ISOLATION LEVEL SERIALIZABLE", ""},
	{"savepoint a", ""},
	{"rollback to savepoint a", ""},
	{"release a", ""},
	{"commit", ""},
	{"select 1 -- pg_terminate_backend(1)\n", ""},
	{"select 1 /* set_config('app.current_org','x',false) */", ""},
	{"select 'pg_stat_activity', 'set_config(''app.x'', ''y'', false)'", ""},
	{`select '{"a": "b"}'::jsonb`, ""},
	{`select "name" from "items"`, ""},
	{"select pg_backend_pid(), pg_catalog.now()", ""},
	{"select relname from pg_class", ""},
	{"select current_setting('app.current_org')", ""},
	{"select current_setting('app.current_org', true)", ""},
	{"show app.current_org", ""},
	{"select 1; select 2", ""},
	{"selec 1", ""}, // not SQL: PostgreSQL rejects it itself
	{"select 'unterminated", ""},
	{"", ""},

	// Settings a tenant may change.
	{"SET search_path = public", ""},
	{"SET statement_timeout = 5", ""},
	{"SET LOCAL statement_timeout TO '5s'", ""},
	{"RESET statement_timeout", ""},
	{"set application_name = 'worker'", ""},
	{"SET TIME ZONE 'UTC'", ""},
	{"set datestyle = 'ISO, MDY'", ""},
	{"set client_encoding = 'UTF8'", ""},
	{"SET NAMES 'latin1'", ""},
	{"set standard_conforming_strings = on", ""},
	{"set transaction isolation level serializable", ""},
	{"SET SESSION CHARACTERISTICS AS TRANSACTION READ ONLY", ""},
	{"select set_config('statement_timeout','5s',true)", ""},
	{"select set_config('myapp.feature', 'on', false)", ""},
	{"SET myapp.feature = 'on'", ""},

	// Other statements that are allowed.
	{"prepare p as select * from items where id = $1", ""},
	{"execute p(1)", ""},
	{"deallocate p", ""},
	{"explain analyze select * from items", ""},
	{"copy items from stdin", ""},
	{"copy items (id, name) to stdout with (format csv)", ""},
	{"copy (select * from items) to stdout", ""},
	{"declare c cursor with hold for select 1", ""},
	{"fetch 10 from c", ""},
	{"close c", ""},
	{"discard plans", ""},
	{"DISCARD TEMP", ""},
	{"discard sequences", ""},
	{"vacuum items", ""},
	{"analyze items", ""},
	{"reindex table items", ""},
	{"cluster items", ""},
	{"lock table items in share mode", RuleLockTable},
	{"LOCK items IN ACCESS EXCLUSIVE MODE", RuleLockTable},
	{"call refresh_totals(1)", ""},
	{"select pg_advisory_lock(1)", ""}, // advisory_lock is off by default

	// reserved_setting, in every spelling.
	{"select set_config('app.current_org','globex',false)", RuleReservedSetting},
	{"SELECT pg_catalog.set_config('app.'||'current_org','x',true)", RuleReservedSetting},
	{`set "app.current_org" = 'x'`, RuleReservedSetting},
	{"SeT LoCaL app.CURRENT_ORG to x", RuleReservedSetting},
	{"reset app.current_org", RuleReservedSetting},
	{"set app.current_org to default", RuleReservedSetting},
	{`SET "App"."Current_Org" = 'x'`, RuleReservedSetting},
	{"set row_security = off", RuleReservedSetting},
	{`SET "Row_Security" TO on`, RuleReservedSetting},
	{"set pgtenant.anything = 1", RuleReservedSetting},
	{"select set_config('pgtenant.x','1',false)", RuleReservedSetting},
	{"select SET_CONFIG('APP.CURRENT_ORG','x',false)", RuleReservedSetting},
	{`select "set_config"('app.current_org','x',false)`, RuleReservedSetting},
	{`select U&"\0073et_config"('app.current_org','x',false)`, RuleReservedSetting},
	{`select U&"!0073et_config" UESCAPE '!'('app.current_org','x',false)`, RuleReservedSetting},
	{`select set_config(E'app\x2ecurrent_org','x',false)`, RuleReservedSetting},
	{`select set_config(U&'app\002ecurrent_org','x',false)`, RuleReservedSetting},
	{"select set_config($$app.current_org$$,'x',false)", RuleReservedSetting},
	{"select set_config($q$app.current_org$q$,'x',false)", RuleReservedSetting},
	{"select set_config('app.current_org'::text,'x',false)", RuleReservedSetting},
	{"select set_config(name,'x',false) from (values ('app.current_org')) v(name)", RuleReservedSetting},
	{"select set_config(format('%s.current_org','app'),'x',false)", RuleReservedSetting},
	{"select set_config(lower('APP.CURRENT_ORG'),'x',false)", RuleReservedSetting},
	{"select set_config($1,'x',false)", RuleReservedSetting},
	{"select set_config('','x',false)", RuleReservedSetting},
	{"select/**/set_config('app.current_org','x',false)", RuleReservedSetting},
	{"select set_config(/* 'statement_timeout' */ 'app.current_org','x',false)", RuleReservedSetting},
	{"/* leading */ set app.current_org = 'x'", RuleReservedSetting},
	{"set/**/app.current_org = 'x'", RuleReservedSetting},
	{"select * from set_config('app.current_org','x',false)", RuleReservedSetting},
	{"select * from items where set_config('app.current_org', name, false) is not null", RuleReservedSetting},
	{"select (select set_config('app.current_org','x',false))", RuleReservedSetting},
	{"select coalesce(set_config('app.current_org','x',false), 'y')", RuleReservedSetting},
	{"select 1 from items group by set_config('app.current_org','x',false)", RuleReservedSetting},
	{"with a as (select set_config('app.current_org','x',false)) select * from a", RuleReservedSetting},
	{"insert into log values (set_config('app.current_org','x',false))", RuleReservedSetting},
	{"prepare p as select set_config('app.x','1',true)", RuleReservedSetting},
	{"explain analyze select set_config('app.current_org','x',false)", RuleReservedSetting},
	{"declare c cursor for select set_config('app.current_org','x',false)", RuleReservedSetting},
	{"copy (select set_config('app.current_org','x',false)) to stdout", RuleReservedSetting},
	{"select 1; set app.current_org = 'x'", RuleReservedSetting},
	{"select 1; select set_config('app.current_org','x',false);", RuleReservedSetting},
	{"select 'a;b'; set local app.current_org = 'x'", RuleReservedSetting},
	{`select E'\'', set_config('app.current_org','x',false)`, RuleReservedSetting},
	{"update pg_settings set setting = 'x' where name = 'app.current_org'", RuleReservedSetting},
	{"UPDATE pg_catalog.pg_settings SET setting = 'off' WHERE name = 'row_security'", RuleReservedSetting},
	{"with s as (update pg_settings set setting = 'x' where name = 'app.current_org' returning 1) select * from s", RuleReservedSetting},
	{"set standard_conforming_strings = off", RuleReservedSetting},
	{"set standard_conforming_strings = 0", RuleReservedSetting},
	{"select set_config('standard_conforming_strings','off',false)", RuleReservedSetting},
	{"select set_config('standard_conforming_strings',$1,false)", RuleReservedSetting},
	{"set client_encoding = 'SJIS'", RuleReservedSetting},
	{"SET NAMES 'gbk'", RuleReservedSetting},
	{"select set_config('client_encoding','Windows-950',false)", RuleReservedSetting},

	// reset_all, discard_all, set_role.
	{"RESET ALL", RuleResetAll},
	{"select 1; reset all", RuleResetAll},
	{"DISCARD ALL", RuleDiscardAll},
	{"set role postgres", RuleSetRole},
	{"SET LOCAL ROLE postgres", RuleSetRole},
	{"set role none", RuleSetRole},
	{"set session authorization postgres", RuleSetRole},
	{"SET SESSION AUTHORIZATION DEFAULT", RuleSetRole},
	{"reset role", RuleSetRole},
	{"reset session authorization", RuleSetRole},
	{`set "role" = 'postgres'`, RuleSetRole},
	{"select set_config('role','postgres',false)", RuleSetRole},
	{"select set_config('session_authorization','postgres',false)", RuleSetRole},

	// do_block and function_ddl.
	{"do $$begin perform set_config('app.current_org','x',false); end$$", RuleDoBlock},
	{"DO LANGUAGE plpgsql 'begin null; end'", RuleDoBlock},
	{"create function f() returns int as $$select 1$$ language sql", RuleFunctionDDL},
	{"create or replace procedure p() language sql as $$select 1$$", RuleFunctionDDL},
	{"create function f() returns text return set_config('app.x','y',false)", RuleFunctionDDL},
	{"create function f() returns int language sql set app.current_org = 'x' as 'select 1'", RuleFunctionDDL},
	{"alter function f() owner to postgres", RuleFunctionDDL},
	{"alter function f() rename to g", RuleFunctionDDL},
	{"alter function f() security definer", RuleFunctionDDL},
	{"drop function f()", RuleFunctionDDL},
	{"drop procedure if exists p", RuleFunctionDDL},
	{"create trigger t before insert on items for each row execute function f()", RuleFunctionDDL},
	{"drop trigger t on items", RuleFunctionDDL},
	{"create rule r as on insert to items do instead nothing", RuleFunctionDDL},
	{"create aggregate a(int) (sfunc = int4pl, stype = int)", RuleFunctionDDL},
	{"create operator === (function = f, leftarg = int, rightarg = int)", RuleFunctionDDL},
	{"create cast (int as text) with function f(int)", RuleFunctionDDL},
	{"create event trigger e on ddl_command_start execute function f()", RuleFunctionDDL},
	{"load 'auto_explain'", RuleFunctionDDL},

	// listen_notify.
	{"listen x", RuleListenNotify},
	{"notify x", RuleListenNotify},
	{"NOTIFY x, 'payload'", RuleListenNotify},
	{"unlisten *", RuleListenNotify},
	{"select pg_notify('x','y')", RuleListenNotify},

	// other_sessions.
	{"select * from pg_stat_activity", RuleOtherSessions},
	{`select query from "pg_catalog"."pg_stat_activity"`, RuleOtherSessions},
	{"SELECT QUERY FROM PG_CATALOG.PG_STAT_ACTIVITY", RuleOtherSessions},
	{`select * from U&"pg\005fstat\005factivity"`, RuleOtherSessions},
	{"table pg_stat_activity", RuleOtherSessions},
	{"select count(*) from (select * from pg_stat_activity) s", RuleOtherSessions},
	{"select exists (select 1 from pg_locks where not granted)", RuleOtherSessions},
	{"with a as (select * from pg_locks) select 1 from a", RuleOtherSessions},
	{"select * from pg_catalog.pg_prepared_xacts", RuleOtherSessions},
	{"select * from pg_stat_statements", RuleOtherSessions},
	{"select * from public.pg_stat_statements_info", RuleOtherSessions},
	{"select * from pg_stat_statements(true)", RuleOtherSessions},
	{"select * from pg_stat_progress_vacuum", RuleOtherSessions},
	{"select * from pg_stat_ssl", RuleOtherSessions},
	{"select * from pg_stat_gssapi", RuleOtherSessions},
	{"select * from pg_stat_replication", RuleOtherSessions},
	{"select * from pg_stat_get_activity(null)", RuleOtherSessions},
	{"select pg_stat_get_backend_pid(s) from pg_stat_get_backend_idset() s", RuleOtherSessions},
	{"select pg_blocking_pids(1)", RuleOtherSessions},
	{"select pg_safe_snapshot_blocking_pids(1)", RuleOtherSessions},
	{"select * from pg_lock_status()", RuleOtherSessions},
	{"copy pg_stat_activity to stdout", RuleOtherSessions},
	{"explain select * from pg_stat_activity", RuleOtherSessions},
	{"commit prepared 'tx1'", RuleOtherSessions},
	{"ROLLBACK PREPARED 'tx1'", RuleOtherSessions},

	// signal.
	{"select pg_terminate_backend(123)", RuleSignal},
	{"select pg_cancel_backend(pid) from items", RuleSignal},
	{"select pg_catalog.pg_reload_conf()", RuleSignal},
	{"select pg_rotate_logfile()", RuleSignal},

	// truncate, copy_file, dynamic_sql.
	{"truncate items", RuleTruncate},
	{"TRUNCATE TABLE items RESTART IDENTITY CASCADE", RuleTruncate},
	{"copy items to '/tmp/items'", RuleCopyFile},
	{"copy items from '/etc/passwd'", RuleCopyFile},
	{"copy items from program 'id'", RuleCopyFile},
	{"copy (select 1) to '/tmp/x'", RuleCopyFile},
	{"select pg_read_file('/etc/passwd')", RuleCopyFile},
	{"select * from pg_ls_dir('.')", RuleCopyFile},
	{"select lo_import('/etc/passwd')", RuleCopyFile},
	{"select query_to_xml('select * from pg_stat_activity', true, false, '')", RuleDynamicSQL},
	{"select table_to_xml('pg_locks', true, false, '')", RuleDynamicSQL},
	{"select * from ts_stat('select 1')", RuleDynamicSQL},
	{"select ts_rewrite('a'::tsquery, 'select query::tsquery, ''b''::tsquery from pg_stat_activity')", RuleDynamicSQL},
	{"select lo_get(16384)", RuleLargeObject},
	{"select pg_catalog.lo_put(16384, 0, 'x')", RuleLargeObject},
	{"select lo_unlink(16384)", RuleLargeObject},
	{"select loread(lo_open(16384, 262144), 10)", RuleLargeObject},
	{"select oid from pg_largeobject_metadata", RuleLargeObject},
	{"select n_live_tup from pg_stat_user_tables", RuleOtherSessions},
	{"select * from pg_catalog.pg_statio_user_tables", RuleOtherSessions},
	{"select pg_stat_get_live_tuples('items'::regclass)", RuleOtherSessions},
	{"select dblink_exec('dbname=x', 'reset all')", RuleDynamicSQL},

	// ddl.
	{"create table t (id int)", RuleDDL},
	{"CREATE TEMP TABLE t (id int)", RuleDDL},
	{"create table t as select 1", RuleDDL},
	{"select 1 into t2", RuleDDL},
	{"select * into temp t2 from items", RuleDDL},
	{"insert into t select 1 into x", RuleDDL},
	{"explain create table t as select 1", RuleDDL},
	{"alter table items add column x int", RuleDDL},
	{"drop table items", RuleDDL},
	{"create index on items (id)", RuleDDL},
	{"create schema s", RuleDDL},
	{"create view v as select 1", RuleDDL},
	{"create materialized view mv as select 1", RuleDDL},
	{"refresh materialized view mv", RuleDDL},
	{"create sequence s", RuleDDL},
	{"create type t as (a int)", RuleDDL},
	{"create extension hstore", RuleDDL},
	{"create role r", RuleDDL},
	{"alter role current_user set app.current_org = 'x'", RuleDDL},
	{"alter database d set row_security = off", RuleDDL},
	{"alter system set work_mem = '1MB'", RuleDDL},
	{"grant select on items to public", RuleDDL},
	{"revoke select on items from public", RuleDDL},
	{"comment on table items is 'x'", RuleDDL},
	{"security label on table items is 'x'", RuleDDL},
	{"alter default privileges grant select on tables to public", RuleDDL},
	{"create database d", RuleDDL},
	{"select 1; create table t (id int)", RuleDDL},
}

func newTestGuard(t testing.TB, cfg GuardConfig) *Guard {
	t.Helper()
	g, err := NewGuard(cfg)
	if err != nil {
		t.Fatalf("NewGuard: %v", err)
	}
	return g
}

func TestGuardBlocksEachStatementByItsRuleAndAllowsTheRest(t *testing.T) {
	t.Parallel()
	g := newTestGuard(t, GuardConfig{})
	for _, c := range guardCases {
		for range 2 { // the second time from the cache
			v := g.Check(c.sql)
			if v.Rule != c.rule {
				t.Errorf("Check(%q) = rule %q, want %q", c.sql, v.Rule, c.rule)
			}
		}
		if c.rule != "" && precheckAllows(c.sql) {
			t.Errorf("the pre-check lets %q through, but it is blocked (%s)", c.sql, c.rule)
		}
	}
	if n := len(guardCases); n < 80 {
		t.Errorf("only %d cases", n)
	}
}

func TestBlockedVerdictsNameTheRuleAndSayWhatToDo(t *testing.T) {
	t.Parallel()
	g := newTestGuard(t, GuardConfig{})
	v := g.Check("select set_config('app.current_org','globex',false)")
	want := "pgtenant: changing a reserved setting is not allowed for tenant sessions (rule reserved_setting)"
	if !v.Blocked() || v.Message != want || v.Hint == "" {
		t.Errorf("verdict = %+v, want message %q and a hint", v, want)
	}
	if (Verdict{}).Blocked() {
		t.Error("the zero Verdict is blocked")
	}
	for _, name := range RuleNames() {
		id, _ := ruleByName(name)
		v := verdicts[id]
		if v.Rule != name || !strings.HasSuffix(v.Message, "(rule "+name+")") || !strings.HasPrefix(v.Message, "pgtenant: ") || v.Hint == "" {
			t.Errorf("verdict of rule %s = %+v", name, v)
		}
	}
}

func TestRuleNamesAreTheDocumentedOnes(t *testing.T) {
	t.Parallel()
	want := []string{"reserved_setting", "reset_all", "discard_all", "set_role", "do_block", "function_ddl",
		"listen_notify", "other_sessions", "signal", "advisory_lock", "truncate", "copy_file", "dynamic_sql",
		"large_object", "lock_table", "ddl", "too_complex"}
	if got := RuleNames(); !slices.Equal(got, want) {
		t.Errorf("RuleNames() = %v, want %v", got, want)
	}
}

func TestAllowedRulesAreSkippedButTheRestOfTheStatementIsStillChecked(t *testing.T) {
	t.Parallel()
	g := newTestGuard(t, GuardConfig{Allow: []string{"ddl", "truncate", "discard_all"}})
	for sql, want := range map[string]string{
		"create table t (id int)":      "",
		"CREATE TEMP TABLE t (id int)": "",
		"select 1 into t2":             "",
		"truncate items":               "",
		"discard all":                  "",
		"create table t as select set_config('app.current_org','x',false)": RuleReservedSetting,
		"alter role current_user set app.current_org = 'x'":                RuleReservedSetting,
		"alter role current_user set work_mem = '1MB'":                     "",
		"create table t (id int default pg_terminate_backend(1)::int)":     RuleSignal,
		"create view v as select * from pg_stat_activity":                  RuleOtherSessions,
		"create function f() returns int as 'select 1' language sql":       RuleFunctionDDL,
		"reset all": RuleResetAll,
		"create table t (id int); select set_config('app.x', 'y', false)":   RuleReservedSetting,
		"create schema s create table t (id int) create view v as select 1": "",
	} {
		if got := g.Check(sql).Rule; got != want {
			t.Errorf("with ddl allowed, Check(%q) = %q, want %q", sql, got, want)
		}
	}
}

func TestAdvisoryLocksAreBlockedOnlyWhenConfigured(t *testing.T) {
	t.Parallel()
	off := newTestGuard(t, GuardConfig{})
	on := newTestGuard(t, GuardConfig{BlockAdvisoryLocks: true})
	for _, sql := range []string{
		"select pg_advisory_lock(1)",
		"select pg_try_advisory_xact_lock(1, 2)",
		"select pg_catalog.pg_advisory_unlock_all()",
	} {
		if v := off.Check(sql); v.Blocked() {
			t.Errorf("by default, Check(%q) = %q", sql, v.Rule)
		}
		if v := on.Check(sql); v.Rule != RuleAdvisoryLock {
			t.Errorf("with BlockAdvisoryLocks, Check(%q) = %q", sql, v.Rule)
		}
	}
}

func TestConfiguredReservedSettingsAddToTheBuiltInOnes(t *testing.T) {
	t.Parallel()
	g := newTestGuard(t, GuardConfig{ReservedSettings: []string{"citus.propagate_set_commands", "MyExt.*", "audit."}})
	for sql, want := range map[string]string{
		"set citus.propagate_set_commands = 'none'":        RuleReservedSetting,
		"set myext.level = 1":                              RuleReservedSetting,
		`SET "MYEXT.LEVEL" = 1`:                            RuleReservedSetting,
		"select set_config('audit.off','1',false)":         RuleReservedSetting,
		"set app.current_org = 'x'":                        RuleReservedSetting,
		"set myextension.level = 1":                        "",
		"set citus.propagate_set_commands_other = 'x'":     "",
		"select set_config('statement_timeout','1',false)": "",
	} {
		if got := g.Check(sql).Rule; got != want {
			t.Errorf("Check(%q) = %q, want %q", sql, got, want)
		}
	}
}

func TestNewGuardRejectsWhatItCannotHonour(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		cfg  GuardConfig
		want string
	}{
		{GuardConfig{Allow: []string{"ddl", "create_table"}}, `"create_table"`},
		{GuardConfig{Allow: []string{"too_complex"}}, `"too_complex"`},
		{GuardConfig{ReservedSettings: []string{""}}, `""`},
		{GuardConfig{ReservedSettings: []string{"a*b"}}, `"a*b"`},
		{GuardConfig{ReservedSettings: []string{"my setting"}}, `"my setting"`},
	} {
		_, err := NewGuard(c.cfg)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("NewGuard(%+v) = %v, want an error naming %s", c.cfg, err, c.want)
		}
	}
}

func TestPlainStatementsSkipTheParserAndTheRestAreParsedOnce(t *testing.T) {
	t.Parallel()
	g := newTestGuard(t, GuardConfig{})
	for range 3 {
		g.Check("SELECT id FROM items WHERE org_id = $1")
		g.Check(`SELECT "id" FROM "items"`)
		g.Check("set role postgres")
		g.Check("selec 1")
	}
	want := GuardStats{Checks: 12, Prechecked: 3, CacheHits: 6, Parses: 3, ParseErrors: 1, Blocked: 3}
	if got := g.Stats(); got != want {
		t.Errorf("Stats() = %+v, want %+v", got, want)
	}
}

func TestThePrecheckSendsEveryNameARuleMentionsToTheParser(t *testing.T) {
	t.Parallel()
	var names []string
	for name := range funcRules {
		names = append(names, name)
	}
	for name := range relRules {
		names = append(names, name)
	}
	for _, p := range funcPrefixRules {
		names = append(names, p.prefix+"x")
	}
	for _, p := range relPrefixRules {
		names = append(names, p.prefix+"x")
	}
	names = append(names, "set_config", "pg_settings")
	for _, name := range names {
		for _, sql := range []string{
			"select " + name + "(1)",
			"SELECT " + strings.ToUpper(name) + "(1)",
			"select * from " + name,
			"with a as (select 1) select x." + name + "(1) from a",
		} {
			if precheckAllows(sql) {
				t.Errorf("the pre-check lets %q through", sql)
			}
		}
	}
}

func TestThePrecheckGivesUpOnAnythingItCannotReadLikePostgreSQL(t *testing.T) {
	t.Parallel()
	for _, sql := range []string{
		`select "x"`,                    // quoted identifier
		`select U&'\0041'`,              // unicode escapes
		`select E'\x41'`,                // escape string
		`select e'a'`,                   // escape string, lowercase
		`select x'41'`,                  // hex string
		`select 'a\'`,                   // backslash
		"select $$x$$",                  // dollar quote
		"select $a$x$a$",                // tagged dollar quote
		"select 1$$x$$",                 // dollar quote after a number
		"select $1$$x$$",                // dollar quote after a parameter
		"select 1; select 2",            // two statements
		"select 1; -- and then",         // comment after the end
		"select 1 /* unterminated",      // unterminated comment
		"select 'unterminated",          // unterminated string
		"select 1 into t",               // SELECT INTO
		"insert into t select 1 into x", // a second INTO
		"commit prepared 'x'",           // another session's transaction
		"(select 1)",                    // does not start with a word
		"/* c */ set role x",            // not a plain statement after the comment
		"explain select 1",              // not a plain statement
		"select 1\x00",                  // NUL
		"-- only a comment",             // no statement
		"",                              // nothing
		"select " + strings.Repeat("x", maxPrecheckWord+1), // word too long to check
	} {
		if precheckAllows(sql) {
			t.Errorf("the pre-check lets %q through", sql)
		}
	}
	for _, sql := range []string{
		"select 1",
		"SELECT a.id, b.name FROM a JOIN b ON b.id = a.b_id WHERE a.org_id = $1 ORDER BY 1 LIMIT 10;",
		"/* app=web */ select 1 -- trailing\n",
		"/* /* nested */ select 1 */ select 2",
		"insert into items (a, b) values ($1, 'x; \"y\" & z -- not a comment')",
		"update items set n = n + 1, note = 'pg_stat_activity' where id = $12",
		"select 1 -- select set_config('app.x','y',false)",
		"select a$$b from t", // $ inside an identifier
		"begin isolation level repeatable read",
	} {
		if !precheckAllows(sql) {
			t.Errorf("the pre-check sends %q to the parser", sql)
		}
	}
}

func TestStatementsTooComplexToParseSafelyAreBlocked(t *testing.T) {
	t.Parallel()
	g := newTestGuard(t, GuardConfig{})
	chain := strings.Repeat("+1", 40000) // crashes libpg_query's protobuf output on an 8 MiB stack
	if v := g.Check("select set_config('statement_timeout','1',false)" + chain); v.Rule != RuleTooComplex {
		t.Errorf("a 40,000-term chain with a function call: rule %q, want %q", v.Rule, RuleTooComplex)
	}
	if v := g.Check("select 1" + chain); v.Blocked() {
		t.Errorf("a 40,000-term chain of constants (pre-checked): rule %q", v.Rule)
	}
	if fp := Fingerprint(`select "x"` + chain); fp != "<too complex SELECT statement>" {
		t.Errorf("Fingerprint of a 40,000-term chain = %.80q", fp)
	}
	// Deep but within bounds: parsed, and the Go side copes with the depth.
	if v := g.Check("select set_config('app.current_org','x',false)" + strings.Repeat("+1", 4500)); v.Rule != RuleReservedSetting {
		t.Errorf("a 4,500-term chain with set_config: rule %q", v.Rule)
	}
	if v := g.Check(`select "x"` + strings.Repeat(" union all select 1", 1500)); v.Blocked() {
		t.Errorf("1,500 UNIONs: rule %q", v.Rule)
	}
	// Texts PostgreSQL's scanner would take seconds over.
	for name, sql := range map[string]string{
		"a run of +-":            `select "x", 1 ` + strings.Repeat("+-", 16000) + "1",
		"a run of + before /*":   `select "x", 1 ` + strings.Repeat("+", 32000) + "/* */ 1",
		"nested comment openers": `select "x" ` + strings.Repeat("/*", 16000) + strings.Repeat("*/", 16000),
	} {
		start := time.Now()
		v := g.Check(sql)
		fp := Fingerprint(sql)
		if v.Rule != RuleTooComplex || fp != "<too complex SELECT statement>" {
			t.Errorf("%s: rule %q, fingerprint %q", name, v.Rule, fp)
		}
		if d := time.Since(start); d > time.Second {
			t.Errorf("%s: took %v", name, d)
		}
	}
	// Decorations inside comments and literals are not.
	for _, sql := range []string{
		`select "x" -- ` + strings.Repeat("=-", 100),
		`select "x" /* ` + strings.Repeat("*", 200) + ` */`,
		`select "x" /*` + strings.Repeat("-", 200) + `*/`,
		`select "x", '` + strings.Repeat("+-", 100) + `'`,
		`select "x", E'\'` + strings.Repeat("+-", 100) + `'`,
		`select "x", $tag$` + strings.Repeat("/*", 100) + `$tag$`,
		`select "` + strings.Repeat("<>", 100) + `"`,
	} {
		if v := g.Check(sql); v.Blocked() {
			t.Errorf("%.40q...: rule %q", sql, v.Rule)
		}
	}
	// Long but flat texts are not too complex.
	values := "insert into items values " + strings.TrimSuffix(strings.Repeat(`(1, '"a" \ b', -2),`, 20000), ",")
	if v := g.Check(values); v.Blocked() {
		t.Errorf("a 20,000-row VALUES list: rule %q", v.Rule)
	}
}

func TestTheCacheStaysBoundedAndKeepsRecentTexts(t *testing.T) {
	t.Parallel()
	g := newTestGuard(t, GuardConfig{CacheSize: 100})
	hot := `select "hot"`
	for i := range 1000 {
		g.Check(fmt.Sprintf(`select "c%d"`, i))
		g.Check(hot)
	}
	if n := g.cache.len(); n > 100 {
		t.Errorf("cache holds %d texts, more than its size 100", n)
	}
	if s := g.Stats(); s.Parses != 1001 || s.CacheHits != 999 {
		t.Errorf("stats = %+v, want the hot text parsed once", s)
	}
	long := `select "x", '` + strings.Repeat("y", MaxCachedStatementLen) + `'`
	g.Check(long)
	g.Check(long)
	if s := g.Stats(); s.Parses != 1003 {
		t.Errorf("a text longer than MaxCachedStatementLen was cached: %+v", s)
	}
	if uncached := newTestGuard(t, GuardConfig{CacheSize: -1}); uncached.cache != nil {
		t.Error("a negative CacheSize does not disable the cache")
	}
}

func TestTheGuardIsSafeForConcurrentUse(t *testing.T) {
	t.Parallel()
	g := newTestGuard(t, GuardConfig{CacheSize: 64})
	var wg sync.WaitGroup
	for w := range 8 {
		wg.Go(func() {
			for i := range 200 {
				c := guardCases[(w*31+i)%len(guardCases)]
				if v := g.Check(c.sql); v.Rule != c.rule {
					t.Errorf("Check(%q) = %q, want %q", c.sql, v.Rule, c.rule)
					return
				}
			}
		})
	}
	wg.Wait()
	if s := g.Stats(); s.Checks != 1600 || s.Prechecked+s.CacheHits+s.Parses != s.Checks {
		t.Errorf("stats do not add up: %+v", s)
	}
}

func TestFingerprintKeepsTheShapeAndDropsLiteralsAndComments(t *testing.T) {
	t.Parallel()
	for sql, want := range map[string]string{
		"SELECT * FROM items WHERE name = 'secret' AND n > 42 /* user=bob */ -- note": "SELECT * FROM items WHERE name = $1 AND n > $2",
		"select set_config('app.current_org','globex',false)":                         "select set_config($1,$2,$3)",
		"SeT LoCaL app.CURRENT_ORG to globex":                                         "SeT LoCaL app.CURRENT_ORG to $1",
		"copy items to '/tmp/secret'":                                                 "copy items to ?",
		"create user bob password 'hunter2'":                                          "create user bob password $1",
		"do $$begin perform set_config('app.current_org','x',false); end$$":           "do $1",
		"select\n\t1,\n\t'x'":                                                         "select $1, $2",
		"commit prepared 'gid-with-secret'":                                           "commit prepared ?",
	} {
		if got := Fingerprint(sql); got != want {
			t.Errorf("Fingerprint(%q) = %q, want %q", sql, got, want)
		}
	}
	long := Fingerprint("select " + strings.Repeat("a_rather_long_column_name, ", 200) + "1")
	if len(long) > MaxFingerprintLen || !strings.HasSuffix(long, "...") {
		t.Errorf("long fingerprint: %d bytes, ends %q", len(long), long[len(long)-10:])
	}
}

func TestFingerprintOfInvalidSQLKeepsAtMostTheFirstKeyword(t *testing.T) {
	t.Parallel()
	for sql, want := range map[string]string{
		"select 'hunter2":        "<unparsable SELECT statement>",
		"  (SELECT secret_token": "<unparsable SELECT statement>",
		"hunter2 is my password": "<unparsable statement>",
		"set password 'x":        "<unparsable SET statement>",
		"":                       "",
		"selectsecret from":      "<unparsable statement>",
	} {
		if got := Fingerprint(sql); got != want {
			t.Errorf("Fingerprint(%q) = %q, want %q", sql, got, want)
		}
	}
}

// TestTamperingVariantsReallyChangeTheContextInPostgreSQL proves the blocked
// cases are real threats, not just odd spellings: each one, run by
// PostgreSQL, changes app.current_org; the guard blocks each.
func TestTamperingVariantsReallyChangeTheContextInPostgreSQL(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	conn, err := testpg.Cluster(t).Connect(ctx, "postgres")
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	g := newTestGuard(t, GuardConfig{})
	for _, sql := range []string{
		"select set_config('app.current_org','evil',false)",
		"SELECT pg_catalog.set_config('app.'||'current_org','evil',true)",
		`set "app.current_org" = 'evil'`,
		"SeT LoCaL app.CURRENT_ORG to evil",
		`select U&"\0073et_config"('app.current_org','evil',false)`,
		`select set_config(E'app\x2ecurrent_org','evil',false)`,
		"select set_config(name,'evil',false) from (values ('app.current_org')) v(name)",
		"do $$begin perform set_config('app.current_org','evil',false); end$$",
		"select 1; set local app.current_org = 'evil'",
		"prepare p as select set_config('app.current_org','evil',true); execute p; deallocate p",
	} {
		if v := g.Check(sql); !v.Blocked() {
			t.Errorf("the guard allows %q", sql)
		}
		got := runAndReadOrg(ctx, t, conn, sql)
		if got != "evil" {
			t.Errorf("%q left app.current_org = %q: not a real tampering case", sql, got)
		}
	}
	// pg_settings lists no placeholder such as app.current_org, but writing
	// to it changes the settings it does list.
	viaView := "update pg_settings set setting = 'off' where name = 'row_security'"
	if v := g.Check(viaView); !v.Blocked() {
		t.Errorf("the guard allows %q", viaView)
	}
	if got := runAndReadOrg(ctx, t, conn, viaView, "select set_config('app.current_org', current_setting('row_security'), true)"); got != "off" {
		t.Errorf("%q left row_security = %q", viaView, got)
	}
}

// TestStandardConformingStringsOffWouldHideStatementsFromTheGuard shows why
// the guard blocks switching standard_conforming_strings off: with it off,
// PostgreSQL ends a string literal where the guard (which reads text as
// PostgreSQL does with it on) does not, and runs a set_config the guard saw
// as string content.
func TestStandardConformingStringsOffWouldHideStatementsFromTheGuard(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	conn, err := testpg.Cluster(t).Connect(ctx, "postgres")
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	g := newTestGuard(t, GuardConfig{})
	if v := g.Check("set standard_conforming_strings = off"); v.Rule != RuleReservedSetting {
		t.Fatalf("the guard allows switching standard_conforming_strings off (%q)", v.Rule)
	}
	hidden := `select 'a\' || ' , set_config($$app.current_org$$, $$evil$$, false) -- '`
	if v := g.Check(hidden); v.Blocked() {
		t.Fatalf("the guard sees through %q (%s): the test no longer shows the divergence", hidden, v.Rule)
	}
	if got := runAndReadOrg(ctx, t, conn, "set local standard_conforming_strings = off", hidden); got != "evil" {
		t.Errorf("with standard_conforming_strings off, PostgreSQL did not run the hidden set_config (app.current_org = %q)", got)
	}
}

// runAndReadOrg runs each statement text in turn, in a transaction with
// app.current_org = 'good' that it rolls back, and returns app.current_org as
// they left it.
func runAndReadOrg(ctx context.Context, t *testing.T, conn *pgx.Conn, stmts ...string) string {
	t.Helper()
	tx, err := conn.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = tx.Rollback(ctx) }()
	for _, sql := range append([]string{"set local app.current_org = 'good'"}, stmts...) {
		if _, err := tx.Exec(ctx, sql); err != nil { // no arguments: simple protocol
			t.Errorf("%q: %v", sql, err)
			return ""
		}
	}
	var org string
	if err := tx.QueryRow(ctx, "select current_setting('app.current_org')").Scan(&org); err != nil {
		t.Fatal(err)
	}
	return org
}

func TestEveryRuleHasACase(t *testing.T) {
	t.Parallel()
	seen := map[string]bool{RuleAdvisoryLock: true, RuleTooComplex: true} // tested on their own
	for _, c := range guardCases {
		seen[c.rule] = true
	}
	for _, name := range RuleNames() {
		if !seen[name] {
			t.Errorf("no case for rule %s", name)
		}
	}
}

// The tree escapes <, > and & in strings (FuzzGuard found SET NAMES '>'
// refused): the walker reads them as the plain characters they are.
func TestSettingValuesWithHTMLCharactersAreReadAsTheyAre(t *testing.T) {
	t.Parallel()
	g := newTestGuard(t, GuardConfig{})
	for _, sql := range []string{"SET NAMES '>'", "SET application_name = 'a<b&c'", "SET NAMES'>'"} {
		if v := g.Check(sql); v.Rule != "" {
			t.Errorf("%s: refused (%s)", sql, v.Rule)
		}
		if ref, ok := g.decodedTreeRule(sql); ok && rules[ref].name != "" {
			t.Errorf("%s: the decoded tree refuses it (%s)", sql, rules[ref].name)
		}
	}
	// A quote in a setting's name still makes it no plain setting.
	if v := g.Check(`SET "work""mem" = '1'`); v.Rule == "" {
		t.Error(`SET "work""mem" was allowed`)
	}
}
