package policies

import (
	"strings"

	pg "github.com/pganalyze/pg_query_go/v6"
)

// The limits below keep libpg_query within its stack and its time: texts
// beyond them are blocked (rule too_complex) without being parsed.

// Nesting limits. libpg_query writes its parse tree out as JSON (and
// normalizes it) by recursion on the C stack, without a depth check: a long
// enough chain of operators (1+1+1..., +-+-+-1, x::t::t..., UNION, JOIN)
// crashes the process. Right-nested constructs are also bounded by the
// parser's own stack (about 10,000 entries), which fails with a syntax error.
// Measured: the deepest texts these limits let through parse with a 2 MiB
// thread stack, crash at 1 MiB, and cgo calls run on threads with the
// default stack size, which glibc takes from RLIMIT_STACK (8 MiB usually).
const (
	// shallowLen is the length up to which no text can nest deeply enough
	// to matter: a level costs at least one byte (+-+-+-1), so 4 KiB nests
	// at most about 4,000 levels.
	shallowLen = 4 << 10
	// maxNesting bounds nestingEstimate for longer texts.
	maxNesting = 5000
)

// tooComplex reports whether sql could take libpg_query too deep (see
// maxNesting) or too long (see maxOperatorRun) to hand it over.
func tooComplex(sql string) bool {
	return scannerHazard(sql) || len(sql) > shallowLen && nestingEstimate(sql) > maxNesting
}

// Scanner time limits. PostgreSQL's scanner (and so libpg_query's) takes time
// quadratic in the length of a run of operator characters that it has to
// split ("+-+-+-...", "+++.../*"), and in the number of comment openings
// in one run ("/*/*/*..."): 32 KiB of "+-" costs seconds. No statement has
// such runs outside literals and comments, nor comments nested that deeply.
const (
	maxOperatorRun  = 64
	maxCommentOpens = 64
)

// scannerHazard reports whether sql has a run of operator characters or of
// nested comment openings long enough to make the scanner slow. It lexes
// literals, quoted identifiers and comments roughly, enough not to count
// what is inside them; a mistake costs time, not safety, because the parser
// still decides.
func scannerHazard(sql string) bool {
	run := 0
	for i := 0; i < len(sql); {
		c := sql[i]
		switch {
		case c == '-' && i+1 < len(sql) && sql[i+1] == '-':
			for i < len(sql) && sql[i] != '\n' && sql[i] != '\r' {
				i++
			}
		case c == '/' && i+1 < len(sql) && sql[i+1] == '*':
			opens := 0
			for depth := 0; i < len(sql); {
				if sql[i] == '/' && i+1 < len(sql) && sql[i+1] == '*' {
					depth++
					if opens++; opens > maxCommentOpens {
						return true
					}
					i += 2
				} else if sql[i] == '*' && i+1 < len(sql) && sql[i+1] == '/' {
					i += 2
					if depth--; depth == 0 {
						break
					}
				} else {
					i++
				}
			}
		case c == '\'' || c == '"':
			escapes := c == '\'' && i > 0 && (sql[i-1] == 'e' || sql[i-1] == 'E') && (i == 1 || !isWordByte(sql[i-2]))
			for i++; i < len(sql); i++ {
				if escapes && sql[i] == '\\' {
					i++
				} else if sql[i] == c {
					if i+1 < len(sql) && sql[i+1] == c {
						i++
						continue
					}
					break
				}
			}
			i++
		case c == '$' && (i == 0 || !isWordByte(sql[i-1])):
			i = skipDollarQuote(sql, i)
		case isOperatorByte(c):
			if run++; run > maxOperatorRun {
				return true
			}
			i++
			continue
		default:
			i++
		}
		run = 0
	}
	return false
}

// skipDollarQuote returns the index after the dollar-quoted string starting
// at sql[i] (the end of the text if it is unterminated), or i+1 if sql[i]
// does not start one.
func skipDollarQuote(sql string, i int) int {
	j := i + 1
	for j < len(sql) && isWordByte(sql[j]) && sql[j] != '$' && !(j == i+1 && sql[j] >= '0' && sql[j] <= '9') {
		j++
	}
	if j >= len(sql) || sql[j] != '$' {
		return i + 1
	}
	delim := sql[i : j+1]
	if end := strings.Index(sql[j+1:], delim); end >= 0 {
		return j + 1 + end + len(delim)
	}
	return len(sql)
}

// isOperatorByte matches PostgreSQL's operator characters.
func isOperatorByte(c byte) bool {
	return strings.IndexByte("~!@#^&|`?+-*/%<>=", c) >= 0
}

// nestingEstimate returns an upper bound, in tree levels, of how deeply sql
// nests, from PostgreSQL's own scanner (which does not recurse): every
// keyword or operator but AND and OR may add a level to the expression it is
// part of, and every bracket a level to what it encloses; commas and
// semicolons start a sibling. Identifiers, literals and parameters add none.
// A text the scanner rejects is not valid SQL and nests nowhere.
func nestingEstimate(sql string) int {
	res, err := pg.Scan(sql)
	if err != nil {
		return 0
	}
	var (
		outer, cur, deepest int
		stack               []int
	)
	for _, t := range res.Tokens {
		switch t.Token {
		case pg.Token_ASCII_40, pg.Token_ASCII_91: // ( [
			stack = append(stack, cur)
			outer += cur
			cur = 0
		case pg.Token_ASCII_41, pg.Token_ASCII_93: // ) ]
			if n := len(stack); n > 0 {
				cur = stack[n-1]
				outer -= cur
				stack = stack[:n-1]
			}
		case pg.Token_ASCII_44: // ,
			cur = 0
		case pg.Token_ASCII_59: // ;
			outer, cur, stack = 0, 0, stack[:0]
		case pg.Token_IDENT, pg.Token_UIDENT, pg.Token_ICONST, pg.Token_FCONST, pg.Token_SCONST,
			pg.Token_USCONST, pg.Token_BCONST, pg.Token_XCONST, pg.Token_PARAM,
			pg.Token_SQL_COMMENT, pg.Token_C_COMMENT,
			pg.Token_AND, pg.Token_OR: // the parser flattens a AND b AND c into one node
		default:
			cur++
		}
		deepest = max(deepest, outer+len(stack)+cur)
	}
	return deepest
}
