package main

import (
	"context"
	"errors"
	"fmt"
	"sync"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/rs/zerolog"

	"github.com/pgtenant/pgtenant/config"
	"github.com/pgtenant/pgtenant/policies"
	"github.com/pgtenant/pgtenant/proxy"
)

// guards is the statement guard the proxy asks, one policies.Guard per
// distinct set of allowed rules: the default, and one for each database or
// tenant with exceptions in guard.databases / guard.tenants.
type guards struct {
	cfg  config.Config
	base *policies.Guard
	mu   sync.Mutex
	by   map[[2]string]*policies.Guard // by {database, tenant} with exceptions
}

var _ proxy.StatementGuard = (*guards)(nil)

func newGuards(cfg config.Config) (*guards, error) {
	base, err := policies.NewGuard(cfg.GuardConfig("", ""))
	if err != nil {
		return nil, err
	}
	return &guards{cfg: cfg, base: base, by: map[[2]string]*policies.Guard{}}, nil
}

func (g *guards) guard(database, tenant string) *policies.Guard {
	_, dbx := g.cfg.Guard.Databases[database]
	_, tx := g.cfg.Guard.Tenants[tenant]
	if !dbx && !tx {
		return g.base
	}
	key := [2]string{database, tenant}
	g.mu.Lock()
	defer g.mu.Unlock()
	if pg := g.by[key]; pg != nil {
		return pg
	}
	pg, err := policies.NewGuard(g.cfg.GuardConfig(database, tenant))
	if err != nil {
		// Each list was built at start-up; together they are only
		// longer lists of known rules.
		return g.base
	}
	g.by[key] = pg
	return pg
}

func (g *guards) Check(database, tenant, sql string) (string, string) {
	v := g.guard(database, tenant).Check(sql)
	return v.Rule, v.Message
}

func (g *guards) Fingerprint(sql string) string { return policies.Fingerprint(sql) }

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
