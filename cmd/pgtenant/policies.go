package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/jackc/pgx/v5"
	"github.com/spf13/cobra"

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
	cmd.AddCommand(newPoliciesInstallCmd(), newPoliciesCheckCmd())
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
	f.StringVar(&p.dsn, "dsn", "", "DSN of the database, as its owner or a superuser (default $"+policiesDSNEnv+")")
	f.StringArrayVar(&p.appRoles, "app-role", nil, "role pgtenant connects as (repeat for several; required)")
}

// connect checks the flags and connects.
func (p *policiesTarget) connect(ctx context.Context) (*pgx.Conn, error) {
	if p.dsn == "" {
		p.dsn = os.Getenv(policiesDSNEnv)
	}
	if p.dsn == "" {
		return nil, errors.New("--dsn or " + policiesDSNEnv + " is required: the database to install into, as its owner or a superuser")
	}
	if len(p.appRoles) == 0 {
		return nil, errors.New("--app-role is required: the role pgtenant connects as (backend.dsn's user)")
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
