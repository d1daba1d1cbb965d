// Command bench measures what pgtenant costs in throughput: it runs pgbench's
// select-only workload, in each of pgbench's query modes (simple, extended,
// prepared), against PostgreSQL directly, through pgtenant and through
// PgBouncer (transaction pooling, same pool size), interleaved over several
// rounds, and prints the median tps of each with the ratios. PgBouncer 1.18
// cannot run -M prepared in transaction pooling mode: the report says so, as
// a result, and the bench still succeeds.
//
// It is `make bench`. Everything it needs is started here and stopped on exit,
// Ctrl-C included: a throwaway PostgreSQL (internal/pgcluster), a freshly
// built pgtenant and a PgBouncer. As root it installs PgBouncer when missing.
//
// All three paths log in as the same non-superuser role, bench_app, and the
// tables have no Row-Level Security: the numbers are the proxy's own cost, not
// the cost of RLS. A second workload (rls.go) then measures what tenancy costs
// as a whole: a tenant table of 1M rows and 1,000 tenants queried directly by
// a BYPASSRLS role with its own org filter, and through pgtenant with RLS and
// the signed context. -workload proxy or rls runs one of the two.
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"syscall"
	"time"

	"github.com/pgtenant/pgtenant/internal/pgcluster"
)

// Defaults of the command-line flags. With them a run takes about six
// minutes: 3 rounds x 3 modes x 3 targets x 10 s, less PgBouncer's
// -M prepared runs (a short check finds them unsupported), then the RLS
// workload's 3 rounds x 2 scripts x 3 sides x 4 s, plus set-up.
const (
	defaultDuration = 10
	defaultRounds   = 3
	defaultClients  = 16
	defaultJobs     = 2
	defaultPool     = 16
	defaultScale    = 10
	// defaultRLSDuration is shorter than defaultDuration, to keep the RLS
	// workload (3 sides x 2 scripts per round) near a minute and a half.
	defaultRLSDuration = 4
)

// Names in the benchmark database.
const (
	benchDatabase = "bench"
	benchRole     = "bench_app"
	benchOrg      = "bench"
)

// options are the command-line settings of one run.
type options struct {
	duration int // seconds per pgbench run (-T)
	rounds   int
	clients  int    // pgbench -c
	jobs     int    // pgbench -j
	pool     int    // backend connections of pgtenant's and PgBouncer's pool
	scale    int    // pgbench -i -s
	setWith  string // pgtenant's tenancy.set_with
	// rlsDuration is the seconds per pgbench run of the RLS workload.
	rlsDuration int
	// workload is "all", "proxy" (pgbench -S only) or "rls".
	workload string
}

func main() {
	var o options
	flag.IntVar(&o.duration, "duration", defaultDuration, "seconds per pgbench run (pgbench -T)")
	flag.IntVar(&o.rounds, "rounds", defaultRounds, "rounds; each runs every mode against every target once")
	flag.IntVar(&o.clients, "clients", defaultClients, "concurrent pgbench clients (pgbench -c)")
	flag.IntVar(&o.jobs, "jobs", defaultJobs, "pgbench worker threads (pgbench -j)")
	flag.IntVar(&o.pool, "pool", defaultPool, "backend pool size of pgtenant and of PgBouncer")
	flag.IntVar(&o.scale, "scale", defaultScale, "pgbench scale factor of the test data (pgbench -i -s)")
	flag.StringVar(&o.setWith, "set-with", "auto", "pgtenant's tenancy.set_with: auto, set_local or set_config")
	flag.IntVar(&o.rlsDuration, "rls-duration", defaultRLSDuration, "seconds per pgbench run of the RLS workload")
	flag.StringVar(&o.workload, "workload", "all", "what to run: all, proxy (pgbench -S through each target) or rls (the RLS overhead)")
	flag.Parse()
	if flag.NArg() > 0 {
		fmt.Fprintf(os.Stderr, "bench: unexpected arguments %q\n", flag.Args())
		os.Exit(2)
	}
	if err := o.validate(); err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(2)
	}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	go func() {
		// After the first signal cleanup runs; a second one ends the process
		// at once (the children then die with it: see detach).
		<-ctx.Done()
		stop()
	}()
	err := run(ctx, o, os.Stdout)
	interrupted := ctx.Err() != nil
	stop()
	if interrupted {
		fmt.Fprintln(os.Stderr, "bench: interrupted")
		os.Exit(1)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
}

