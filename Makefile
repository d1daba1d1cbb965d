# Entry points for developers and CI (.ci/run calls `make test`).

GO          ?= go
BIN         := bin/pgtenant
# The race detector roughly doubles the suite's time on CI's 2 cores; drop
# -race here if that ever makes the 90-minute CI budget tight.
GOTESTFLAGS ?= -race -count=1 -timeout 20m
FUZZTIME    ?= 20s
# make test runs every fuzz target briefly, for a number of inputs rather than
# a time (a timed run can fail with "context deadline exceeded" when a worker
# is slow to stop on a busy machine); make fuzz runs them for FUZZTIME.
TESTFUZZTIME ?= 10000x

.PHONY: build test ensure-postgres ensure-clients ensure-promtool ensure-chromium fuzz bench demo clean

build:
	$(GO) build -o $(BIN) ./cmd/pgtenant

# The tests start their own throwaway PostgreSQL (internal/pgcluster), so the
# server binaries must be installed.
ensure-postgres:
	bash scripts/ensure-postgres.sh

# The client compatibility suite (test/e2e/compat_*_test.go) runs psycopg,
# node-postgres and JDBC programs. A runtime that cannot be installed makes
# its test skip loudly; on CI (CI=true) it fails the run instead.
ensure-clients:
	@bash scripts/ensure-clients.sh || { [ "$$CI" != true ] && echo "ensure-clients: the compatibility tests of the missing clients will be skipped" >&2; }

# test/deploy checks the alert rules with promtool (Debian package
# prometheus); without it that test skips loudly, and fails on CI.
ensure-promtool:
	@bash scripts/ensure-promtool.sh || { [ "$$CI" != true ] && echo "ensure-promtool: the alert rule tests will be skipped" >&2; }

# The admin UI browser tests (cmd/pgtenant/ui_test.go) drive headless
# Chromium (Debian package chromium); without it they skip loudly, and fail
# on CI.
ensure-chromium:
	@bash scripts/ensure-chromium.sh || { [ "$$CI" != true ] && echo "ensure-chromium: the admin UI browser tests will be skipped" >&2; }

test: ensure-postgres ensure-clients ensure-promtool ensure-chromium
	$(GO) vet ./...
	$(GO) test $(GOTESTFLAGS) ./...
	GO=$(GO) FUZZTIME=$(TESTFUZZTIME) bash scripts/fuzz.sh

# Every fuzz target in the module, FUZZTIME each (make fuzz FUZZTIME=5m).
fuzz:
	GO=$(GO) FUZZTIME=$(FUZZTIME) bash scripts/fuzz.sh

bench:
	$(GO) run ./test/bench

demo: build
	./$(BIN) demo

clean:
	rm -rf bin coverage.out coverage.html *.coverprofile
