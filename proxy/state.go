package proxy

import "strings"

// State that cannot cross clients under transaction pooling: a backend
// serves the next client of the tenant as soon as a transaction ends, so a
// temporary table, a session-level advisory lock, a WITH HOLD cursor, a
// LISTEN or a session authorization would outlive the transaction on a
// connection another client gets. Such statements are refused with 0A000,
// as PostgreSQL refuses what it does not support: the backend itself raises
// the error, so a transaction block is left aborted just as by any error.

// refuseStmt is the statement, prepared on every backend, that a refused
// statement's Bind is pointed at.
const refuseStmt = "pgtenant_refuse"

const refuseHint = "pgtenant runs each transaction on whichever backend connection of the tenant is free, " +
	"so session state would reach other clients. Keep it within the transaction " +
	"(ON COMMIT DROP, pg_advisory_xact_lock, a cursor without HOLD), or use session pooling (pool.mode session) for this client."

// refuseSQL raises the 0A000 for kind; kind is one of sessionStateKind's
// fixed strings, never client input.
func refuseSQL(kind string) string {
	return raiseSQL("feature_not_supported", kind+" cannot be used under transaction pooling", refuseHint)
}

// sessionStateKind says which state that cannot cross clients sql would
// create, or "" for none. sql was flagged flagSessionState by scanSQL.
func sessionStateKind(sql []byte) string {
	words := sqlWords(sql)
	start := true
	for i := 0; i < len(words); i++ {
		w := strings.ToUpper(words[i])
		if w == ";" {
			start = true
			continue
		}
		switch w {
		case "PG_ADVISORY_LOCK", "PG_ADVISORY_LOCK_SHARED", "PG_TRY_ADVISORY_LOCK", "PG_TRY_ADVISORY_LOCK_SHARED":
			return "a session-level advisory lock"
		}
		if !start {
			continue
		}
		start = false
		switch w {
		case "LISTEN":
			return "LISTEN"
		case "CREATE":
			j := i + 1
			for j < len(words) && isOneOf(words[j], "OR", "REPLACE", "GLOBAL", "LOCAL") {
				j++
			}
			if j < len(words) && isOneOf(words[j], "TEMP", "TEMPORARY") && !hasSequence(words[j:], "ON", "COMMIT", "DROP") {
				return "a temporary table"
			}
		case "DECLARE":
			if hasSequence(words[i:], "WITH", "HOLD") {
				return "a WITH HOLD cursor"
			}
		case "SET", "RESET":
			j := i + 1
			if j < len(words) && isOneOf(words[j], "SESSION") {
				j++
			}
			if j < len(words) && isOneOf(words[j], "AUTHORIZATION") ||
				j+1 < len(words) && isOneOf(words[j], "SESSION") && isOneOf(words[j+1], "AUTHORIZATION") {
				return "SET SESSION AUTHORIZATION"
			}
		}
	}
	return ""
}

func isOneOf(w string, options ...string) bool {
	for _, o := range options {
		if strings.EqualFold(w, o) {
			return true
		}
	}
	return false
}

// hasSequence reports whether words, up to the end of the statement,
// contain seq in a row.
func hasSequence(words []string, seq ...string) bool {
	for i := range words {
		if words[i] == ";" {
			return false
		}
		if i+len(seq) <= len(words) {
			match := true
			for k, s := range seq {
				if !strings.EqualFold(words[i+k], s) {
					match = false
					break
				}
			}
			if match {
				return true
			}
		}
	}
	return false
}
