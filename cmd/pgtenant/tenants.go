package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/user"
	"strings"
	"text/tabwriter"

	"github.com/jackc/pgx/v5"
	"github.com/spf13/cobra"

	"github.com/pgtenant/pgtenant/config"
	"github.com/pgtenant/pgtenant/policies"
	"github.com/pgtenant/pgtenant/tenants"
)

// tenantsDSNEnv is read when neither --dsn nor the config's tenants.dsn is set.
const tenantsDSNEnv = "PGTENANT_TENANTS_DSN"

// tenantsCLI is what every tenants subcommand shares: the control database
// and who is acting.
type tenantsCLI struct {
	dsn, configFile, actor string
}

func newTenantsCmd() *cobra.Command {
	var c tenantsCLI
	cmd := &cobra.Command{
		Use:   "tenants",
		Short: "Create, change, suspend and deprovision tenant organizations",
		Long: "Manage the tenant registry in the control database (tenancy.orgs, installed by pgtenant policies install). " +
			"Every running pgtenant applies a change within a second. Every change is recorded in tenancy.org_history with --actor.",
		Args: cobra.NoArgs,
	}
	f := cmd.PersistentFlags()
	f.StringVar(&c.dsn, "dsn", "", "control database DSN (default: tenants.dsn of --config, else $"+tenantsDSNEnv+")")
	f.StringVar(&c.configFile, "config", "", "config file whose tenants.dsn to use")
	f.StringVar(&c.actor, "actor", "", "who makes the change, recorded in the history (default cli:$USER)")
	cmd.AddCommand(c.createCmd(), c.listCmd(), c.getCmd(), c.updateCmd(),
		c.statusCmd("suspend", tenants.StatusSuspended, "Suspend an organization: its sessions end within seconds and its logins are refused"),
		c.statusCmd("resume", tenants.StatusActive, "Resume a suspended organization"),
		c.statusCmd("deprovision", tenants.StatusDeprovisioned, "Deprovision an organization for good: sessions end, pools close, logins are refused"),
		c.membersCmd(), c.purgeCmd())
	return cmd
}

// store connects to the control database.
func (c *tenantsCLI) store(cmd *cobra.Command) (*tenants.Store, func(), error) {
	dsn := c.dsn
	if dsn == "" && c.configFile != "" {
		cfg, err := config.Read(c.configFile, nil, nil)
		if err != nil {
			return nil, nil, err
		}
		dsn = cfg.Tenants.DSN
	}
	if dsn == "" {
		dsn = os.Getenv(tenantsDSNEnv)
	}
	if dsn == "" {
		return nil, nil, errors.New("--dsn, --config with tenants.dsn, or " + tenantsDSNEnv + " is required: the control database that holds the tenant registry")
	}
	pool, err := newPool(cmd.Context(), dsn)
	if err != nil {
		return nil, nil, fmt.Errorf("control database DSN: %w", err)
	}
	return tenants.NewStore(pool), pool.Close, nil
}

// actorName is --actor, or cli: and the OS user.
func (c *tenantsCLI) actorName() string {
	if c.actor != "" {
		return c.actor
	}
	if u, err := user.Current(); err == nil {
		return "cli:" + u.Username
	}
	return "cli"
}

// run connects and runs fn, printing its result as JSON.
func (c *tenantsCLI) run(fn func(ctx context.Context, s *tenants.Store) (any, error)) func(*cobra.Command, []string) error {
	return func(cmd *cobra.Command, _ []string) error {
		s, closeStore, err := c.store(cmd)
		if err != nil {
			return err
		}
		defer closeStore()
		v, err := fn(cmd.Context(), s)
		if err != nil || v == nil {
			return err
		}
		return printJSON(cmd.OutOrStdout(), v)
	}
}

func printJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

// jsonFlag decodes a flag's JSON value into v, refusing unknown fields.
func jsonFlag(name, value string, v any) error {
	dec := json.NewDecoder(strings.NewReader(value))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return fmt.Errorf("--%s: %w", name, err)
	}
	return nil
}

