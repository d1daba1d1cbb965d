package main

import (
	"context"
	"fmt"
	"regexp"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/rs/zerolog"

	"github.com/pgtenant/pgtenant/admin"
	"github.com/pgtenant/pgtenant/auth"
	"github.com/pgtenant/pgtenant/config"
	"github.com/pgtenant/pgtenant/policies"
	"github.com/pgtenant/pgtenant/poolmgr"
	"github.com/pgtenant/pgtenant/proxy"
	"github.com/pgtenant/pgtenant/tenants"
)

// adminPoolConns bounds the admin API's connections to the control
// database: a few operators, not the traffic.
const adminPoolConns = 4

// newAdminAPI builds the admin API over the registry's control database
// (and the audit log's, when it is another one). The returned func closes
// its connections.
func newAdminAPI(ctx context.Context, cfg config.Config, orgRe *regexp.Regexp, srv *proxy.Server, log zerolog.Logger) (*admin.API, func(), error) {
	verifier, err := auth.NewVerifier(cfg.AdminJWT(), orgRe)
	if err != nil {
		return nil, nil, fmt.Errorf("admin.jwt: %w", err)
	}
	store, err := newPool(ctx, cfg.Tenants.DSN)
	if err != nil {
		return nil, nil, fmt.Errorf("tenants.dsn: %w", err)
	}
	auditDB := store
	if cfg.Audit.DSN != "" && cfg.Audit.DSN != cfg.Tenants.DSN {
		if auditDB, err = newPool(ctx, cfg.Audit.DSN); err != nil {
			store.Close()
			return nil, nil, fmt.Errorf("audit.dsn: %w", err)
		}
	}
	backend, err := cfg.BackendConfig()
	if err != nil {
		return nil, nil, err
	}
	others := []string{backend.Database}
	for _, db := range cfg.Databases {
		others = append(others, db)
	}
	api := &admin.API{
		Store:      tenants.NewStore(store),
		Verifier:   verifier,
		RolesClaim: cfg.Admin.RolesClaim,
		Audit:      auditDB,
		Pools:      func() []poolmgr.PoolStat { return srv.Pools().Stat().Pools },
		Sessions:   srv.SessionsByTenant,
		WaitP99:    srv.TenantWaitP99,
		Policies: admin.DatabasePolicies{DSN: cfg.Tenants.DSN, Others: others, Options: policies.VerifyOptions{
			Selection: cfg.Policies.Selection(), AppRole: backend.User, OrgType: cfg.Policies.OrgType,
			Citus: cfg.Policies.Citus, Probe: true,
		}},
		Log: log,
	}
	return api, func() {
		if auditDB != store {
			auditDB.Close()
		}
		store.Close()
	}, nil
}

// newPool opens a small pool; it connects on first use.
func newPool(ctx context.Context, dsn string) (*pgxpool.Pool, error) {
	cfg, err := pgxpool.ParseConfig(dsn)
	if err != nil {
		return nil, err
	}
	cfg.MaxConns = adminPoolConns
	if _, ok := cfg.ConnConfig.RuntimeParams["application_name"]; !ok {
		cfg.ConnConfig.RuntimeParams["application_name"] = "pgtenant admin"
	}
	return pgxpool.NewWithConfig(ctx, cfg)
}
