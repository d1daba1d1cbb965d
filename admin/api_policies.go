package admin

import (
	"context"
	"fmt"
	"net/http"
	"slices"

	"github.com/jackc/pgx/v5"

	"github.com/pgtenant/pgtenant/policies"
)

// PolicyInspector reads the Row-Level Security state of a database for the
// policy viewer.
type PolicyInspector interface {
	// Databases lists the databases the viewer offers, the default first.
	Databases() []string
	// Inspect describes the tenant tables of database and verifies them.
	Inspect(ctx context.Context, database string) ([]policies.TableInfo, *policies.VerifyReport, error)
}

// DatabasePolicies inspects databases through DSN, whose database is the
// default one: connected as a role that reads the catalogs and may run the
// verify probe as the application role (the databases' owner or a
// superuser).
type DatabasePolicies struct {
	DSN string
	// Others are the other databases offered.
	Others []string
	// Options are the verify options; Probe runs the live probe.
	Options policies.VerifyOptions
}

// Databases implements PolicyInspector.
func (d DatabasePolicies) Databases() []string {
	cfg, err := pgx.ParseConfig(d.DSN)
	if err != nil {
		return d.Others
	}
	out := []string{cfg.Database}
	for _, db := range d.Others {
		if !slices.Contains(out, db) {
			out = append(out, db)
		}
	}
	return out
}

// Inspect implements PolicyInspector.
func (d DatabasePolicies) Inspect(ctx context.Context, database string) ([]policies.TableInfo, *policies.VerifyReport, error) {
	cfg, err := pgx.ParseConfig(d.DSN)
	if err != nil {
		return nil, nil, err
	}
	cfg.Database = database
	conn, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		return nil, nil, fmt.Errorf("connecting to database %s: %w", database, err)
	}
	defer conn.Close(context.WithoutCancel(ctx))
	tables, err := policies.Describe(ctx, conn, d.Options.Selection)
	if err != nil {
		return nil, nil, err
	}
	report, err := policies.Verify(ctx, conn, d.Options)
	if err != nil {
		return nil, nil, err
	}
	return tables, report, nil
}

// policyTable is a tenant table in the viewer: its state and its checks.
type policyTable struct {
	policies.TableInfo
	Checks []policies.CheckResult `json:"checks"`
	OK     bool                   `json:"ok"`
}

// policyView is the answer of GET /policies.
type policyView struct {
	Database       string                 `json:"database"`
	Databases      []string               `json:"databases"`
	OK             bool                   `json:"ok"`
	Tables         []policyTable          `json:"tables"`
	DatabaseChecks []policies.CheckResult `json:"database_checks"`
	Explanations   map[string]string      `json:"explanations"`
}

func (a *API) policyViewer(w http.ResponseWriter, r *http.Request, _ *caller) error {
	if a.Policies == nil {
		return &apiError{http.StatusServiceUnavailable, "policies_unavailable",
			"the policy viewer is not available here: this pgtenant has no control database configured (tenants.dsn)"}
	}
	dbs := a.Policies.Databases()
	database := r.URL.Query().Get("database")
	switch {
	case database == "" && len(dbs) > 0:
		database = dbs[0]
	case !slices.Contains(dbs, database):
		return badRequest("database %q is not one pgtenant serves; choose one of %v", database, dbs)
	}
	tables, report, err := a.Policies.Inspect(r.Context(), database)
	if err != nil {
		return err
	}
	view := policyView{Database: database, Databases: dbs, OK: report.OK, Tables: make([]policyTable, 0, len(tables)),
		DatabaseChecks: []policies.CheckResult{}, Explanations: policies.CheckExplanations}
	byTable := map[string][]policies.CheckResult{}
	for _, res := range report.Results {
		if res.Table == "" {
			view.DatabaseChecks = append(view.DatabaseChecks, res)
		} else {
			byTable[res.Table] = append(byTable[res.Table], res)
		}
	}
	for _, t := range tables {
		checks := byTable[t.Table]
		delete(byTable, t.Table)
		ok := !slices.ContainsFunc(checks, func(c policies.CheckResult) bool { return c.Status == policies.StatusFail })
		view.Tables = append(view.Tables, policyTable{TableInfo: t, Checks: checks, OK: ok})
	}
	for _, res := range report.Results { // about tables that are not tenant tables (views ...)
		if _, left := byTable[res.Table]; left {
			view.DatabaseChecks = append(view.DatabaseChecks, res)
		}
	}
	writeJSON(w, http.StatusOK, view)
	return nil
}
