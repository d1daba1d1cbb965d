package e2e

// The client compatibility suite: real drivers of other languages run a
// scripted workload through pgtenant, and the Go drivers run the same one
// in-process. The drivers' runtimes are installed by
// scripts/ensure-clients.sh, which `make test` runs first; a client whose
// runtime is still missing is skipped with a loud message.
//
// The workload, for each tenant (acme, then globex), on one connection that
// logs in with the tenant's JWT:
//
//   - visible: the tenant setting is the token's org and only the tenant's
//     rows of items are visible;
//   - prepared statements executed 40 times across explicit, implicit and
//     autocommit transactions, bound and prepared server-side;
//   - CRUD with parameters in a transaction that is rolled back: an INSERT
//     takes org_id from the context, UPDATE and DELETE reach no row of the
//     other tenant, and nothing survives the ROLLBACK; an error aborts a
//     transaction and ROLLBACK makes the session usable again;
//   - COPY TO STDOUT from a query on items (only the tenant's rows) and COPY
//     FROM STDIN into app_owned in a transaction that is rolled back;
//   - cancel: SELECT pg_sleep(30), canceled after 300ms with the driver's
//     cancel API, fails with SQLSTATE 57014 and the session stays usable;
//   - visible again.
//
// The programs in clients/ read the environment clientEnv builds and exit
// non-zero, after printing what failed, on the first failed check. They run
// against startCompatProxy's small pools while churn keeps other clients of
// both tenants busy, so a client's transactions, and its named statements,
// are served by whichever backend is free.

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// compatOrgs are the tenants every client works as, in order.
var compatOrgs = []string{"acme", "globex"}

// clientTimeout bounds one run of a client program, start-up included.
const clientTimeout = 60 * time.Second

// clientEnv describes the proxy at e to a client program:
//
//	PGT_HOST, PGT_PORT, PGT_DATABASE  where to connect (sslmode=disable)
//	PGT_TENANTS                       the orgs to work as, comma-separated
//	PGT_TOKEN_<ORG>                   the org's JWT, the password
//	PGT_ROWS_<ORG>                    the names of the org's rows, by id
func clientEnv(t *testing.T, e *env) []string {
	t.Helper()
	host, port, err := net.SplitHostPort(e.addr)
	if err != nil {
		t.Fatal(err)
	}
	vars := []string{
		"PGT_HOST=" + host,
		"PGT_PORT=" + port,
		"PGT_DATABASE=" + database,
		"PGT_TENANTS=" + strings.Join(compatOrgs, ","),
	}
	for _, org := range compatOrgs {
		key := strings.ToUpper(org)
		vars = append(vars,
			"PGT_TOKEN_"+key+"="+token(t, org),
			"PGT_ROWS_"+key+"="+strings.Join(tenantRows[org], ","))
	}
	// No libpq or driver setting of the caller's may redirect the client.
	var out []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "PG") {
			out = append(out, kv)
		}
	}
	return append(out, vars...)
}

// compatPoolSize is the backend pool size per tenant for client programs:
// smaller than the client plus churn's connections of one tenant.
const compatPoolSize = 2

// startCompatProxy starts pgtenant with compatPoolSize backends per tenant.
func startCompatProxy(t *testing.T) *env {
	t.Helper()
	return startProxy(t, func(c *proxyConfig, _ *jwtConfig) { c.Pool.Size = compatPoolSize })
}

// churn keeps two other clients of every tenant running short transactions
// through e, checking what they see, until the returned stop is called.
func churn(t *testing.T, e *env) (stop func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	for _, org := range compatOrgs {
		for i := 0; i < 2; i++ {
			conn := e.connect(t, org)
			wg.Add(1)
			go func() {
				defer wg.Done()
				for ctx.Err() == nil {
					var s, orgs string
					err := pgx.BeginFunc(ctx, conn, func(tx pgx.Tx) error {
						if _, err := tx.Exec(ctx, "SELECT pg_sleep(0.002)"); err != nil {
							return err
						}
						return tx.QueryRow(ctx, visibleSQL).Scan(&s, &orgs)
					})
					if ctx.Err() != nil {
						return
					}
					if err != nil {
						t.Errorf("churn as %s: %v", org, err)
						return
					}
					parseVisible(s, orgs).check(t, org)
				}
			}()
		}
	}
	return func() {
		cancel()
		wg.Wait()
	}
}

// runClient runs a client program with clientEnv, under churn, and fails
// the test, with everything the program printed, when it exits non-zero or
// outlives clientTimeout. What it printed is logged either way.
func runClient(t *testing.T, e *env, dir, name string, args ...string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), clientTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Dir = dir
	cmd.Env = clientEnv(t, e)
	cmd.WaitDelay = 5 * time.Second
	stop := churn(t, e)
	start := time.Now()
	out, err := cmd.CombinedOutput()
	stop()
	took := time.Since(start).Round(10 * time.Millisecond)
	if ctx.Err() != nil {
		t.Fatalf("%s did not finish within %s:\n%s", filepath.Base(name), clientTimeout, out)
	}
	if err != nil {
		t.Fatalf("%s failed after %s: %v\n%s", filepath.Base(name), took, err, out)
	}
	t.Logf("%s passed in %s:\n%s", filepath.Base(name), took, out)
}

// clientsDir is the absolute path of test/e2e/clients/sub.
func clientsDir(t *testing.T, sub string) string {
	t.Helper()
	dir, err := filepath.Abs(filepath.Join("clients", sub))
	if err != nil {
		t.Fatal(err)
	}
	return dir
}

// skipLoudly skips a client whose runtime is not installed, saying so on
// stderr as well, where it shows even without -v.
func skipLoudly(t *testing.T, what string, err error) {
	t.Helper()
	msg := fmt.Sprintf("SKIPPING the %s compatibility test: %s is not installed (%v); run scripts/ensure-clients.sh as root", t.Name(), what, err)
	fmt.Fprintln(os.Stderr, "!!! "+msg)
	t.Skip(msg)
}

// lookRuntime returns the first of paths (names are looked up in PATH) that
// exists and for which ok, if set, returns nil; else it skips t loudly.
func lookRuntime(t *testing.T, what string, ok func(path string) error, paths ...string) string {
	t.Helper()
	var errs []error
	for _, p := range paths {
		path, err := exec.LookPath(p)
		if err == nil && ok != nil {
			err = ok(path)
		}
		if err == nil {
			return path
		}
		errs = append(errs, err)
	}
	skipLoudly(t, what, errors.Join(errs...))
	return ""
}
