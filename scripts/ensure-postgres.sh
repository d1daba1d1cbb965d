#!/usr/bin/env bash
# Makes sure the PostgreSQL server binaries that the tests run (initdb,
# postgres) are installed. It searches the way internal/pgcluster.BinDir does:
# $PGTENANT_PG_BINDIR alone when set, else `pg_config --bindir`, else the
# highest-version /usr/lib/postgresql/*/bin.
#
# Found: exit 0. Missing and root: install Debian's postgresql package, stop the
# cluster the package starts (tests start their own) and exit 0. Missing and
# not root: say what to install and exit 1. Never reads stdin.
set -euo pipefail

log() { echo "ensure-postgres: $*" >&2; }

has_server() { [ -n "$1" ] && [ -x "$1/initdb" ] && [ -x "$1/postgres" ]; }

find_bindir() {
	if [ -n "${PGTENANT_PG_BINDIR:-}" ]; then
		has_server "$PGTENANT_PG_BINDIR" && echo "$PGTENANT_PG_BINDIR"
		return
	fi
	local dir
	if command -v pg_config >/dev/null 2>&1; then
		dir=$(pg_config --bindir 2>/dev/null || true)
		if has_server "$dir"; then
			echo "$dir"
			return
		fi
	fi
	for dir in $(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V -r); do
		if has_server "$dir"; then
			echo "$dir"
			return
		fi
	done
	return 1
}

# Debian's package creates and starts a "main" cluster. Stop it and keep it
# from starting at boot; it is not removed.
stop_package_clusters() {
	command -v pg_lsclusters >/dev/null 2>&1 || return 0
	local ver name status
	while read -r ver name _ status _; do
		[ -n "$name" ] || continue
		if [ "$status" != "down" ]; then
			log "stopping the cluster $ver/$name that the package started"
			pg_ctlcluster "$ver" "$name" stop || true
		fi
		if [ -w "/etc/postgresql/$ver/$name/start.conf" ]; then
			echo manual >"/etc/postgresql/$ver/$name/start.conf"
		fi
	done < <(pg_lsclusters --no-header 2>/dev/null || true)
	service postgresql stop >/dev/null 2>&1 || true
}

if dir=$(find_bindir); then
	log "using $dir"
	exit 0
fi

if [ -n "${PGTENANT_PG_BINDIR:-}" ]; then
	log "PGTENANT_PG_BINDIR=$PGTENANT_PG_BINDIR has no initdb and postgres; fix or unset it"
	exit 1
fi

if [ "$(id -u)" -ne 0 ] || ! command -v apt-get >/dev/null 2>&1; then
	log "PostgreSQL server binaries (initdb, postgres) not found."
	log "Install them: sudo apt-get install postgresql (Debian/Ubuntu),"
	log "or set PGTENANT_PG_BINDIR to the directory that holds initdb and postgres."
	exit 1
fi

log "PostgreSQL server binaries not found; installing Debian's postgresql package"
export DEBIAN_FRONTEND=noninteractive
apt-get update </dev/null
apt-get install -y --no-install-recommends postgresql </dev/null
stop_package_clusters

if dir=$(find_bindir); then
	log "installed; using $dir"
	exit 0
fi
log "installed the postgresql package but still found no initdb and postgres"
exit 1
