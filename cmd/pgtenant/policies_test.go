package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/pgtenant/pgtenant/internal/pgcluster"
	"github.com/pgtenant/pgtenant/policies"
)

func TestPoliciesInstallThenCheckAGoodAndABadRole(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	c := startAppCluster(ctx, t)
	for _, role := range []string{"good_app", "bad_app"} {
		if err := c.CreateRole(ctx, role, "pw"); err != nil {
			t.Fatal(err)
		}
	}
	if err := c.ExecIn(ctx, "app", "REVOKE TEMPORARY ON DATABASE app FROM PUBLIC; ALTER ROLE bad_app BYPASSRLS"); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	secret := "policies-cmd-test-secret-0123456789abcdef"
	file := filepath.Join(dir, "k1")
	if err := os.WriteFile(file, []byte(secret+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv(policiesDSNEnv, c.SuperuserDSN("app"))

	for range 2 { // install is re-runnable
		out, err := runCmd(t, "policies", "install", "--app-role", "good_app", "--key-id", "k1", "--key-file", file)
		if err != nil {
			t.Fatalf("install: %v\n%s", err, out)
		}
		if !strings.Contains(out, "tenancy schema version "+fmt.Sprint(policies.SchemaVersion)+" installed in database app; context keys: k1; granted to: good_app") ||
			!strings.Contains(out, "good_app: no findings") {
			t.Fatalf("install output:\n%s", out)
		}
		if strings.Contains(out, secret) || strings.Contains(out, c.SuperuserPassword) {
			t.Fatalf("install printed a secret:\n%s", out)
		}
	}

	if out, err := runCmd(t, "policies", "check", "--app-role", "good_app"); err != nil || !strings.Contains(out, "good_app: no findings") {
		t.Fatalf("check of the good role: %v\n%s", err, out)
	}
	out, err := runCmd(t, "policies", "check", "--dsn", c.SuperuserDSN("app"), "--app-role", "good_app", "--app-role", "bad_app")
	if err == nil || !strings.Contains(err.Error(), "hardening error") {
		t.Fatalf("check of a BYPASSRLS role: err = %v, want a failure", err)
	}
	for _, want := range []string{"bad_app: error [bypassrls]", "ALTER ROLE bad_app NOBYPASSRLS;", "bad_app: error [tenancy_privileges]"} {
		if !strings.Contains(out, want) {
			t.Errorf("check output lacks %q:\n%s", want, out)
		}
	}
}

func TestPoliciesCommandsSayWhatIsMissing(t *testing.T) {
	t.Setenv(policiesDSNEnv, "")
	dir := t.TempDir()
	short := filepath.Join(dir, "short")
	if err := os.WriteFile(short, []byte("too-short-secret\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	long := filepath.Join(dir, "long")
	if err := os.WriteFile(long, []byte(strings.Repeat("s", 40)), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"policies", "check", "--app-role", "app"}, policiesDSNEnv},
		{[]string{"policies", "check", "--dsn", "postgres://x@127.0.0.1:1/db"}, "--app-role is required"},
		{[]string{"policies", "install", "--app-role", "app"}, "no context key: give --key-id and --key-file"},
		{[]string{"policies", "install", "--key-id", "a", "--key-id", "b", "--key-file", long}, "2 --key-id but 1 --key-file"},
		{[]string{"policies", "install", "--key-id", "a", "--key-file", short}, "at least 32 bytes"},
		{[]string{"policies", "install", "--key-id", "a.b", "--key-file", long}, "A-Z a-z 0-9 _ -"},
		{[]string{"policies", "install", "--key-id", "a", "--key-file", filepath.Join(dir, "missing")}, "--key-file for context key a"},
	} {
		_, err := runCmd(t, tc.args...)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: err = %v, want one containing %q", strings.Join(tc.args, " "), err, tc.want)
		}
		if err != nil && strings.Contains(err.Error(), "too-short-secret") {
			t.Errorf("%s: the error shows the secret: %v", strings.Join(tc.args, " "), err)
		}
	}
}

// startAppCluster starts a throwaway PostgreSQL, stopped when the test
// ends, with a database named app.
func startAppCluster(ctx context.Context, t *testing.T) *pgcluster.Cluster {
	return startCluster(ctx, t, "app")
}

// startCluster starts a throwaway PostgreSQL, stopped when the test ends,
// with the database named.
func startCluster(ctx context.Context, t *testing.T, database string) *pgcluster.Cluster {
	t.Helper()
	c, err := pgcluster.Start(ctx, pgcluster.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := c.Stop(); err != nil {
			t.Errorf("stopping PostgreSQL: %v", err)
		}
	})
	if err := c.CreateDatabase(ctx, database); err != nil {
		t.Fatal(err)
	}
	return c
}

