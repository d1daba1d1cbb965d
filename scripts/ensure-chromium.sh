#!/usr/bin/env bash
# Makes sure Chromium is installed: the admin UI browser tests
# (cmd/pgtenant/ui_test.go) drive it headless with chromedp. It looks the way
# the tests do: $PGTENANT_CHROMIUM when set, else chromium, chromium-browser
# or google-chrome on PATH.
#
# Found: exit 0. Missing and root with apt-get: install Debian's chromium
# package (and a font, so screenshots have text) and exit 0. Missing and not
# root: say what to install and exit 1. Never reads stdin.
set -euo pipefail

log() { echo "ensure-chromium: $*" >&2; }

find_chromium() {
	if [ -n "${PGTENANT_CHROMIUM:-}" ]; then
		[ -x "$PGTENANT_CHROMIUM" ] && echo "$PGTENANT_CHROMIUM"
		return
	fi
	local name
	for name in chromium chromium-browser google-chrome; do
		if command -v "$name" >/dev/null 2>&1; then
			command -v "$name"
			return
		fi
	done
	return 1
}

if browser=$(find_chromium); then
	log "using $browser"
	exit 0
fi

if [ -n "${PGTENANT_CHROMIUM:-}" ]; then
	log "PGTENANT_CHROMIUM=$PGTENANT_CHROMIUM is not an executable; fix or unset it"
	exit 1
fi

if [ "$(id -u)" -ne 0 ] || ! command -v apt-get >/dev/null 2>&1; then
	log "Chromium not found."
	log "Install it: sudo apt-get install --no-install-recommends chromium fonts-liberation (Debian),"
	log "or set PGTENANT_CHROMIUM to a Chromium or Chrome binary."
	exit 1
fi

log "Chromium not found; installing Debian's chromium package"
export DEBIAN_FRONTEND=noninteractive
packages=(chromium fonts-liberation)
if ! apt-get install -y --no-install-recommends "${packages[@]}" </dev/null; then
	apt-get update </dev/null
	apt-get install -y --no-install-recommends "${packages[@]}" </dev/null
fi

if browser=$(find_chromium); then
	log "installed; using $browser"
	exit 0
fi
log "installed the chromium package but still found no chromium"
exit 1