func (o *options) validate() error {
	for _, f := range []struct {
		name string
		v    int
	}{{"duration", o.duration}, {"rounds", o.rounds}, {"clients", o.clients}, {"jobs", o.jobs}, {"pool", o.pool}, {"scale", o.scale}, {"rls-duration", o.rlsDuration}} {
		if f.v < 1 {
			return fmt.Errorf("-%s must be at least 1, got %d", f.name, f.v)
		}
	}
	switch o.workload {
	case "all", "proxy", "rls":
	default:
		return fmt.Errorf("-workload must be all, proxy or rls, got %q", o.workload)
	}
	// pgbench refuses more threads than clients.
	o.jobs = min(o.jobs, o.clients)
	return nil
}

// maxConnections is PostgreSQL's max_connections for the run: the direct
// clients and both pools at once, with room for the set-up connections.
func (o options) maxConnections() int {
	return max(pgcluster.DefaultMaxConnections, o.clients+2*o.pool+20)
}

// run does the whole benchmark and prints the report to out. Everything it
// starts is stopped before it returns.
func run(ctx context.Context, o options, out io.Writer) error {
	root, err := moduleRoot()
	if err != nil {
		return err
	}
	tl, err := ensureTools(ctx, root)
	if err != nil {
		return err
	}

	work, err := os.MkdirTemp("", "pgtenant-bench-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(work)
	// Cleanups run in reverse order on every return path; each has its own
	// time budget, so they work after ctx is cancelled too.
	var cleanups []func()
	defer func() {
		for i := len(cleanups) - 1; i >= 0; i-- {
			cleanups[i]()
		}
	}()

	step(out, "building pgtenant")
	bin, err := buildPgtenant(ctx, root, filepath.Join(work, "pgtenant"))
	if err != nil {
		return err
	}

	step(out, "starting PostgreSQL")
	cluster, err := pgcluster.Start(ctx, pgcluster.Options{Settings: map[string]string{
		"max_connections": strconv.Itoa(o.maxConnections()),
		// Room for the whole data set, so no target pays for a cold cache.
		"shared_buffers": "512MB",
	}})
	if err != nil {
		return err
	}
	cleanups = append(cleanups, func() {
		step(out, "stopping PostgreSQL")
		if err := cluster.Stop(); err != nil {
			fmt.Fprintln(os.Stderr, "bench: stopping PostgreSQL:", err)
		}
	})

	step(out, fmt.Sprintf("loading pgbench data (scale %d)", o.scale))
	password := randomHex(16)
	if err := prepareDatabase(ctx, cluster, tl.pgbench, password, o.scale); err != nil {
		return err
	}
	direct := target{name: "direct", host: cluster.Host, port: cluster.Port, user: benchRole, password: password}

	step(out, "starting pgtenant")
	pt, err := startPgtenant(ctx, bin, work, cluster.DSN(benchRole, password, benchDatabase), o.pool, o.setWith)
	if err != nil {
		return err
	}
	cleanups = append(cleanups, func() {
		step(out, "stopping pgtenant")
		if err := pt.proc.stop(); err != nil {
			fmt.Fprintln(os.Stderr, "bench: stopping pgtenant:", err)
		}
	})

	if o.workload == "rls" {
		return runRLSWorkload(ctx, cluster, tl.pgbench, bin, work, pt, o, out)
	}

	step(out, "starting PgBouncer")
	pb, err := startPgbouncer(ctx, tl.pgbouncer, work, cluster, password, o)
	if err != nil {
		return err
	}
	cleanups = append(cleanups, func() {
		step(out, "stopping PgBouncer")
		if err := pb.proc.stop(); err != nil {
			fmt.Fprintln(os.Stderr, "bench: stopping PgBouncer:", err)
		}
	})

	targets := []target{direct, pt.target, pb.target}
	step(out, fmt.Sprintf("running pgbench -S: %d round(s) x %d modes x %d targets x %ds, %d clients, %d threads, pool %d",
		o.rounds, len(modes), len(targets), o.duration, o.clients, o.jobs, o.pool))
	res, runErr := runRounds(ctx, tl.pgbench, targets, o, out)
	fmt.Fprintln(out)
	printReport(out, res, targets)
	if runErr != nil {
		return runErr
	}
	if ctx.Err() != nil {
		return ctx.Err()
	}
	if o.workload == "all" {
		return runRLSWorkload(ctx, cluster, tl.pgbench, bin, work, pt, o, out)
	}
	return nil
}

// step prints a progress line.
func step(out io.Writer, msg string) {
	fmt.Fprintf(out, "%s  %s\n", time.Now().Format("15:04:05"), msg)
}
