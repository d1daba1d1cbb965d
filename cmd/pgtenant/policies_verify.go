package main

import (
	"context"
	"fmt"
	"io"

	"github.com/jackc/pgx/v5"
	"github.com/spf13/cobra"

	"github.com/pgtenant/pgtenant/policies"
)

func newPoliciesVerifyCmd() *cobra.Command {
	var (
		target          policiesTarget
		asJSON, noProbe bool
	)
	cmd := &cobra.Command{
		Use:   "verify --dsn DSN --app-role ROLE [--config FILE] [--json] [--no-probe]",
		Short: "Check that every tenant table is isolated by tenant; exit 1 on any gap",
		Long: "Check, read-only, each tenant table (policies.tables in --config): Row-Level Security enabled and " +
			"forced; the pgtenant_select/insert/update/delete policies present and on the expected expression; " +
			"the org column NOT NULL and of policies.org_type; an index leading with it; unique and foreign keys " +
			"that include it; no view over it without security_invoker; partitions covered; and the application " +
			"role's attributes and privileges and the tenancy schema's version. Then a live probe: as the " +
			"application role, in a transaction that is rolled back, a row inserted by one synthetic tenant " +
			"must stay invisible to another and out of its reach (the probe's tokens are signed with " +
			"tenancy.context_keys from --config). Every failure comes with the SQL that fixes it. " +
			"Exits 1 when any check fails; warnings do not.",
		Args: cobra.NoArgs,
	}
	target.addFlags(cmd)
	file := addConfigFlags(cmd, false)
	f := cmd.Flags()
	f.BoolVar(&asJSON, "json", false, "print the report as JSON ({results: [{table, check, status, message, fix}], ok})")
	f.BoolVar(&noProbe, "no-probe", false, "skip the live probe")
	cmd.RunE = func(cmd *cobra.Command, _ []string) error {
		if err := target.oneAppRole("verify"); err != nil {
			return err
		}
		cfg, err := loadPoliciesConfig(cmd, *file)
		if err != nil {
			return err
		}
		var keys []policies.ContextKey
		if !noProbe {
			// The keys pgtenant serve signs with; without any the probe is
			// reported as not run.
			if keys, err = cfg.Tenancy.SigningKeys(); err != nil {
				return err
			}
		}
		return target.withConn(cmd, true, func(ctx context.Context, conn *pgx.Conn) error {
			var citus bool
			if err := conn.QueryRow(ctx, policies.DetectCitusQuery).Scan(&citus); err != nil {
				return err
			}
			role := target.appRoles[0]
			report, err := policies.Verify(ctx, conn, policies.VerifyOptions{
				Selection: cfg.Policies.Selection(),
				AppRole:   role,
				OrgType:   cfg.Policies.OrgType,
				Citus:     cfg.Policies.Citus || citus,
				Probe:     !noProbe,
				Keys:      keys,
			})
			if err != nil {
				return err
			}
			w := cmd.OutOrStdout()
			if asJSON {
				if err := printJSON(w, report); err != nil {
					return err
				}
			} else {
				printVerifyReport(w, report, conn.Config().Database, role)
			}
			if failed := len(report.Failed()); failed > 0 {
				return fmt.Errorf("verify: %d check(s) failed in database %s", failed, conn.Config().Database)
			}
			return nil
		})
	}
	return cmd
}

// printVerifyReport prints the results grouped by table, the
// database-wide ones first, then a count per status.
func printVerifyReport(w io.Writer, r *policies.VerifyReport, database, role string) {
	counts := map[string]int{}
	printed := map[string]bool{}
	var order []string
	for _, res := range r.Results {
		counts[res.Status]++
		if !printed[res.Table] {
			printed[res.Table] = true
			order = append(order, res.Table)
		}
	}
	for _, table := range order {
		if table == "" {
			fmt.Fprintf(w, "database %s, application role %s\n", database, role)
		} else {
			fmt.Fprintf(w, "table %s\n", table)
		}
		for _, res := range r.Results {
			if res.Table != table {
				continue
			}
			if res.Status == policies.StatusOK {
				fmt.Fprintf(w, "  ok    %s\n", res.Check)
				continue
			}
			fmt.Fprintf(w, "  %-5s %s: %s\n", res.Status, res.Check, res.Message)
			if res.Fix != "" {
				fmt.Fprintf(w, "        fix: %s\n", res.Fix)
			}
		}
	}
	fmt.Fprintf(w, "%d failed, %d warning(s), %d ok\n", counts[policies.StatusFail], counts[policies.StatusWarn], counts[policies.StatusOK])
}
