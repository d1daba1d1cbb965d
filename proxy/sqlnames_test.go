package proxy

import (
	"strings"
	"testing"
)

func TestSQLLexerSeesOnlyWordsOutsideLiteralsAndComments(t *testing.T) {
	for sql, want := range map[string]string{
		"EXECUTE q(1, 'x')":                            "EXECUTE q ( , )",
		"SELECT 'EXECUTE q', E'\\'EXECUTE q'":          "SELECT ,",
		"SELECT 1 -- EXECUTE q\n, 2":                   "SELECT ,",
		"SELECT /* a /* nested */ EXECUTE q */ 1":      "SELECT",
		"DO $f$ BEGIN EXECUTE 'x'; END $f$; EXECUTE q": "DO ; EXECUTE q",
		"SELECT $1, $$EXECUTE q$$":                     "SELECT ,",
		`EXECUTE "Q ""x"""`:                            `EXECUTE "Q ""x"""`,
		"PREPARE p (numeric(10,2)) AS SELECT $1":       "PREPARE p ( numeric ( , ) ) AS SELECT",
		"SELECT 'unterminated":                         "SELECT",
	} {
		l := sqlLexer{sql: []byte(sql)}
		var got []string
		for {
			tok, ok := l.next()
			if !ok {
				break
			}
			got = append(got, sql[tok.start:tok.end])
		}
		if g := strings.Join(got, " "); g != want {
			t.Errorf("%q: tokens %q, want %q", sql, g, want)
		}
	}
}

func TestPrepareBodyIsTheStatementAfterAS(t *testing.T) {
	for sql, want := range map[string]string{
		"PREPARE p AS SELECT 1":                         "SELECT 1",
		"PREPARE p (int, numeric(3,1)) AS SELECT $1; x": "SELECT $1",
		"PREPARE p AS SELECT ';' ":                      "SELECT ';'",
		"PREPARE p SELECT 1":                            "",
		"PREPARE p (int AS SELECT 1":                    "",
	} {
		l := sqlLexer{sql: []byte(sql)}
		l.next()
		l.next() // PREPARE p
		body, ok := prepareBody(&l)
		if string(body) != want || ok != (want != "") {
			t.Errorf("%q: body %q, %v; want %q", sql, body, ok, want)
		}
	}
}

func FuzzSQLLexer(f *testing.F) {
	for _, s := range []string{"EXECUTE q(1)", "PREPARE p (int) AS SELECT $1; EXECUTE p(2)", "SELECT $$a$$, 'b''c', E'\\'', \"d\"\"e\" -- f\n/* /* g */ */", "$a", "U&\"\\0070\""} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, sql string) {
		l := sqlLexer{sql: []byte(sql)}
		last := 0
		for {
			tok, ok := l.next()
			if !ok {
				break
			}
			if tok.start < last || tok.end <= tok.start || tok.end > len(sql) {
				t.Fatalf("token [%d,%d) after %d in %q", tok.start, tok.end, last, sql)
			}
			last = tok.end
		}
		l = sqlLexer{sql: []byte(sql)}
		if body, ok := prepareBody(&l); ok && len(body) == 0 {
			t.Fatalf("empty PREPARE body accepted in %q", sql)
		}
	})
}