func (c *tenantsCLI) createCmd() *cobra.Command {
	var n tenants.NewOrg
	var settings, flags, pool string
	cmd := &cobra.Command{
		Use:   "create ID --name NAME [--slug SLUG] [--settings JSON] [--flags JSON] [--pool JSON]",
		Short: "Provision an organization (status active)",
		Args:  cobra.ExactArgs(1),
	}
	f := cmd.Flags()
	f.StringVar(&n.Name, "name", "", "display name (default: the id)")
	f.StringVar(&n.Slug, "slug", "", "URL-safe name (default: the id in lower case)")
	f.StringVar(&settings, "settings", "", `settings, e.g. '{"statement_timeout":"30s","read_only":false,"max_connections":50}'`)
	f.StringVar(&flags, "flags", "", `feature flags as a JSON object, e.g. '{"beta":true}'`)
	f.StringVar(&pool, "pool", "", `pool overrides, e.g. '{"size":10}'`)
	cmd.RunE = func(cmd *cobra.Command, args []string) error {
		n.ID = args[0]
		if n.Name == "" {
			n.Name = n.ID
		}
		for _, j := range []struct {
			name, value string
			into        any
		}{{"settings", settings, &n.Settings}, {"flags", flags, &n.Flags}, {"pool", pool, &n.Pool}} {
			if j.value != "" {
				if err := jsonFlag(j.name, j.value, j.into); err != nil {
					return err
				}
			}
		}
		return c.run(func(ctx context.Context, s *tenants.Store) (any, error) {
			return s.Create(ctx, c.actorName(), n)
		})(cmd, args)
	}
	return cmd
}

func (c *tenantsCLI) listCmd() *cobra.Command {
	var o tenants.ListOptions
	var status string
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "list [--status S] [--search TEXT] [--limit N] [--offset N] [--json]",
		Short: "List organizations",
		Args:  cobra.NoArgs,
	}
	f := cmd.Flags()
	f.StringVar(&status, "status", "", "only this status: active, suspended or deprovisioned")
	f.StringVar(&o.Search, "search", "", "only orgs whose id, slug or name contains this (case-insensitive)")
	f.IntVar(&o.Limit, "limit", 50, "page size (at most 500)")
	f.IntVar(&o.Offset, "offset", 0, "orgs to skip")
	f.BoolVar(&asJSON, "json", false, "print the page as JSON")
	cmd.RunE = func(cmd *cobra.Command, _ []string) error {
		o.Status = tenants.Status(status)
		s, closeStore, err := c.store(cmd)
		if err != nil {
			return err
		}
		defer closeStore()
		page, err := s.List(cmd.Context(), o)
		if err != nil {
			return err
		}
		if asJSON {
			return printJSON(cmd.OutOrStdout(), page)
		}
		tw := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "ID\tSLUG\tNAME\tSTATUS\tVERSION\tUPDATED")
		for _, org := range page.Orgs {
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%d\t%s by %s\n", org.ID, org.Slug, org.Name, org.Status, org.Version,
				org.UpdatedAt.Format("2006-01-02 15:04"), org.UpdatedBy)
		}
		fmt.Fprintf(tw, "(%d of %d)\n", len(page.Orgs), page.Total)
		return tw.Flush()
	}
	return cmd
}

func (c *tenantsCLI) getCmd() *cobra.Command {
	var history bool
	cmd := &cobra.Command{
		Use:   "get ID [--history]",
		Short: "Print an organization as JSON",
		Args:  cobra.ExactArgs(1),
	}
	cmd.Flags().BoolVar(&history, "history", false, "print its change history instead")
	cmd.RunE = func(cmd *cobra.Command, args []string) error {
		return c.run(func(ctx context.Context, s *tenants.Store) (any, error) {
			if history {
				return s.History(ctx, args[0], 100)
			}
			return s.Get(ctx, args[0])
		})(cmd, args)
	}
	return cmd
}

