// Package testpg gives a package's tests one throwaway PostgreSQL cluster,
// shared by every test in the test binary:
//
//	func TestMain(m *testing.M) { testpg.Main(m) }
//
//	func TestSomething(t *testing.T) {
//		c := testpg.Cluster(t)
//		...
//	}
//
// Tests share the cluster, so each should create the databases and roles it
// needs under names of its own (for example derived from t.Name()).
package testpg

import (
	"context"
	"fmt"
	"os"
	"testing"

	"go.uber.org/goleak"

	"github.com/pgtenant/pgtenant/internal/pgcluster"
)

// Config tunes MainWith. The zero value is what Main uses.
type Config struct {
	// Cluster is passed to pgcluster.Start (extra settings, log writer ...).
	Cluster pgcluster.Options
	// Setup, if set, runs once after the cluster is up and before any test;
	// an error fails the test binary.
	Setup func(ctx context.Context, c *pgcluster.Cluster) error
	// LeakOptions are passed to goleak.Find, which runs after the tests and
	// after the cluster has stopped.
	LeakOptions []goleak.Option
	// Cleanup, if set, runs after the cluster has stopped, before exit.
	Cleanup func()
}

// shared is the test binary's cluster, set by MainWith before m.Run and
// read-only while tests run.
var shared *pgcluster.Cluster

// Main is a complete TestMain for a package whose tests need PostgreSQL; it
// is MainWith with a zero Config.
func Main(m *testing.M) {
	MainWith(m, Config{})
}

// MainWith starts the cluster, runs cfg.Setup and the tests, stops the
// cluster, fails the binary if goroutines leaked, and exits; it does not
// return. The cluster is owned here: tests must not Stop it.
//
// When the PostgreSQL binaries are missing or the cluster cannot start, it
// prints why (with the install command) and exits non-zero: tests that need
// PostgreSQL never skip silently. When tests fail, it prints the end of the
// server's log.
func MainWith(m *testing.M, cfg Config) {
	os.Exit(run(m, cfg))
}

func run(m *testing.M, cfg Config) int {
	ctx := context.Background()
	c, err := pgcluster.Start(ctx, cfg.Cluster)
	if err != nil {
		fmt.Fprintf(os.Stderr, "testpg: cannot start PostgreSQL for these tests: %v\n", err)
		return 1
	}
	shared = c
	code := 1
	if cfg.Setup == nil {
		code = m.Run()
	} else if err := cfg.Setup(ctx, c); err != nil {
		fmt.Fprintf(os.Stderr, "testpg: Setup: %v\n", err)
	} else {
		code = m.Run()
	}
	if code != 0 {
		fmt.Fprintf(os.Stderr, "testpg: tests failed; end of the PostgreSQL log:\n%s\n", c.LogTail())
	}
	if err := c.Stop(); err != nil {
		fmt.Fprintf(os.Stderr, "testpg: stopping PostgreSQL: %v\n", err)
		code = 1
	}
	if cfg.Cleanup != nil {
		cfg.Cleanup()
	}
	if code == 0 {
		if err := goleak.Find(cfg.LeakOptions...); err != nil {
			fmt.Fprintf(os.Stderr, "testpg: goroutines leaked: %v\n", err)
			code = 1
		}
	}
	return code
}

// Cluster returns the test binary's shared cluster. It fails t when the
// package's TestMain does not call Main or MainWith. Safe for concurrent use.
func Cluster(t testing.TB) *pgcluster.Cluster {
	t.Helper()
	if shared == nil {
		t.Fatal("testpg.Cluster: this package's TestMain must call testpg.Main(m)")
	}
	return shared
}
