#!/usr/bin/env bash
# Checks the files in deploy/ that operators load into Prometheus and
# Grafana: the alert rules parse (promtool check rules), the rules' unit
# tests pass (promtool test rules) and the dashboard is valid JSON.
# test/deploy checks the same and more (metric names, panel fields) from go
# test; this script is for a quick look without Go.
#
# Needs promtool (scripts/ensure-promtool.sh) and jq or python3. Exits
# non-zero on the first failure.
set -euo pipefail

log() { echo "check-deploy: $*" >&2; }

root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"

promtool=${PROMTOOL:-$(command -v promtool || echo /usr/bin/promtool)}
if [ ! -x "$promtool" ]; then
	log "promtool not found; run scripts/ensure-promtool.sh or set PROMTOOL"
	exit 1
fi

"$promtool" check rules deploy/prometheus/pgtenant-rules.yml
"$promtool" test rules deploy/prometheus/pgtenant-rules.test.yml

dashboard=deploy/grafana/pgtenant.json
if command -v jq >/dev/null 2>&1; then
	jq -e '.panels | length > 0' "$dashboard" >/dev/null
elif command -v python3 >/dev/null 2>&1; then
	python3 -m json.tool "$dashboard" >/dev/null
else
	log "neither jq nor python3 found; cannot check $dashboard"
	exit 1
fi
log "$dashboard is valid JSON"
