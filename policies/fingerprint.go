package policies

import (
	"strings"
	"unicode/utf8"

	pg "github.com/pganalyze/pg_query_go/v6"
)

// MaxFingerprintLen bounds the length of a fingerprint, in bytes.
const MaxFingerprintLen = 1 << 10

// Fingerprint returns sql without its literal values, for audit events and
// logs: pg_query's normalization (constants become $1, $2 ...), with the
// constants it keeps (COPY file names, some utility options) replaced by ?,
// comments dropped and whitespace collapsed, truncated to MaxFingerprintLen.
// For text that is not valid SQL, or that nests too deeply to parse safely,
// it returns a placeholder naming at most the statement's first keyword.
func Fingerprint(sql string) string {
	if tooComplex(sql) {
		return placeholder("too complex", sql)
	}
	norm, err := pg.Normalize(sql)
	if err != nil {
		return placeholder("unparsable", sql)
	}
	res, err := pg.Scan(norm)
	if err != nil {
		return placeholder("unparsable", sql)
	}
	var b strings.Builder
	end := 0
	for _, t := range res.Tokens {
		if b.Len() > MaxFingerprintLen {
			break
		}
		switch t.Token {
		case pg.Token_SQL_COMMENT, pg.Token_C_COMMENT:
			continue
		}
		if b.Len() > 0 && int(t.Start) > end {
			b.WriteByte(' ')
		}
		end = int(t.End)
		switch t.Token {
		case pg.Token_SCONST, pg.Token_USCONST, pg.Token_BCONST, pg.Token_XCONST, pg.Token_ICONST, pg.Token_FCONST:
			b.WriteByte('?')
		default:
			b.WriteString(norm[t.Start:t.End])
		}
	}
	return truncateFingerprint(b.String())
}

func truncateFingerprint(s string) string {
	if len(s) <= MaxFingerprintLen {
		return s
	}
	const ellipsis = "..."
	cut := MaxFingerprintLen - len(ellipsis)
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut] + ellipsis
}

// statementKeywords are the first words a placeholder may repeat: fixed
// words, so that no data from the text reaches a log.
var statementKeywords = map[string]bool{
	"abort": true, "alter": true, "analyze": true, "begin": true, "call": true, "checkpoint": true,
	"close": true, "cluster": true, "comment": true, "commit": true, "copy": true, "create": true,
	"deallocate": true, "declare": true, "delete": true, "discard": true, "do": true, "drop": true,
	"end": true, "execute": true, "explain": true, "fetch": true, "grant": true, "import": true,
	"insert": true, "listen": true, "load": true, "lock": true, "merge": true, "move": true,
	"notify": true, "prepare": true, "reassign": true, "refresh": true, "reindex": true,
	"release": true, "reset": true, "revoke": true, "rollback": true, "savepoint": true,
	"security": true, "select": true, "set": true, "show": true, "start": true, "table": true,
	"truncate": true, "unlisten": true, "update": true, "vacuum": true, "values": true, "with": true,
}

// placeholder stands in for a statement that cannot be fingerprinted.
func placeholder(why, sql string) string {
	w := strings.TrimLeft(sql, " \t\n\r\f\v(")
	if i := strings.IndexFunc(w, func(r rune) bool { return !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z') }); i >= 0 {
		w = w[:i]
	}
	if w = strings.ToLower(w); statementKeywords[w] {
		return "<" + why + " " + strings.ToUpper(w) + " statement>"
	}
	return "<" + why + " statement>"
}
