package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"regexp"
	"strings"

	"github.com/jackc/pgx/v5"
	"github.com/spf13/cobra"

	"github.com/pgtenant/pgtenant/policies"
)

// maxStatementsFile bounds the --file of policies plans.
const maxStatementsFile = 4 << 20

func newPoliciesPlansCmd() *cobra.Command {
	var (
		target           policiesTarget
		file, org        string
		asJSON, statsOff bool
		showPlans        bool
	)
	cmd := &cobra.Command{
		Use:   "plans --dsn DSN --app-role ROLE [--config FILE] [--file statements.sql] [--json]",
		Short: "Explain tenant queries as the application role; exit 1 when one reads a tenant table without a tenant-leading index",
		Long: "For each tenant table (policies.tables in --config), EXPLAIN the generic plan of a lookup by primary " +
			"key and by each indexed column, the statements in --file (separated by semicolons, $n parameters " +
			"allowed) and pg_stat_statements' top statements on tenant tables when it is installed and readable. " +
			"Each runs as the application role with a tenant context signed with tenancy.context_keys from " +
			"--config, in a transaction that is rolled back. Flags a Seq Scan of a tenant table, an index that does " +
			"not lead with the org column (the tenant check becomes a Filter), a tenant's rows all read to apply a " +
			"Filter, and functions called per row in a Filter, each with the CREATE INDEX to add. Exits 1 when " +
			"anything is flagged.",
		Args: cobra.NoArgs,
	}
	target.addFlags(cmd)
	cfgFile := addConfigFlags(cmd, false)
	f := cmd.Flags()
	f.StringVar(&file, "file", "", "file of statements to explain as well, separated by semicolons")
	f.StringVar(&org, "org", "", "tenant to plan as (default "+policies.DefaultPlansOrg+", a synthetic one)")
	f.BoolVar(&asJSON, "json", false, "print the findings as JSON ({findings: [{table, query, problem, suggestion, plan}], ok})")
	f.BoolVar(&statsOff, "no-stat-statements", false, "do not explain pg_stat_statements' top statements")
	f.BoolVar(&showPlans, "show-plans", false, "print each flagged plan (JSON) under its finding")
	cmd.RunE = func(cmd *cobra.Command, _ []string) error {
		if err := target.oneAppRole("plans"); err != nil {
			return err
		}
		cfg, err := loadPoliciesConfig(cmd, *cfgFile)
		if err != nil {
			return err
		}
		keys, err := cfg.Tenancy.SigningKeys()
		if err != nil {
			return err
		}
		if len(keys) == 0 {
			return errors.New("no context key: plans signs a tenant context with tenancy.context_keys (or tenancy.context_secret) from --config")
		}
		var statements []string
		if file != "" {
			if statements, err = readStatements(file); err != nil {
				return err
			}
		}
		return target.withConn(cmd, true, func(ctx context.Context, conn *pgx.Conn) error {
			findings, err := policies.Plans(ctx, conn, policies.PlansOptions{
				Selection:         cfg.Policies.Selection(),
				AppRole:           target.appRoles[0],
				Keys:              keys,
				Org:               org,
				Statements:        statements,
				UseStatStatements: !statsOff,
			})
			if err != nil {
				return err
			}
			w := cmd.OutOrStdout()
			if asJSON {
				if findings == nil {
					findings = []policies.PlanFinding{}
				}
				if err := printJSON(w, struct {
					Findings []policies.PlanFinding `json:"findings"`
					OK       bool                   `json:"ok"`
				}{findings, len(findings) == 0}); err != nil {
					return err
				}
			} else {
				printPlanFindings(w, findings, conn.Config().Database, showPlans)
			}
			if len(findings) > 0 {
				return fmt.Errorf("plans: %d finding(s) in database %s", len(findings), conn.Config().Database)
			}
			return nil
		})
	}
	return cmd
}

// printPlanFindings prints one block per finding: the table and problem,
// the query, the fix and, with showPlans, the plan.
func printPlanFindings(w io.Writer, findings []policies.PlanFinding, database string, showPlans bool) {
	if len(findings) == 0 {
		fmt.Fprintf(w, "database %s: every plan reads tenant tables through a tenant-leading index\n", database)
		return
	}
	for _, f := range findings {
		table := f.Table
		if table == "" {
			table = "(statement)"
		}
		fmt.Fprintf(w, "%s: %s\n  query: %s\n", table, f.Problem, oneLine(f.Query))
		if f.Suggestion != "" {
			fmt.Fprintf(w, "  fix:   %s\n", f.Suggestion)
		}
		if showPlans && f.Plan != "" {
			fmt.Fprintf(w, "  plan:\n    %s\n", strings.ReplaceAll(strings.TrimSpace(f.Plan), "\n", "\n    "))
		}
	}
	fmt.Fprintf(w, "%d finding(s) in database %s\n", len(findings), database)
}

var spaces = regexp.MustCompile(`\s+`)

func oneLine(s string) string { return spaces.ReplaceAllString(strings.TrimSpace(s), " ") }

// readStatements reads a file of SQL statements separated by semicolons.
func readStatements(path string) ([]string, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return nil, fmt.Errorf("--file: %w", err)
	}
	if fi.Size() > maxStatementsFile {
		return nil, fmt.Errorf("--file %s is %d bytes; at most %d are read", path, fi.Size(), maxStatementsFile)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("--file: %w", err)
	}
	stmts := splitStatements(string(b))
	if len(stmts) == 0 {
		return nil, fmt.Errorf("--file %s holds no statement", path)
	}
	return stmts, nil
}

// dollarTag is the opening of a dollar-quoted string.
var dollarTag = regexp.MustCompile(`^\$[A-Za-z_]?[A-Za-z0-9_]*\$`)

// splitStatements splits sql at the semicolons outside quotes, dollar
// quotes and comments, and drops empty statements and comment-only ones.
func splitStatements(sql string) []string {
	var (
		out     []string
		start   int
		hasCode bool
	)
	flush := func(end int) {
		if s := strings.TrimSpace(sql[start:end]); hasCode && s != "" {
			out = append(out, s)
		}
		start, hasCode = end+1, false
	}
	for i := 0; i < len(sql); i++ {
		switch c := sql[i]; {
		case c == '-' && strings.HasPrefix(sql[i:], "--"):
			if j := strings.IndexByte(sql[i:], '\n'); j >= 0 {
				i += j
			} else {
				i = len(sql)
			}
		case c == '/' && strings.HasPrefix(sql[i:], "/*"):
			if j := strings.Index(sql[i+2:], "*/"); j >= 0 {
				i += j + 3
			} else {
				i = len(sql)
			}
		case c == '\'' || c == '"':
			hasCode = true
			j := strings.IndexByte(sql[i+1:], c)
			for j >= 0 && i+j+2 < len(sql) && sql[i+j+2] == c { // doubled quote
				i += j + 2
				j = strings.IndexByte(sql[i+1:], c)
			}
			if j < 0 {
				i = len(sql)
			} else {
				i += j + 1
			}
		case c == '$' && dollarTag.MatchString(sql[i:]):
			hasCode = true
			tag := dollarTag.FindString(sql[i:])
			if j := strings.Index(sql[i+len(tag):], tag); j >= 0 {
				i += len(tag) + j + len(tag) - 1
			} else {
				i = len(sql)
			}
		case c == ';':
			flush(i)
		case c != ' ' && c != '\t' && c != '\n' && c != '\r':
			hasCode = true
		}
	}
	flush(len(sql))
	return out
}
