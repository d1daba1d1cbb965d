// Package sqllex holds the lexical rules of PostgreSQL's SQL that more than
// one of pgtenant's scanners needs.
package sqllex

// SkipBlockComment returns the index after the block comment that starts at
// sql[i] ("/*"), or -1 when it is not terminated. PostgreSQL's block
// comments nest.
func SkipBlockComment[T string | []byte](sql T, i int) int {
	depth := 0
	for i < len(sql) {
		switch {
		case sql[i] == '/' && i+1 < len(sql) && sql[i+1] == '*':
			depth++
			i += 2
		case sql[i] == '*' && i+1 < len(sql) && sql[i+1] == '/':
			depth--
			i += 2
			if depth == 0 {
				return i
			}
		default:
			i++
		}
	}
	return -1
}