// installTenancy starts a cluster with the database app and the role
// shop_app, writes a config file with one context key, and runs policies
// install with it (PGTENANT_POLICIES_DSN points at app). It returns the
// cluster and the config file.
func installTenancy(ctx context.Context, t *testing.T, secret string) (*pgcluster.Cluster, string) {
	t.Helper()
	c := startAppCluster(ctx, t)
	if err := c.CreateRole(ctx, "shop_app", "pw"); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	keyFile := filepath.Join(dir, "k1")
	if err := os.WriteFile(keyFile, []byte(secret), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg := filepath.Join(dir, "pgtenant.yaml")
	if err := os.WriteFile(cfg, []byte("tenancy:\n  context_keys:\n    - id: k1\n      secret_file: "+keyFile+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv(policiesDSNEnv, c.SuperuserDSN("app"))
	if out, err := runCmd(t, "policies", "install", "--config", cfg, "--app-role", "shop_app"); err != nil {
		t.Fatalf("install: %v\n%s", err, out)
	}
	return c, cfg
}

func TestPoliciesListApplyDryRunAndRemove(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	c := startAppCluster(ctx, t)
	if err := c.CreateRole(ctx, "shop_app", "pw"); err != nil {
		t.Fatal(err)
	}
	err := c.ExecIn(ctx, "app", `
		CREATE TABLE customers (org_id text NOT NULL, id bigint PRIMARY KEY, email text UNIQUE);
		CREATE TABLE notes (id int PRIMARY KEY, body text);
		CREATE TABLE countries (code text PRIMARY KEY);
		INSERT INTO customers VALUES ('acme', 1, 'a@example.com');
		GRANT SELECT, INSERT, UPDATE, DELETE, TRUNCATE ON ALL TABLES IN SCHEMA public TO shop_app`)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	keyFile := filepath.Join(dir, "k1")
	if err := os.WriteFile(keyFile, []byte("policies-cmd-test-secret-0123456789abcdef"), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg := filepath.Join(dir, "pgtenant.yaml")
	if err := os.WriteFile(cfg, []byte("policies:\n  tables:\n    include: [public.*]\n    exclude: [public.countries]\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv(policiesDSNEnv, c.SuperuserDSN("app"))
	if out, err := runCmd(t, "policies", "install", "--app-role", "shop_app", "--key-id", "k1", "--key-file", keyFile); err != nil {
		t.Fatalf("install: %v\n%s", err, out)
	}

	out, err := runCmd(t, "policies", "list", "--config", cfg, "--json")
	if err != nil {
		t.Fatalf("list: %v\n%s", err, out)
	}
	var tables []struct {
		Schema, Name, Reason string
		Tenant               bool
	}
	if err := json.Unmarshal([]byte(out), &tables); err != nil {
		t.Fatalf("list --json: %v\n%s", err, out)
	}
	got := map[string]string{}
	for _, tb := range tables {
		got[tb.Name] = fmt.Sprint(tb.Tenant, " ", tb.Reason)
	}
	if got["customers"] != "true included by policies.tables.include public.*" ||
		got["countries"] != "false excluded by policies.tables.exclude public.countries" {
		t.Errorf("list: %v", got)
	}
	if out, err := runCmd(t, "policies", "list"); err != nil || !regexp.MustCompile(`(?m)^public\.notes +no +no org_id column`).MatchString(out) {
		t.Errorf("list without config (discovery): %v\n%s", err, out)
	}

	policyCount := func() (n int) {
		t.Helper()
		conn, err := pgx.Connect(ctx, c.SuperuserDSN("app"))
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close(ctx)
		if err := conn.QueryRow(ctx, "SELECT count(*) FROM pg_policy").Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n
	}
	out, err = runCmd(t, "policies", "apply", "--config", cfg, "--app-role", "shop_app", "--dry-run")
	if err != nil {
		t.Fatalf("apply --dry-run: %v\n%s", err, out)
	}
	for _, want := range []string{
		"ALTER TABLE public.notes ADD COLUMN org_id text NOT NULL DEFAULT tenancy.current_org();",
		"CREATE POLICY pgtenant_select ON public.customers AS PERMISSIVE FOR SELECT TO PUBLIC USING (org_id = (SELECT tenancy.current_org()));",
		"REVOKE TRUNCATE, REFERENCES, TRIGGER ON public.customers FROM PUBLIC, shop_app;",
		"-- rewrite offered",
		"ADD CONSTRAINT customers_email_key UNIQUE (org_id, email);",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("dry run lacks %s\n%s", want, out)
		}
	}
	if n := policyCount(); n != 0 {
		t.Fatalf("--dry-run created %d policies", n)
	}
	if out, err := runCmd(t, "policies", "apply", "--config", cfg, "--app-role", "shop_app", "--concurrently"); err != nil || policyCount() != 8 {
		t.Fatalf("apply: %v\n%s", err, out)
	}
	if out, err := runCmd(t, "policies", "apply", "--config", cfg, "--app-role", "shop_app"); err != nil || !strings.Contains(out, "nothing to do") {
		t.Fatalf("second apply: %v\n%s", err, out)
	}
	out, err = runCmd(t, "policies", "apply", "--config", cfg, "--app-role", "shop_app", "--json")
	var applied struct {
		Applied    bool              `json:"applied"`
		Tables     []json.RawMessage `json:"tables"`
		Statements []json.RawMessage `json:"statements"`
	}
	if err != nil || json.Unmarshal([]byte(out), &applied) != nil || !applied.Applied || len(applied.Tables) == 0 || len(applied.Statements) != 0 {
		t.Fatalf("apply --json of a database in place: %v\n%s", err, out)
	}
	if out, err := runCmd(t, "policies", "remove", "public.notes"); err != nil || !strings.Contains(out, "from public.notes") || policyCount() != 4 {
		t.Fatalf("remove: %v\n%s", err, out)
	}
	if _, err := runCmd(t, "policies", "apply", "--config", cfg); err == nil || !strings.Contains(err.Error(), "--app-role is required") {
		t.Errorf("apply without --app-role: %v", err)
	}
}
