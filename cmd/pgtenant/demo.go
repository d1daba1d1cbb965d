package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"os"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/spf13/cobra"

	"github.com/pgtenant/pgtenant/auth"
	"github.com/pgtenant/pgtenant/config"
	"github.com/pgtenant/pgtenant/internal/pgcluster"
	"github.com/pgtenant/pgtenant/policies"
	"github.com/pgtenant/pgtenant/tenants"
)

// demoTenants are the organizations the demo creates, with their rows.
var demoTenants = []struct {
	org      string
	projects []string
}{
	{"acme", []string{"Rocket skates", "Giant magnet", "Earthquake pills"}},
	{"globex", []string{"Doomsday device", "Hammock district"}},
}

const (
	demoDatabase = "demo"
	demoRole     = "pgtenant_app"
)

// demoSchema is a tenant table protected by Row-Level Security on the
// signed tenant context pgtenant sets in every transaction (the tenancy
// schema is installed first), with the hardening docs/rls.md asks for.
const demoSchema = `
REVOKE TEMPORARY ON DATABASE ` + demoDatabase + ` FROM PUBLIC;
REVOKE CREATE ON SCHEMA public FROM PUBLIC;
CREATE TABLE IF NOT EXISTS projects (
	id     bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
	org_id text   NOT NULL DEFAULT tenancy.current_org(),
	name   text   NOT NULL
);
CREATE INDEX IF NOT EXISTS projects_org_id ON projects (org_id, id);
ALTER TABLE projects ENABLE ROW LEVEL SECURITY;
ALTER TABLE projects FORCE ROW LEVEL SECURITY;
DROP POLICY IF EXISTS tenant_isolation ON projects;
CREATE POLICY tenant_isolation ON projects
	USING (org_id = (SELECT tenancy.current_org()))
	WITH CHECK (org_id = (SELECT tenancy.current_org()));
GRANT SELECT, INSERT, UPDATE, DELETE ON projects TO ` + demoRole + `;
TRUNCATE projects;
`

func newDemoCmd() *cobra.Command {
	var listen string
	cmd := &cobra.Command{
		Use:   "demo",
		Short: "Run pgtenant in front of a throwaway PostgreSQL with two demo tenants",
		Long: "Starts a throwaway PostgreSQL from the local server binaries (or uses the superuser DSN in " +
			"PGTENANT_DEMO_DSN), creates a demo schema with Row-Level Security and two tenants, runs " +
			"pgtenant in front of it and prints a psql command per tenant. Ctrl-C stops and cleans up.",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runDemo(cmd.Context(), cmd.OutOrStdout(), listen)
		},
	}
	cmd.Flags().StringVar(&listen, "listen", config.DefaultListen, "client listen address (a free port is used if this one is taken)")
	return cmd
}

func runDemo(ctx context.Context, out io.Writer, listen string) error {
	superDSN := os.Getenv("PGTENANT_DEMO_DSN")
	var cluster *pgcluster.Cluster
	if superDSN == "" {
		fmt.Fprintln(out, "Starting a throwaway PostgreSQL ...")
		var err error
		cluster, err = pgcluster.Start(ctx, pgcluster.Options{})
		if err != nil {
			return err
		}
		defer func() {
			fmt.Fprintln(out, "Stopping PostgreSQL and removing its data ...")
			_ = cluster.Stop()
		}()
		superDSN = cluster.SuperuserDSN("postgres")
	}
	password, contextSecret := randomHex(16), randomHex(32)
	appDSN, controlDSN, err := setupDemoDatabase(ctx, superDSN, password, contextSecret)
	if err != nil {
		return err
	}

	if ln, err := net.Listen("tcp", listen); err == nil {
		ln.Close()
	} else {
		listen = "127.0.0.1:0"
	}
	cfg := config.Default()
	cfg.Listen = listen
	cfg.Admin.Listen = "127.0.0.1:0"
	cfg.Backend.DSN = appDSN
	cfg.Auth.JWT.Secret = randomHex(32)
	cfg.Tenancy.ContextSecret = contextSecret
	cfg.Tenants.DSN = controlDSN
	cfg.Audit.DSN = controlDSN
	cfg.Audit.SpoolDir, err = os.MkdirTemp("", "pgtenant-demo-audit")
	if err != nil {
		return err
	}
	defer os.RemoveAll(cfg.Audit.SpoolDir)
	cfg.Log.Format = "console"
	cfg.Log.Level = "warn"
	if err := cfg.Validate(); err != nil {
		return err
	}

	started := make(chan listening, 1)
	done := make(chan error, 1)
	go func() { done <- run(ctx, cfg, newLogger(cfg.Log), started, nil) }()
	var addrs listening
	select {
	case addrs = <-started:
	case err := <-done:
		return err
	}
	host, port, _ := net.SplitHostPort(addrs.Client)

	fmt.Fprintf(out, "\npgtenant is listening on %s (metrics on http://%s/metrics).\n", addrs.Client, addrs.Admin)
	fmt.Fprintln(out, "Each tenant logs in with a JWT as its password and sees only its own rows.")
	fmt.Fprintln(out, "Paste one of these in another terminal:")
	for _, t := range demoTenants {
		tok, err := auth.Mint([]byte(cfg.Auth.JWT.Secret), auth.MintClaims{Org: t.org, Subject: "demo-user", TTL: 24 * time.Hour})
		if err != nil {
			return err
		}
		fmt.Fprintf(out, "\n  # tenant %s\n  PGPASSWORD='%s' psql \"host=%s port=%s dbname=%s user=%s sslmode=disable\" -c \"SELECT tenancy.current_org() AS tenant, * FROM projects\"\n",
			t.org, tok, host, port, demoDatabase, t.org)
	}
	admin, err := auth.Mint([]byte(cfg.Auth.JWT.Secret), auth.MintClaims{Subject: "demo-admin", Roles: []string{"platform_admin"}, TTL: 24 * time.Hour})
	if err != nil {
		return err
	}
	fmt.Fprintf(out, "\nDrop the -c ... part for an interactive session.\n\nThe admin UI is at http://%s/ui/ ; sign in with this platform admin token:\n\n  %s\n\n", addrs.Admin, admin)
	fmt.Fprintln(out, "Suspend a tenant there and its psql session ends; change its feature flags and")
	fmt.Fprintln(out, "SELECT current_setting('app.org_flags') shows them. Press Ctrl-C to stop.")
	return <-done
}