func (c *tenantsCLI) updateCmd() *cobra.Command {
	var name, settings, flags, pool string
	var version int64
	cmd := &cobra.Command{
		Use:   "update ID [--name N] [--settings JSON] [--flags JSON] [--pool JSON] [--version V]",
		Short: "Change an organization's name, settings, feature flags or pool overrides",
		Long: "Each of --settings, --flags and --pool replaces that whole object. With --version the change applies " +
			"only if nobody changed the organization since that version (as the admin API's If-Match).",
		Args: cobra.ExactArgs(1),
	}
	f := cmd.Flags()
	f.StringVar(&name, "name", "", "new display name")
	f.StringVar(&settings, "settings", "", "new settings (JSON object)")
	f.StringVar(&flags, "flags", "", "new feature flags (JSON object)")
	f.StringVar(&pool, "pool", "", "new pool overrides (JSON object)")
	f.Int64Var(&version, "version", 0, "apply only at this version (0: whatever the version)")
	cmd.RunE = func(cmd *cobra.Command, args []string) error {
		var p tenants.Patch
		if cmd.Flags().Changed("name") {
			p.Name = &name
		}
		if settings != "" {
			p.Settings = &tenants.Settings{}
			if err := jsonFlag("settings", settings, p.Settings); err != nil {
				return err
			}
		}
		if flags != "" {
			if err := jsonFlag("flags", flags, &p.Flags); err != nil {
				return err
			}
		}
		if pool != "" {
			p.Pool = &tenants.Pool{}
			if err := jsonFlag("pool", pool, p.Pool); err != nil {
				return err
			}
		}
		if p.Name == nil && p.Settings == nil && p.Flags == nil && p.Pool == nil {
			return errors.New("nothing to change: give --name, --settings, --flags or --pool")
		}
		return c.run(func(ctx context.Context, s *tenants.Store) (any, error) {
			return s.Update(ctx, c.actorName(), args[0], version, p)
		})(cmd, args)
	}
	return cmd
}

func (c *tenantsCLI) statusCmd(verb string, to tenants.Status, short string) *cobra.Command {
	var reason string
	cmd := &cobra.Command{
		Use:   verb + " ID [--reason TEXT]",
		Short: short,
		Args:  cobra.ExactArgs(1),
	}
	cmd.Flags().StringVar(&reason, "reason", "", "why, recorded in the history")
	cmd.RunE = func(cmd *cobra.Command, args []string) error {
		return c.run(func(ctx context.Context, s *tenants.Store) (any, error) {
			return s.SetStatus(ctx, c.actorName(), args[0], to, reason)
		})(cmd, args)
	}
	return cmd
}

func (c *tenantsCLI) membersCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "members",
		Short: "List, add, change and remove an organization's members",
		Long: "Members are token subjects. Admins of an organization manage it through the admin API; " +
			"with settings.require_membership only active members may connect.",
		Args: cobra.NoArgs,
	}
	list := &cobra.Command{Use: "list ORG", Short: "List the members", Args: cobra.ExactArgs(1)}
	list.RunE = func(cmd *cobra.Command, args []string) error {
		return c.run(func(ctx context.Context, s *tenants.Store) (any, error) {
			return s.Members(ctx, args[0])
		})(cmd, args)
	}
	var role, status string
	put := &cobra.Command{Use: "put ORG SUBJECT [--role admin|member] [--status active|disabled]", Short: "Add or change a member", Args: cobra.ExactArgs(2)}
	put.Flags().StringVar(&role, "role", "member", "admin or member")
	put.Flags().StringVar(&status, "status", "active", "active or disabled")
	put.RunE = func(cmd *cobra.Command, args []string) error {
		return c.run(func(ctx context.Context, s *tenants.Store) (any, error) {
			return s.PutMember(ctx, c.actorName(), tenants.Member{OrgID: args[0], Subject: args[1], Role: role, Status: status})
		})(cmd, args)
	}
	del := &cobra.Command{Use: "delete ORG SUBJECT", Short: "Remove a member", Args: cobra.ExactArgs(2)}
	del.RunE = func(cmd *cobra.Command, args []string) error {
		return c.run(func(ctx context.Context, s *tenants.Store) (any, error) {
			return nil, s.DeleteMember(ctx, c.actorName(), args[0], args[1])
		})(cmd, args)
	}
	cmd.AddCommand(list, put, del)
	return cmd
}

