package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"text/tabwriter"

	"github.com/jackc/pgx/v5"
	"github.com/spf13/cobra"

	"github.com/pgtenant/pgtenant/config"
	"github.com/pgtenant/pgtenant/policies"
)

// policiesDSNEnv is read when --dsn is not given.
const policiesDSNEnv = "PGTENANT_POLICIES_DSN"

func newPoliciesCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "policies",
		Short: "Install and check the database side of tenancy",
		Args:  cobra.NoArgs,
	}
	cmd.AddCommand(newPoliciesInstallCmd(), newPoliciesCheckCmd(),
		newPoliciesListCmd(), newPoliciesApplyCmd(), newPoliciesRemoveCmd(), newPoliciesVerifyCmd(), newPoliciesPlansCmd())
	return cmd
}

// policiesTarget is what every policies subcommand needs: an admin
// connection and the application roles.
type policiesTarget struct {
	dsn      string
	appRoles []string
}

func (p *policiesTarget) addFlags(cmd *cobra.Command) {
	f := cmd.Flags()
	p.addDSNFlag(cmd)
	f.StringArrayVar(&p.appRoles, "app-role", nil, "role pgtenant connects as (repeat for several; required)")
}

func (p *policiesTarget) addDSNFlag(cmd *cobra.Command) {
	cmd.Flags().StringVar(&p.dsn, "dsn", "", "DSN of the database, as its owner or a superuser (default $"+policiesDSNEnv+")")
}

// connect checks the flags and connects.
func (p *policiesTarget) connect(ctx context.Context) (*pgx.Conn, error) {
	if p.dsn == "" {
		p.dsn = os.Getenv(policiesDSNEnv)
	}
	if p.dsn != "" && len(p.appRoles) == 0 {
		return nil, errors.New("--app-role is required: the role pgtenant connects as (backend.dsn's user)")
	}
	return p.connectDSN(ctx)
}

// connectDSN connects without needing --app-role.
func (p *policiesTarget) connectDSN(ctx context.Context) (*pgx.Conn, error) {
	if p.dsn == "" {
		p.dsn = os.Getenv(policiesDSNEnv)
	}
	if p.dsn == "" {
		return nil, errors.New("--dsn or " + policiesDSNEnv + " is required: the database, as its owner or a superuser")
	}
	conn, err := pgx.Connect(ctx, p.dsn)
	if err != nil {
		return nil, fmt.Errorf("connecting to the database: %w", err)
	}
	return conn, nil
}

func newPoliciesInstallCmd() *cobra.Command {
	var (
		target     policiesTarget
		ids, files []string
	)
	cmd := &cobra.Command{
		Use:   "install --dsn DSN --app-role ROLE --key-id ID --key-file FILE [--key-id ID2 --key-file FILE2]",
		Short: "Install the tenancy schema, its context keys and the application role's grants",
		Long: "Create or update the tenancy schema (the signed tenant context that Row-Level Security policies " +
			"verify with tenancy.current_org(), and the audit table) in one transaction; store the context keys, " +
			"removing any no longer given; grant the application roles what they need and nothing more. " +
			"Safe to run again. The first key signs; every key given is accepted: to rotate, install with the " +
			"new key first and the old one second, restart the proxies, then install with the new key alone. " +
			"Then prints the hardening findings for each application role.",
		Args: cobra.NoArgs,
	}
	target.addFlags(cmd)
	file := addConfigFlags(cmd, false)
	f := cmd.Flags()
	f.StringArrayVar(&ids, "key-id", nil, "context key id, [A-Za-z0-9_-]{1,32} (repeat, in the order of --key-file; default: tenancy.context_keys from --config)")
	f.StringArrayVar(&files, "key-file", nil, "file holding the context key's secret, at least 32 bytes (repeat)")
	cmd.RunE = func(cmd *cobra.Command, _ []string) error {
		var keys []policies.ContextKey
		var err error
		if len(ids) == 0 && len(files) == 0 {
			// The same keys pgtenant serve signs with.
			cfg, err := loadConfig(cmd, *file, false)
			if err != nil {
				return err
			}
			if keys, err = cfg.Tenancy.SigningKeys(); err != nil {
				return err
			}
		}
		if keys == nil {
			if keys, err = contextKeysFromFlags(ids, files); err != nil {
				return err
			}
		}
		ctx := cmd.Context()
		conn, err := target.connect(ctx)
		if err != nil {
			return err
		}
		defer conn.Close(context.WithoutCancel(ctx))
		if err := policies.Install(ctx, conn, policies.InstallOptions{Keys: keys, AppRoles: target.appRoles}); err != nil {
			return fmt.Errorf("install: %w", err)
		}
		w := cmd.OutOrStdout()
		keyIDs := make([]string, len(keys))
		for i, k := range keys {
			keyIDs[i] = k.ID
		}
		fmt.Fprintf(w, "tenancy schema version %d installed in database %s; context keys: %s; granted to: %s\n",
			policies.SchemaVersion, conn.Config().Database, strings.Join(keyIDs, ", "), strings.Join(target.appRoles, ", "))
		// The findings are advice here; policies check fails on them.
		_, err = printHardening(ctx, w, conn, target.appRoles)
		return err
	}
	return cmd
}

