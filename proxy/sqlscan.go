package proxy

// stmtFlags is what the proxy needs to know about client SQL before forwarding
// it. The scan is lexical and deliberately over-approximates: a false positive
// costs a little latency or a reset, a false negative could break the session.
type stmtFlags uint16

const (
	// flagTxControl: the text may open or close a transaction block (BEGIN,
	// START, COMMIT, END, ROLLBACK, ABORT, PREPARE TRANSACTION). After it the
	// proxy cannot predict the transaction status and waits for ReadyForQuery
	// before deciding whether the next message starts a new transaction.
	flagTxControl stmtFlags = 1 << iota
	// flagOwnTransaction: the statement cannot run in a pipeline or
	// transaction block (VACUUM, CREATE DATABASE, ... CONCURRENTLY), or a
	// multi-statement query ends a transaction midway. The tenant context is
	// then set for the session before it, and reset when the backend is
	// released, instead of riding as SET LOCAL in the same transaction.
	flagOwnTransaction
	// flagDropsStatements: the text may deallocate prepared statements
	// (DEALLOCATE, DISCARD), including the tenant context statements the
	// proxy prepared on the backend. The backend is closed, not pooled,
	// when the transaction ends.
	flagDropsStatements
	// flagSessionSet: a statement may change a session setting (SET, RESET
	// or DO at the start of a statement, or set_config anywhere); the proxy
	// follows what the client sets (see params.go).
	flagSessionSet
	// flagSessionState: the text may leave state on the backend that
	// outlives the transaction (see sessionStateKind, which decides).
	flagSessionState
	// flagSQLNames: the text may PREPARE or EXECUTE an SQL-level prepared
	// statement, whose name the proxy maps (see sqlnames.go).
	flagSQLNames
	// flagTxModes: the text may set transaction modes (ISOLATION LEVEL,
	// READ WRITE, READ ONLY, DEFERRABLE, SNAPSHOT), which PostgreSQL refuses
	// after the transaction's first query; with flagTxControl, the context
	// is set ahead of it without one (see backendConn.injectBlock).
	flagTxModes
	// flagBegin: the text is one BEGIN or START TRANSACTION statement and
	// nothing else; the context can wait for the transaction's next
	// statement (see session.admit).
	flagBegin
	// flagChain: the text may COMMIT or ROLLBACK AND CHAIN, which starts a
	// transaction without the context.
	flagChain
)

// scanSQL classifies one Query or Parse text. It allocates nothing.
func scanSQL(sql []byte) stmtFlags {
	var flags stmtFlags
	var first, second [16]byte
	var firstLen, secondLen, words int
	multi := false
	stmtStart := true
	for i := 0; i < len(sql); {
		c := sql[i]
		if !isWordByte(c) {
			if c == ';' {
				stmtStart = true
				for j := i + 1; j < len(sql); j++ {
					if !isSpace(sql[j]) && sql[j] != ';' {
						multi = true
						break
					}
				}
			}
			i++
			continue
		}
		j := i
		for j < len(sql) && isWordByte(sql[j]) {
			j++
		}
		w := sql[i:j]
		i = j
		if stmtStart && (wordIs(w, "SET") || wordIs(w, "RESET") || wordIs(w, "DO")) || wordIs(w, "SET_CONFIG") {
			flags |= flagSessionSet
		}
		if stmtStart && wordIs(w, "PREPARE") || wordIs(w, "EXECUTE") {
			flags |= flagSQLNames
		}
		stmtStart = false
		switch words {
		case 0:
			firstLen = upperInto(&first, w)
		case 1:
			secondLen = upperInto(&second, w)
		}
		words++
		switch {
		case wordIs(w, "BEGIN"), wordIs(w, "START"), wordIs(w, "COMMIT"), wordIs(w, "END"),
			wordIs(w, "ROLLBACK"), wordIs(w, "ABORT"), wordIs(w, "PREPARE"):
			flags |= flagTxControl
		case wordIs(w, "ISOLATION"), wordIs(w, "READ"), wordIs(w, "DEFERRABLE"), wordIs(w, "SNAPSHOT"):
			flags |= flagTxModes
		case wordIs(w, "CHAIN"):
			flags |= flagChain
		case wordIs(w, "DEALLOCATE"):
			flags |= flagDropsStatements
		case wordIs(w, "TEMP"), wordIs(w, "TEMPORARY"), wordIs(w, "HOLD"), wordIs(w, "LISTEN"),
			wordIs(w, "AUTHORIZATION"), wordIs(w, "PG_ADVISORY_LOCK"), wordIs(w, "PG_ADVISORY_LOCK_SHARED"),
			wordIs(w, "PG_TRY_ADVISORY_LOCK"), wordIs(w, "PG_TRY_ADVISORY_LOCK_SHARED"):
			flags |= flagSessionState
		case wordIs(w, "DISCARD"):
			flags |= flagDropsStatements | flagSessionSet
		case wordIs(w, "CONCURRENTLY"), wordIs(w, "DATABASE"), wordIs(w, "TABLESPACE"),
			wordIs(w, "SUBSCRIPTION"), wordIs(w, "PREPARED"):
			switch string(first[:firstLen]) {
			case "CREATE", "DROP", "ALTER", "REINDEX", "COMMIT", "ROLLBACK":
				flags |= flagOwnTransaction
			}
		}
	}
	switch string(first[:firstLen]) {
	case "VACUUM", "CLUSTER", "REINDEX", "DISCARD":
		flags |= flagOwnTransaction
	case "ALTER":
		if string(second[:secondLen]) == "SYSTEM" {
			flags |= flagOwnTransaction
		}
	}
	if multi && flags&flagTxControl != 0 {
		flags |= flagOwnTransaction
	}
	if !multi {
		switch string(first[:firstLen]) {
		case "BEGIN", "START":
			flags |= flagBegin
		}
	}
	return flags
}

func isWordByte(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '$' || c >= 0x80
}

func isSpace(c byte) bool {
	return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v'
}

// wordIs compares w with an upper-case ASCII keyword, ignoring case.
func wordIs(w []byte, kw string) bool {
	if len(w) != len(kw) {
		return false
	}
	for i := range w {
		c := w[i]
		if c >= 'a' && c <= 'z' {
			c -= 'a' - 'A'
		}
		if c != kw[i] {
			return false
		}
	}
	return true
}

func upperInto(dst *[16]byte, w []byte) int {
	if len(w) > len(dst) {
		return 0
	}
	for i, c := range w {
		if c >= 'a' && c <= 'z' {
			c -= 'a' - 'A'
		}
		dst[i] = c
	}
	return len(w)
}
