package main

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"

	"github.com/pgtenant/pgtenant/config"
	"github.com/pgtenant/pgtenant/policies"
	"github.com/pgtenant/pgtenant/proxy"
)

// guards is the statement guard the proxy asks, one policies.Guard per
// distinct set of allowed rules: the default, and one for each database or
// tenant with exceptions in guard.databases / guard.tenants. SIGHUP swaps in
// the rules of the reloaded configuration.
type guards struct {
	set atomic.Pointer[guardSet]

	mu      sync.Mutex
	retired policies.GuardStats // of the sets swapped out, for the metrics
}

// guardSet is the guards of one configuration.
type guardSet struct {
	cfg  config.Config
	base *policies.Guard
	mu   sync.Mutex
	by   map[[2]string]*policies.Guard // by {database, tenant} with exceptions
}

var _ proxy.StatementGuard = (*guards)(nil)

func newGuards(cfg config.Config) (*guards, error) {
	g := &guards{}
	if err := g.reload(cfg); err != nil {
		return nil, err
	}
	return g, nil
}

// reload builds the guards of cfg and makes them the ones in use.
func (g *guards) reload(cfg config.Config) error {
	base, err := policies.NewGuard(cfg.GuardConfig("", ""))
	if err != nil {
		return err
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	if old := g.set.Swap(&guardSet{cfg: cfg, base: base, by: map[[2]string]*policies.Guard{}}); old != nil {
		addStats(&g.retired, old.stats())
	}
	return nil
}

func (gs *guardSet) guard(database, tenant string) *policies.Guard {
	_, dbx := gs.cfg.Guard.Databases[database]
	_, tx := gs.cfg.Guard.Tenants[tenant]
	if !dbx && !tx {
		return gs.base
	}
	key := [2]string{database, tenant}
	gs.mu.Lock()
	defer gs.mu.Unlock()
	if pg := gs.by[key]; pg != nil {
		return pg
	}
	pg, err := policies.NewGuard(gs.cfg.GuardConfig(database, tenant))
	if err != nil {
		// Each list was built at start-up; together they are only
		// longer lists of known rules.
		return gs.base
	}
	gs.by[key] = pg
	return pg
}

// stats adds up the counters of the set's guards.
func (gs *guardSet) stats() policies.GuardStats {
	gs.mu.Lock()
	all := []*policies.Guard{gs.base}
	for _, pg := range gs.by {
		all = append(all, pg)
	}
	gs.mu.Unlock()
	var sum policies.GuardStats
	for _, pg := range all {
		addStats(&sum, pg.Stats())
	}
	return sum
}

func addStats(sum *policies.GuardStats, st policies.GuardStats) {
	sum.Checks += st.Checks
	sum.Prechecked += st.Prechecked
	sum.CacheHits += st.CacheHits
	sum.Parses += st.Parses
	sum.ParseErrors += st.ParseErrors
	sum.Blocked += st.Blocked
}

func (g *guards) Check(database, tenant, sql string) (string, string) {
	v := g.set.Load().guard(database, tenant).Check(sql)
	return v.Rule, v.Message
}

func (g *guards) Fingerprint(sql string) string { return policies.Fingerprint(sql) }

var (
	descGuardDecisions = prometheus.NewDesc("pgtenant_guard_decisions_total", "Statements the guard checked, by decision (allowed, blocked).", []string{"decision"}, nil)
	descGuardHits      = prometheus.NewDesc("pgtenant_guard_cache_hits_total", "Statements the guard decided from its cache of verdicts.", nil, nil)
	descGuardMisses    = prometheus.NewDesc("pgtenant_guard_cache_misses_total", "Statements the guard had to parse.", nil, nil)
)

// Describe and Collect export the guards' counters (prometheus.Collector).
func (g *guards) Describe(ch chan<- *prometheus.Desc) {
	ch <- descGuardDecisions
	ch <- descGuardHits
	ch <- descGuardMisses
}

func (g *guards) Collect(ch chan<- prometheus.Metric) {
	g.mu.Lock()
	sum := g.retired
	addStats(&sum, g.set.Load().stats())
	g.mu.Unlock()
	ch <- prometheus.MustNewConstMetric(descGuardDecisions, prometheus.CounterValue, float64(sum.Checks-sum.Blocked), "allowed")
	ch <- prometheus.MustNewConstMetric(descGuardDecisions, prometheus.CounterValue, float64(sum.Blocked), "blocked")
	ch <- prometheus.MustNewConstMetric(descGuardHits, prometheus.CounterValue, float64(sum.CacheHits))
	ch <- prometheus.MustNewConstMetric(descGuardMisses, prometheus.CounterValue, float64(sum.Parses))
}

// contextSigner builds the signer of the per-transaction context token, or
// returns nil (with a warning) when no context key is configured.
func contextSigner(cfg config.Config, log zerolog.Logger) (*policies.Signer, error) {
	keys, err := cfg.Tenancy.SigningKeys()
	if err != nil {
		return nil, err
	}
	if len(keys) == 0 {
		log.Warn().Msg("no tenancy.context_keys: transactions carry only " + cfg.Tenancy.Setting +
			", which a tenant can change with SQL; configure context keys, run pgtenant policies install, " +
			"and make RLS policies call tenancy.current_org() (docs/rls.md)")
		return nil, nil
	}
	return policies.NewSigner(keys, cfg.Tenancy.ContextTTL)
}

// checkHardening runs the database checks of the application role at
// start-up (tenancy.hardening): findings are logged, and with strict an
// error finding stops pgtenant.
func checkHardening(ctx context.Context, cfg config.Config, backend *pgconn.Config, log zerolog.Logger) error {
	if cfg.Tenancy.Hardening == config.HardeningOff {
		return nil
	}
	cc, err := pgx.ParseConfig("")
	if err == nil {
		cc.Config = *backend.Copy()
	}
	var conn *pgx.Conn
	if err == nil {
		conn, err = pgx.ConnectConfig(ctx, cc)
	}
	if err != nil {
		log.Warn().Msg("hardening checks skipped: cannot connect to PostgreSQL as the application role")
		if cfg.Tenancy.Hardening == config.HardeningStrict {
			return errors.New("tenancy.hardening is strict, and the checks cannot connect to PostgreSQL")
		}
		return nil
	}
	defer conn.Close(context.WithoutCancel(ctx))
	findings, err := policies.CheckHardening(ctx, conn, backend.User)
	if err != nil {
		return fmt.Errorf("hardening checks: %w", err)
	}
	errs := 0
	for _, f := range findings {
		ev := log.Warn()
		if f.Severity == policies.SeverityError {
			errs++
			ev = log.Error()
		}
		ev.Str("check", f.Check).Str("role", backend.User).Msg(f.Message)
	}
	if errs > 0 && cfg.Tenancy.Hardening == config.HardeningStrict {
		return fmt.Errorf("tenancy.hardening is strict and %d hardening check(s) failed for role %s; see the log, or run pgtenant policies check", errs, backend.User)
	}
	return nil
}