func newPoliciesCheckCmd() *cobra.Command {
	var target policiesTarget
	cmd := &cobra.Command{
		Use:   "check --dsn DSN --app-role ROLE",
		Short: "Check that the application role cannot get around Row-Level Security",
		Long: "Print what lets an application role get around Row-Level Security or the signed tenant context " +
			"(superuser, BYPASSRLS, owned or inherited tenant tables, TEMP, TRUNCATE/REFERENCES/TRIGGER, shared " +
			"sequences, RLS not enabled or forced, the tenancy schema missing or readable), each with the SQL " +
			"that fixes it. Exits 1 when any finding is an error.",
		Args: cobra.NoArgs,
	}
	target.addFlags(cmd)
	cmd.RunE = func(cmd *cobra.Command, _ []string) error {
		ctx := cmd.Context()
		conn, err := target.connect(ctx)
		if err != nil {
			return err
		}
		defer conn.Close(context.WithoutCancel(ctx))
		errs, err := printHardening(ctx, cmd.OutOrStdout(), conn, target.appRoles)
		if err != nil {
			return err
		}
		if errs > 0 {
			return fmt.Errorf("%d hardening error(s) in database %s", errs, conn.Config().Database)
		}
		return nil
	}
	return cmd
}

// printHardening prints the hardening findings of each role, one per line,
// and returns how many are errors.
func printHardening(ctx context.Context, w io.Writer, conn *pgx.Conn, roles []string) (errs int, err error) {
	for _, role := range roles {
		findings, err := policies.CheckHardening(ctx, conn, role)
		if err != nil {
			return errs, err
		}
		if len(findings) == 0 {
			fmt.Fprintf(w, "%s: no findings\n", role)
			continue
		}
		for _, f := range findings {
			if f.Severity == policies.SeverityError {
				errs++
			}
			fmt.Fprintf(w, "%s: %s\n", role, f)
		}
	}
	return errs, nil
}

// contextKeysFromFlags pairs --key-id and --key-file values in order and
// reads each secret (one trailing newline dropped, as editors and echo add
// one). Errors name the key id and file, never the secret.
func contextKeysFromFlags(ids, files []string) ([]policies.ContextKey, error) {
	if len(ids) == 0 {
		return nil, errors.New("no context key: give --key-id and --key-file (the signing key first), or a --config with tenancy.context_keys or tenancy.context_secret")
	}
	if len(ids) != len(files) {
		return nil, fmt.Errorf("%d --key-id but %d --key-file: give one file per key id, in the same order", len(ids), len(files))
	}
	keys := make([]policies.ContextKey, len(ids))
	for i, id := range ids {
		secret, err := policies.ReadSecretFile(files[i])
		if err != nil {
			return nil, fmt.Errorf("--key-file for context key %s: %w", id, err)
		}
		keys[i] = policies.ContextKey{ID: id, Secret: secret}
		if err := keys[i].Validate(); err != nil {
			return nil, err
		}
	}
	return keys, nil
}

