package proxy

import (
	"bytes"
	"strings"
	"testing"
	"unicode/utf8"
)

func TestScanSQLFindsWhatTheProxyMustKnow(t *testing.T) {
	cases := []struct {
		sql  string
		want stmtFlags
	}{
		{"SELECT * FROM items", 0},
		{"select start_date, begin_at from t", 0},
		{"BEGIN", flagTxControl | flagBegin},
		{"  begin isolation level serializable", flagTxControl | flagTxModes | flagBegin},
		{"START TRANSACTION READ ONLY, DEFERRABLE", flagTxControl | flagTxModes | flagBegin},
		{"START TRANSACTION", flagTxControl | flagBegin},
		{"BEGIN; SELECT 1", flagTxControl | flagOwnTransaction},
		{"begin;  ;", flagTxControl | flagBegin},
		{"/* x */ BEGIN", flagTxControl}, // not known to be a lone BEGIN: the context goes first
		{"COMMIT AND CHAIN", flagTxControl | flagChain},
		{"commit", flagTxControl},
		{"END", flagTxControl},
		{"SELECT 1; COMMIT; SELECT 2", flagTxControl | flagOwnTransaction},
		{"VACUUM items", flagOwnTransaction},
		{"vacuum (analyze) items", flagOwnTransaction},
		{"CREATE INDEX CONCURRENTLY i ON t (a)", flagOwnTransaction},
		{"create unique index concurrently i on t (a)", flagOwnTransaction},
		{"DROP INDEX CONCURRENTLY i", flagOwnTransaction},
		{"REINDEX TABLE t", flagOwnTransaction},
		{"CREATE DATABASE d", flagOwnTransaction},
		{"ALTER SYSTEM SET work_mem = '1MB'", flagOwnTransaction},
		{"COMMIT PREPARED 'x'", flagTxControl | flagOwnTransaction},
		{"DISCARD ALL", flagOwnTransaction | flagDropsStatements | flagSessionSet},
		{"SET search_path = a, b", flagSessionSet},
		{"DO $$BEGIN SET work_mem = '1MB'; END$$", flagSessionSet},
		{"select 1; do 'begin null; end'", flagTxControl | flagOwnTransaction | flagSessionSet},
		{"select 1; reset all", flagSessionSet},
		{"UPDATE t SET a = 1", 0},
		{"SELECT set_config('x.y', 'z', false)", flagSessionSet},
		{"DEALLOCATE ALL", flagDropsStatements},
		{"PREPARE q AS SELECT 1", flagTxControl | flagSQLNames},
		{"EXPLAIN EXECUTE q", flagSQLNames},
		{"/* comment */ SELECT 'begin'", flagTxControl}, // over-approximation: harmless
	}
	for _, c := range cases {
		if got := scanSQL([]byte(c.sql)); got != c.want {
			t.Errorf("scanSQL(%q) = %b, want %b", c.sql, got, c.want)
		}
	}
}

func FuzzScanSQL(f *testing.F) {
	for _, s := range []string{"BEGIN", "VACUUM x", "SELECT 1; COMMIT", "create index concurrently", "\xff\x00;;"} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, sql []byte) {
		flags := scanSQL(sql)
		// Anything that could open or close a transaction block is flagged.
		for _, kw := range []string{"BEGIN", "START", "COMMIT", "END", "ROLLBACK", "ABORT"} {
			if containsWord(sql, kw) && flags&flagTxControl == 0 {
				t.Fatalf("%q contains %s but is not flagged", sql, kw)
			}
		}
		// A lone BEGIN runs without the context: nothing may follow it.
		if flags&flagBegin != 0 {
			if i := bytes.IndexByte(sql, ';'); i >= 0 && len(bytes.Trim(sql[i:], "; \t\n\r\f\v")) > 0 {
				t.Fatalf("%q is flagged as a lone BEGIN but has a second statement", sql)
			}
			start := bytes.IndexFunc(sql, func(r rune) bool {
				return r == utf8.RuneError || r < utf8.RuneSelf && isWordByte(byte(r)) || r >= utf8.RuneSelf
			})
			first := strings.ToUpper(string(sql[start:]))
			if !strings.HasPrefix(first, "BEGIN") && !strings.HasPrefix(first, "START") {
				t.Fatalf("%q is flagged as a lone BEGIN but starts with something else", sql)
			}
		}
	})
}

// containsWord is a slow, obviously correct reference for scanSQL's word test.
func containsWord(sql []byte, kw string) bool {
	for i := 0; i+len(kw) <= len(sql); i++ {
		if (i == 0 || !isWordByte(sql[i-1])) && wordIs(sql[i:i+len(kw)], kw) &&
			(i+len(kw) == len(sql) || !isWordByte(sql[i+len(kw)])) {
			return true
		}
	}
	return false
}

// scanSQL runs on every Query and Parse: it must not allocate.
func TestScanSQLAllocatesNothing(t *testing.T) {
	for _, sql := range []string{"SELECT * FROM items WHERE id = $1", "BEGIN ISOLATION LEVEL SERIALIZABLE", "COMMIT AND CHAIN", "VACUUM t; SELECT set_config('a', 'b', false)"} {
		text := []byte(sql)
		if n := testing.AllocsPerRun(100, func() { scanSQL(text) }); n != 0 {
			t.Errorf("scanSQL(%q) allocates %.0f times", sql, n)
		}
	}
}
