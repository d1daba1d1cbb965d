#!/usr/bin/env bash
# Makes sure promtool is installed: scripts/check-deploy.sh and
# test/deploy run it to check and unit-test deploy/prometheus/. It looks for
# $PROMTOOL when set, else promtool on PATH, else /usr/bin/promtool.
#
# Found: exit 0. Missing and root with apt-get: install Debian's prometheus
# package (which ships /usr/bin/promtool) without letting it start the
# Prometheus server, and exit 0. Missing and not root: say what to install and
# exit 1. Never reads stdin.
set -euo pipefail

log() { echo "ensure-promtool: $*" >&2; }

policy=/usr/sbin/policy-rc.d

find_promtool() {
	if [ -n "${PROMTOOL:-}" ]; then
		[ -x "$PROMTOOL" ] && echo "$PROMTOOL"
		return
	fi
	if command -v promtool >/dev/null 2>&1; then
		command -v promtool
		return
	fi
	[ -x /usr/bin/promtool ] && echo /usr/bin/promtool
}

# Only the Prometheus server the package may have started, matched by its
# exact process name and binary, never by a pattern over command lines.
stop_package_server() {
	local pid
	service prometheus stop >/dev/null 2>&1 || true
	for pid in $(pgrep -x prometheus 2>/dev/null || true); do
		if [ "$(readlink "/proc/$pid/exe" 2>/dev/null || true)" = /usr/bin/prometheus ]; then
			log "stopping the Prometheus server ($pid) that the package started"
			kill "$pid" 2>/dev/null || true
		fi
	done
}

if tool=$(find_promtool); then
	log "using $tool"
	exit 0
fi

if [ -n "${PROMTOOL:-}" ]; then
	log "PROMTOOL=$PROMTOOL is not an executable; fix or unset it"
	exit 1
fi

if [ "$(id -u)" -ne 0 ] || ! command -v apt-get >/dev/null 2>&1; then
	log "promtool not found."
	log "Install it: sudo apt-get install --no-install-recommends prometheus (Debian/Ubuntu),"
	log "or set PROMTOOL to a promtool binary."
	exit 1
fi

# The package's maintainer scripts start the server through invoke-rc.d;
# a policy-rc.d that exits 101 forbids that. Put one in place only for the
# install, and only where none exists (a container's own one is kept).
if [ ! -e "$policy" ]; then
	printf '#!/bin/sh\nexit 101\n' >"$policy"
	chmod 755 "$policy"
	trap 'rm -f "$policy"' EXIT
fi

log "promtool not found; installing Debian's prometheus package"
export DEBIAN_FRONTEND=noninteractive
if ! apt-get install -y --no-install-recommends prometheus </dev/null; then
	apt-get update </dev/null
	apt-get install -y --no-install-recommends prometheus </dev/null
fi
stop_package_server

if tool=$(find_promtool); then
	log "installed; using $tool"
	exit 0
fi
log "installed the prometheus package but still found no promtool"
exit 1
