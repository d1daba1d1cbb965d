package proxy

import "testing"

func TestScanSQLFindsWhatTheProxyMustKnow(t *testing.T) {
	cases := []struct {
		sql  string
		want stmtFlags
	}{
		{"SELECT * FROM items", 0},
		{"select start_date, begin_at from t", 0},
		{"BEGIN", flagTxControl},
		{"  begin isolation level serializable", flagTxControl | flagTxModes},
		{"START TRANSACTION READ ONLY, DEFERRABLE", flagTxControl | flagTxModes},
		{"START TRANSACTION", flagTxControl},
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