// withConn connects (with the application roles when roles is set), runs
// fn and closes the connection.
func (p *policiesTarget) withConn(cmd *cobra.Command, roles bool, fn func(context.Context, *pgx.Conn) error) error {
	ctx := cmd.Context()
	connect := p.connectDSN
	if roles {
		connect = p.connect
	}
	conn, err := connect(ctx)
	if err != nil {
		return err
	}
	defer conn.Close(context.WithoutCancel(ctx))
	return fn(ctx, conn)
}

// policiesConfig reads the policies section of --config and the
// environment.
func policiesConfig(cmd *cobra.Command, file string) (config.Policies, error) {
	cfg, err := loadPoliciesConfig(cmd, file)
	return cfg.Policies, err
}

// loadPoliciesConfig reads --config and the environment, with the policies
// section checked.
func loadPoliciesConfig(cmd *cobra.Command, file string) (config.Config, error) {
	cfg, err := loadConfig(cmd, file, false)
	if err != nil {
		return config.Config{}, err
	}
	if err := cfg.Policies.Validate(); err != nil {
		return config.Config{}, err
	}
	return cfg, nil
}

// oneAppRole refuses more than one --app-role for a command that acts as
// the role.
func (p *policiesTarget) oneAppRole(command string) error {
	if len(p.appRoles) > 1 {
		return errors.New(command + " works as one --app-role at a time: run it once per application role")
	}
	return nil
}

func newPoliciesListCmd() *cobra.Command {
	var (
		target policiesTarget
		asJSON bool
	)
	cmd := &cobra.Command{
		Use:   "list [--config FILE] [--dsn DSN] [--json]",
		Short: "List every table, whether it is a tenant table and why",
		Long: "List every ordinary and partitioned table of the database with the decision of policies.tables " +
			"(include and exclude patterns, or discovery by the org column when there are no include patterns) " +
			"and its reason. Partitions follow their parent unless a pattern names them.",
		Args: cobra.NoArgs,
	}
	target.addDSNFlag(cmd)
	file := addConfigFlags(cmd, false)
	cmd.Flags().BoolVar(&asJSON, "json", false, "print a JSON array of tables")
	cmd.RunE = func(cmd *cobra.Command, _ []string) error {
		pc, err := policiesConfig(cmd, *file)
		if err != nil {
			return err
		}
		var tables []policies.Table
		err = target.withConn(cmd, false, func(ctx context.Context, conn *pgx.Conn) (err error) {
			tables, err = policies.ListTables(ctx, conn, pc.Selection())
			return err
		})
		if err != nil {
			return err
		}
		w := cmd.OutOrStdout()
		if asJSON {
			if tables == nil {
				tables = []policies.Table{}
			}
			return printJSON(w, tables)
		}
		tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "TABLE\tTENANT\tWHY")
		for _, t := range tables {
			in := "no"
			if t.Tenant {
				in = "yes"
			}
			fmt.Fprintf(tw, "%s.%s\t%s\t%s\n", t.Schema, t.Name, in, t.Reason)
		}
		return tw.Flush()
	}
	return cmd
}