func (c *tenantsCLI) purgeCmd() *cobra.Command {
	var dataDSN string
	var confirm bool
	var batch int
	cmd := &cobra.Command{
		Use:   "purge ORG --confirm --data-dsn DSN [--batch N]",
		Short: "Delete a deprovisioned organization's rows from every tenant table, in batches",
		Long: "Deletes the organization's rows from the tenant tables (policies.tables, as pgtenant policies list shows them) " +
			"of the data database, one batch per transaction, printing progress. The organization must be deprovisioned. " +
			"Connect to the data database as a role Row-Level Security does not hold to (its owner, a superuser or a BYPASSRLS role).",
		Args: cobra.ExactArgs(1),
	}
	f := cmd.Flags()
	f.StringVar(&dataDSN, "data-dsn", "", "DSN of the tenant data database, as its owner or a superuser (default $"+policiesDSNEnv+")")
	f.BoolVar(&confirm, "confirm", false, "really delete the rows")
	f.IntVar(&batch, "batch", 1000, "rows per transaction")
	cmd.RunE = func(cmd *cobra.Command, args []string) error {
		org := args[0]
		if !confirm {
			return errors.New("purge deletes every row of " + org + " from the tenant tables and cannot be undone: add --confirm")
		}
		if batch < 1 {
			return errors.New("--batch must be at least 1")
		}
		if dataDSN == "" {
			dataDSN = os.Getenv(policiesDSNEnv)
		}
		if dataDSN == "" {
			return errors.New("--data-dsn or " + policiesDSNEnv + " is required: the database holding the tenant tables")
		}
		cfg := config.Default()
		if c.configFile != "" {
			var err error
			if cfg, err = config.Read(c.configFile, nil, nil); err != nil {
				return err
			}
		}
		ctx := cmd.Context()
		s, closeStore, err := c.store(cmd)
		if err != nil {
			return err
		}
		defer closeStore()
		o, err := s.Get(ctx, org)
		if err != nil {
			return err
		}
		if o.Status != tenants.StatusDeprovisioned {
			return fmt.Errorf("organization %s is %s: deprovision it first (pgtenant tenants deprovision %s)", org, o.Status, org)
		}
		conn, err := pgx.Connect(ctx, dataDSN)
		if err != nil {
			return fmt.Errorf("connecting to the data database: %w", err)
		}
		defer conn.Close(context.WithoutCancel(ctx))
		tables, err := policies.TenantTables(ctx, conn, cfg.Policies.Selection())
		if err != nil {
			return err
		}
		names := make([]string, len(tables))
		for i, t := range tables {
			names[i] = t.QualifiedName()
		}
		out := cmd.OutOrStdout()
		deleted := map[string]int64{}
		var total int64
		err = tenants.Purge(ctx, conn, org, names, cfg.Policies.OrgColumn, batch, func(table string, n int64) {
			deleted[table] += n
			total += n
			fmt.Fprintf(out, "%s: %d rows deleted\n", table, n)
		})
		// What was deleted is recorded even when a later batch failed.
		if rerr := s.RecordPurge(ctx, c.actorName(), org, map[string]any{"rows": deleted, "complete": err == nil}); rerr != nil && err == nil {
			err = rerr
		}
		if err != nil {
			return err
		}
		fmt.Fprintf(out, "purged %s: %d rows from %d tables\n", org, total, len(tables))
		return nil
	}
	return cmd
}
