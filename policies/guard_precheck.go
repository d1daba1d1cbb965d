package policies

import (
	"strings"

	"github.com/pgtenant/pgtenant/internal/sqllex"
)

// precheckFirstWords are the statements the pre-check may let through: their
// grammar admits no statement inside them other than SELECT, INSERT, UPDATE,
// DELETE (in WITH), and no rule applies to them except through a function
// or relation name or an INTO or PREPARED keyword, all of which are words
// the pre-check looks for.
var precheckFirstWords = map[string]bool{
	"select": true, "insert": true, "update": true, "delete": true, "with": true, "values": true,
	"begin": true, "start": true, "commit": true, "end": true, "rollback": true, "abort": true,
	"savepoint": true, "release": true, "fetch": true, "close": true, "show": true,
}

// precheckTokens are lowercase substrings that send a text to the parser when
// a word contains them. Every function and relation name a rule names is
// covered, by "pg_" or by itself (see init).
var precheckTokens = []string{
	"pg_", "set_config", "into", "prepared",
	// Cannot occur after a first word above; looked for all the same.
	"copy", "notify", "listen", "truncate",
}

func init() {
	add := func(name string) {
		for _, t := range precheckTokens {
			if strings.Contains(name, t) {
				return
			}
		}
		precheckTokens = append(precheckTokens, name)
	}
	for name := range funcRules {
		add(name)
	}
	for _, p := range funcPrefixRules {
		add(p.prefix)
	}
	for name := range relRules {
		add(name)
	}
	for _, p := range relPrefixRules {
		add(p.prefix)
	}
	for _, t := range precheckTokens {
		tokensByFirst[t[0]] = append(tokensByFirst[t[0]], t)
		minTokenLen = min(minTokenLen, len(t))
	}
}

// tokensByFirst indexes precheckTokens by their first byte.
var (
	tokensByFirst [256][]string
	minTokenLen   = maxPrecheckWord
)

// maxPrecheckWord is the longest word the pre-check lowercases; longer words
// (PostgreSQL truncates identifiers to 63 bytes) send the text to the parser.
const maxPrecheckWord = 64

// precheckAllows reports whether sql is certainly allowed without parsing
// it: one statement, whose first word is in precheckFirstWords, in which no
// word outside string literals and comments contains a precheckTokens entry
// (INSERT may have its one INTO). It lexes the way PostgreSQL does for the
// subset it accepts and gives up (returns false) on everything else: quoted
// identifiers and U&"..." escapes ("), other string kinds (a quote right
// after a letter, as in E'...', or &), backslashes, dollar quotes, a
// semicolon before the end, unterminated strings or comments, NUL. Words
// inside comments and standard string literals are data, never names.
func precheckAllows(sql string) bool {
	first := true // the next token is the statement's first
	insert := false
	intos := 0
	var buf [maxPrecheckWord]byte
	for i := 0; i < len(sql); {
		c := sql[i]
		switch {
		case isSQLSpace(c):
			i++
		case c == '-' && i+1 < len(sql) && sql[i+1] == '-':
			i += 2
			for i < len(sql) && sql[i] != '\n' && sql[i] != '\r' {
				i++
			}
		case c == '/' && i+1 < len(sql) && sql[i+1] == '*':
			if i = sqllex.SkipBlockComment(sql, i); i < 0 {
				return false
			}
		case isWordByte(c):
			j := i
			for j < len(sql) && isWordByte(sql[j]) {
				j++
			}
			w := sql[i:j]
			if len(w) > maxPrecheckWord {
				return false
			}
			// A $ opens a dollar quote unless it is part of a parameter
			// ($1) or of an identifier; after a number it is not.
			if c == '$' && !isParam(w) || c >= '0' && c <= '9' && strings.IndexByte(w, '$') >= 0 {
				return false
			}
			lw := buf[:len(w)]
			for k := 0; k < len(w); k++ {
				lw[k] = lowerASCII(w[k])
			}
			if first {
				if !precheckFirstWords[string(lw)] {
					return false
				}
				first, insert = false, string(lw) == "insert"
			} else if !precheckWordOK(lw, insert, &intos) {
				return false
			}
			i = j
		case first:
			return false
		case c == '\'':
			if isWordByte(sql[i-1]) { // E'', B'', X'', N'', or glued to a word
				return false
			}
			if i = skipString(sql, i); i < 0 {
				return false
			}
		case c == ';':
			for i++; i < len(sql); i++ {
				if !isSQLSpace(sql[i]) {
					return false
				}
			}
		case c == '"' || c == '&' || c == '\\' || c == 0:
			return false
		default: // operators and punctuation
			i++
		}
	}
	return !first
}

// precheckWordOK reports whether a lowercase word outside strings and
// comments contains no token. An INSERT statement has one INTO of its own;
// a second one could be SELECT ... INTO.
func precheckWordOK(w []byte, insert bool, intos *int) bool {
	for k := 0; k+minTokenLen <= len(w); k++ {
		for _, t := range tokensByFirst[w[k]] {
			if len(w)-k < len(t) || string(w[k:k+len(t)]) != t {
				continue
			}
			if t == "into" && insert && len(w) == len(t) && *intos == 0 {
				*intos++
				continue
			}
			return false
		}
	}
	return true
}

// skipString returns the index after the standard string literal starting at
// sql[i], or -1 if it is unterminated or holds a backslash. With
// standard_conforming_strings on, only a doubled quote escapes a quote; with
// it off, a backslash does too.
func skipString(sql string, i int) int {
	for i++; i < len(sql); i++ {
		if sql[i] == '\\' {
			return -1
		}
		if sql[i] == '\'' {
			if i+1 < len(sql) && sql[i+1] == '\'' {
				i++
				continue
			}
			return i + 1
		}
	}
	return -1
}

// isSQLSpace matches PostgreSQL's whitespace.
func isSQLSpace(c byte) bool {
	return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v'
}

// isWordByte matches the bytes of identifiers, keywords, numbers and
// parameters: PostgreSQL's identifier characters, which include $ and every
// non-ASCII byte.
func isWordByte(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '$' || c >= 0x80
}

// isParam reports whether w is a parameter reference such as $1.
func isParam(w string) bool {
	if len(w) < 2 {
		return false
	}
	for i := 1; i < len(w); i++ {
		if w[i] < '0' || w[i] > '9' {
			return false
		}
	}
	return true
}

func lowerASCII(c byte) byte {
	if c >= 'A' && c <= 'Z' {
		return c + 'a' - 'A'
	}
	return c
}