func newPoliciesApplyCmd() *cobra.Command {
	var (
		target                                    policiesTarget
		dryRun, rewriteKeys, concurrently, asJSON bool
	)
	cmd := &cobra.Command{
		Use:   "apply --dsn DSN --app-role ROLE [--config FILE] [--dry-run] [--rewrite-keys] [--concurrently] [--json]",
		Short: "Make the tenant tables tenant-safe: org column, RLS policies, indexes, hardening",
		Long: "In one transaction, for every tenant table (see policies list): add the org column where missing, " +
			"enable and force Row-Level Security with the pgtenant_select/insert/update/delete policies, create " +
			"indexes that lead with the org column, make views over tenant tables security_invoker, revoke " +
			"TRUNCATE, REFERENCES, TRIGGER and TEMPORARY from the application roles, and record the policy " +
			"version in tenancy.tables. Only what is missing is done: a second run changes nothing. Unique keys " +
			"and foreign keys without the org column are printed as offered rewrites, applied with --rewrite-keys. " +
			"Tables whose rows have no org yet get the column and wait for a backfill (docs/rls.md). " +
			"Run pgtenant policies install first.",
		Args: cobra.NoArgs,
	}
	target.addFlags(cmd)
	file := addConfigFlags(cmd, false)
	f := cmd.Flags()
	f.BoolVar(&dryRun, "dry-run", false, "print the SQL apply would run and change nothing")
	f.BoolVar(&rewriteKeys, "rewrite-keys", false, "rewrite unique keys and foreign keys to include the org column")
	f.BoolVar(&concurrently, "concurrently", false, "create indexes with CREATE INDEX CONCURRENTLY after the transaction")
	f.BoolVar(&asJSON, "json", false, `print the plan as JSON: {"applied", "tables", "statements", "concurrent", "offered", "backfill"}`)
	cmd.RunE = func(cmd *cobra.Command, _ []string) error {
		pc, err := policiesConfig(cmd, *file)
		if err != nil {
			return err
		}
		opts := pc.ApplyOptions(target.appRoles)
		opts.RewriteKeys, opts.Concurrently = rewriteKeys, concurrently
		w := cmd.OutOrStdout()
		show := func(p *policies.ApplyPlan, applied bool) {
			if asJSON {
				_ = printJSON(w, struct {
					Applied bool `json:"applied"`
					*policies.ApplyPlan
				}{applied, p})
				return
			}
			verb := "would run"
			if applied {
				verb = "ran"
			}
			printPlan(w, p, verb)
		}
		return target.withConn(cmd, true, func(ctx context.Context, conn *pgx.Conn) error {
			if dryRun {
				p, err := policies.Plan(ctx, conn, opts)
				if err != nil {
					return err
				}
				show(p, false)
				return nil
			}
			p, err := policies.Apply(ctx, conn, opts)
			if p != nil {
				show(p, err == nil)
			}
			if err != nil {
				return fmt.Errorf("apply: %w", err)
			}
			return nil
		})
	}
	return cmd
}

// printPlan prints a plan's SQL, the offered rewrites and the backfills.
func printPlan(w io.Writer, p *policies.ApplyPlan, verb string) {
	fmt.Fprintf(w, "-- %d tenant table(s)\n", len(p.Tables))
	if p.Empty() {
		fmt.Fprintln(w, "-- nothing to do: every tenant table is in place")
	} else {
		fmt.Fprintf(w, "-- apply %s:\n%s", verb, p.SQL())
	}
	if len(p.Offered) > 0 {
		fmt.Fprintln(w, "-- rewrite offered (keys without the org column; run apply --rewrite-keys to apply):")
		for _, s := range p.Offered {
			fmt.Fprintf(w, "-- %s\n--   %s;\n", s.Comment, s.SQL)
		}
	}
	if len(p.Blocked) > 0 {
		fmt.Fprintln(w, "-- rewrite blocked (foreign keys apply cannot rewrite depend on these keys):")
		for _, s := range p.Blocked {
			fmt.Fprintf(w, "-- %s\n--   %s;\n", s.Comment, s.SQL)
		}
	}
	for _, b := range p.Backfill {
		fmt.Fprintf(w, "-- backfill needed: %s has rows without an org; as its owner: %s; then run apply again\n", b.Table, b.SQL)
	}
}

func newPoliciesRemoveCmd() *cobra.Command {
	var target policiesTarget
	cmd := &cobra.Command{
		Use:   "remove --dsn DSN TABLE",
		Short: "Undo apply for one table: drop its pgtenant policies and Row-Level Security",
		Long: "In one transaction: drop the pgtenant_* policies of TABLE, NO FORCE ROW LEVEL SECURITY, DISABLE ROW " +
			"LEVEL SECURITY unless other policies remain, and delete its tenancy.tables row. The org column, " +
			"indexes, rewritten keys, views' security_invoker and revoked privileges stay. Partitions are " +
			"separate tables: remove each.",
		Args: cobra.ExactArgs(1),
	}
	target.addDSNFlag(cmd)
	cmd.RunE = func(cmd *cobra.Command, args []string) error {
		err := target.withConn(cmd, false, func(ctx context.Context, conn *pgx.Conn) error {
			return policies.Remove(ctx, conn, args[0])
		})
		if err != nil {
			return err
		}
		fmt.Fprintf(cmd.OutOrStdout(), "removed pgtenant's policies and Row-Level Security from %s\n", args[0])
		return nil
	}
	return cmd
}
