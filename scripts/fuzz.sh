#!/usr/bin/env bash
# Runs every fuzz target in the module for $FUZZTIME each (default 20s; Nx
# means N inputs). The targets are found at run time: every `func FuzzXxx`
# in a *_test.go file.
# Each target runs alone, because `go test -fuzz` refuses a pattern that
# matches more than one target in a package. New crashers land in the
# package's testdata/fuzz/ and fail the run.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

GO=${GO:-go}
FUZZTIME=${FUZZTIME:-20s}

files=$(grep -rlE --include='*_test.go' --exclude-dir=.git --exclude-dir=vendor --exclude-dir=testdata \
	'^func Fuzz[A-Za-z0-9_]*\(' . || true)
if [ -z "$files" ]; then
	echo "fuzz: no fuzz targets (func FuzzXxx in *_test.go) in this module"
	exit 0
fi

count=0
for dir in $(printf '%s\n' $files | xargs -n1 dirname | sort -u); do
	for target in $(grep -hoE '^func Fuzz[A-Za-z0-9_]*\(' "$dir"/*_test.go | sed -e 's/^func //' -e 's/($//' | sort -u); do
		echo "fuzz: $dir $target for $FUZZTIME"
		"$GO" test -run='^$' -fuzz="^${target}\$" -fuzztime="$FUZZTIME" "$dir"
		count=$((count + 1))
	done
done
echo "fuzz: $count targets ran for $FUZZTIME each without a failure"
