package main

import (
	"context"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"

	"github.com/pgtenant/pgtenant/config"
	"github.com/pgtenant/pgtenant/policies"
)

// newPlansSampler starts the background EXPLAIN of slow tenant statements
// (plans.sample_slow): each plan that reads a tenant table without a
// tenant-leading index is logged with the index to add and counted in
// pgtenant_tenant_seqscans_total{table}.
func newPlansSampler(cfg config.Config, backend *pgconn.Config, signer *policies.Signer, log zerolog.Logger, reg prometheus.Registerer) *policies.Sampler {
	scans := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "pgtenant_tenant_seqscans_total",
		Help: "Sampled slow tenant statements whose plan reads the tenant table without a tenant-leading index (plans.sample_slow).",
	}, []string{"table"})
	reg.MustRegister(scans)
	return policies.NewSampler(policies.SamplerOptions{
		Connect: func(ctx context.Context, database string) (*pgx.Conn, error) {
			cc, err := pgx.ParseConfig("")
			if err != nil {
				return nil, err
			}
			cc.Config = *backend.Copy()
			cc.Database = database
			if cc.RuntimeParams == nil {
				cc.RuntimeParams = map[string]string{}
			}
			cc.RuntimeParams["application_name"] = "pgtenant plans"
			return pgx.ConnectConfig(ctx, cc)
		},
		Selection:   cfg.Policies.Selection(),
		AppRole:     backend.User,
		Signer:      signer,
		Fingerprint: policies.Fingerprint,
		PerMinute:   cfg.Plans.PerMinute,
		OnFinding: func(database, org string, f policies.PlanFinding) {
			if f.Table != "" {
				scans.WithLabelValues(f.Table).Inc()
			}
			log.Warn().Str("database", database).Str("tenant", org).Str("table", f.Table).
				Str("fingerprint", f.Query).Str("suggestion", f.Suggestion).
				Msg("slow tenant statement: " + f.Problem)
		},
		Log: log,
	})
}