// setupDemoDatabase creates the demo database, the application role, the
// tenant rows and the tenants' registry entries, and returns the DSN pgtenant
// uses as that role and the superuser's DSN of the demo database (the control
// database).
func setupDemoDatabase(ctx context.Context, superDSN, password, contextSecret string) (appDSN, controlDSN string, err error) {
	conn, err := pgx.Connect(ctx, superDSN)
	if err != nil {
		return "", "", fmt.Errorf("demo: connect to PostgreSQL: %w", err)
	}
	defer conn.Close(ctx)
	var exists bool
	if err := conn.QueryRow(ctx, "SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)", demoDatabase).Scan(&exists); err != nil {
		return "", "", err
	}
	if !exists {
		if _, err := conn.Exec(ctx, "CREATE DATABASE "+demoDatabase); err != nil {
			return "", "", err
		}
	}
	if err := conn.QueryRow(ctx, "SELECT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = $1)", demoRole).Scan(&exists); err != nil {
		return "", "", err
	}
	verb := "CREATE"
	if exists {
		verb = "ALTER"
	}
	if _, err := conn.Exec(ctx, fmt.Sprintf("%s ROLE %s LOGIN NOSUPERUSER NOBYPASSRLS PASSWORD '%s'", verb, demoRole, password)); err != nil {
		return "", "", err
	}
	// As docs/rls.md recommends with SET LOCAL: keep its per-transaction
	// WARNING out of the server log.
	if _, err := conn.Exec(ctx, "ALTER ROLE "+demoRole+" SET log_min_messages = error"); err != nil {
		return "", "", err
	}

	cc := conn.Config().Copy()
	cc.Database = demoDatabase
	db, err := pgx.ConnectConfig(ctx, cc)
	if err != nil {
		return "", "", err
	}
	defer db.Close(ctx)
	key := policies.ContextKey{ID: config.DefaultContextKeyID, Secret: []byte(contextSecret)}
	if err := policies.Install(ctx, db, policies.InstallOptions{Keys: []policies.ContextKey{key}, AppRoles: []string{demoRole}}); err != nil {
		return "", "", fmt.Errorf("demo: install the tenancy schema: %w", err)
	}
	if _, err := db.Exec(ctx, demoSchema); err != nil {
		return "", "", fmt.Errorf("demo: create schema: %w", err)
	}
	for _, t := range demoTenants {
		for _, p := range t.projects {
			if _, err := db.Exec(ctx, "INSERT INTO projects (org_id, name) VALUES ($1, $2)", t.org, p); err != nil {
				return "", "", err
			}
		}
	}
	hostPort := net.JoinHostPort(cc.Host, fmt.Sprint(cc.Port))
	controlDSN = fmt.Sprintf("postgres://%s:%s@%s/%s?sslmode=disable", url.PathEscape(cc.User), url.PathEscape(cc.Password), hostPort, demoDatabase)
	if err := registerDemoTenants(ctx, controlDSN); err != nil {
		return "", "", err
	}
	return fmt.Sprintf("postgres://%s:%s@%s/%s?sslmode=disable", demoRole, password, hostPort, demoDatabase), controlDSN, nil
}

// registerDemoTenants puts the demo tenants in the registry, active.
func registerDemoTenants(ctx context.Context, controlDSN string) error {
	pool, err := pgxpool.New(ctx, controlDSN)
	if err != nil {
		return err
	}
	defer pool.Close()
	store := tenants.NewStore(pool)
	for _, t := range demoTenants {
		_, err := store.Create(ctx, "demo", tenants.NewOrg{ID: t.org, Name: t.org, Flags: map[string]any{"beta": t.org == "acme"}})
		if errors.Is(err, tenants.ErrExists) { // PGTENANT_DEMO_DSN, a second run
			_, err = store.SetStatus(ctx, "demo", t.org, tenants.StatusActive, "demo")
		}
		if err != nil && !errors.Is(err, tenants.ErrInvalidTransition) {
			return fmt.Errorf("demo: register tenant %s: %w", t.org, err)
		}
	}
	return nil
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}
