#!/usr/bin/env bash
# Makes sure the runtimes of the client compatibility suite
# (test/e2e/compat_*_test.go) are installed:
#   - Python 3 with psycopg 3 (Debian: python3-psycopg),
#   - the PostgreSQL JDBC driver (Debian: libpostgresql-jdbc-java) and a JDK,
#   - node-postgres, installed with `npm ci` into test/e2e/clients/node.
#
# All found: exit 0. Something missing and root with apt-get: install it and
# exit 0. Missing and not root: say what to install and exit 1. Never reads
# stdin. The tests skip, loudly, a client whose runtime is still absent.
set -euo pipefail

log() { echo "ensure-clients: $*" >&2; }

root=$(cd "$(dirname "$0")/.." && pwd)
node_dir="$root/test/e2e/clients/node"
jdbc_jar=/usr/share/java/postgresql.jar

# Debian's python3-psycopg installs for /usr/bin/python3, which need not be
# the python3 first on PATH (pyenv, venvs). The Go test looks in the same
# places.
has_psycopg() {
	local py
	for py in /usr/bin/python3 "$(command -v python3 2>/dev/null || true)"; do
		[ -n "$py" ] && [ -x "$py" ] && "$py" -c 'import psycopg' >/dev/null 2>&1 && return 0
	done
	return 1
}

has_jdbc() { [ -r "$jdbc_jar" ]; }
has_jdk() { command -v javac >/dev/null 2>&1 && command -v java >/dev/null 2>&1; }
has_node() { command -v node >/dev/null 2>&1 && command -v npm >/dev/null 2>&1; }

# node_modules is current when npm's record of what it installed is at least
# as new as the lock file.
node_modules_current() {
	[ -f "$node_dir/node_modules/.package-lock.json" ] &&
		[ ! "$node_dir/package-lock.json" -nt "$node_dir/node_modules/.package-lock.json" ]
}

missing=()
has_psycopg || missing+=(python3-psycopg)
has_jdbc || missing+=(libpostgresql-jdbc-java)
has_jdk || missing+=(default-jdk-headless)
has_node || missing+=(nodejs npm)

if [ ${#missing[@]} -gt 0 ]; then
	if [ "$(id -u)" -ne 0 ] || ! command -v apt-get >/dev/null 2>&1; then
		log "client runtimes not found: ${missing[*]}"
		log "Install them: sudo apt-get install ${missing[*]} (Debian/Ubuntu)."
		exit 1
	fi
	log "installing ${missing[*]}"
	export DEBIAN_FRONTEND=noninteractive
	apt-get update </dev/null
	apt-get install -y --no-install-recommends "${missing[@]}" </dev/null
fi

if has_node && ! node_modules_current; then
	log "installing node-postgres into test/e2e/clients/node (npm ci)"
	(cd "$node_dir" && npm ci --no-audit --no-fund --loglevel=error </dev/null)
fi

status=0
has_psycopg || { log "psycopg 3 is still missing"; status=1; }
has_jdbc || { log "$jdbc_jar is still missing"; status=1; }
has_jdk || { log "javac/java are still missing"; status=1; }
has_node || { log "node/npm are still missing"; status=1; }
[ -d "$node_dir/node_modules/pg" ] || { log "test/e2e/clients/node/node_modules/pg is missing"; status=1; }
[ $status -eq 0 ] && log "psycopg, JDBC, JDK and node-postgres are installed"
exit $status
