package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net/url"
	"os"
	"os/exec"
	"strings"

	"github.com/pgtenant/pgtenant/internal/pgcluster"
)

// pgbenchTables are the tables `pgbench -i` creates.
const pgbenchTables = "pgbench_accounts, pgbench_branches, pgbench_tellers, pgbench_history"

// prepareDatabase creates the bench database and role, loads the pgbench data
// as the superuser, lets the role use it and loads it into shared buffers.
func prepareDatabase(ctx context.Context, c *pgcluster.Cluster, pgbench, password string, scale int) error {
	if err := c.CreateDatabase(ctx, benchDatabase); err != nil {
		return err
	}
	if err := c.CreateRole(ctx, benchRole, password); err != nil {
		return err
	}
	// As docs/rls.md recommends with tenancy.set_with = set_local: keep the
	// WARNING PostgreSQL raises for SET LOCAL in every implicit transaction
	// out of the server log. It changes nothing for the other targets.
	if err := c.Exec(ctx, "ALTER ROLE "+benchRole+" SET log_min_messages = error"); err != nil {
		return err
	}
	super := target{name: "superuser", host: c.Host, port: c.Port, user: c.Superuser, password: c.SuperuserPassword}
	cmd := exec.CommandContext(ctx, pgbench, "-i", "-q", "-s", fmt.Sprint(scale), benchDatabase)
	cmd.Env = super.env()
	detach(cmd)
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("pgbench -i: %w\n%s", err, out)
	}
	if err := c.ExecIn(ctx, benchDatabase, "GRANT SELECT, INSERT, UPDATE ON "+pgbenchTables+" TO "+benchRole); err != nil {
		return err
	}
	// The first target measured must not pay for reading the data from disk.
	err := c.ExecIn(ctx, benchDatabase, `CREATE EXTENSION IF NOT EXISTS pg_prewarm;
		SELECT pg_prewarm(c) FROM unnest(ARRAY['pgbench_accounts', 'pgbench_accounts_pkey',
			'pgbench_branches', 'pgbench_tellers']::regclass[]) AS c`)
	if err != nil {
		fmt.Fprintf(os.Stderr, "bench: warning: could not prewarm the tables (the first runs may read from disk): %v\n", err)
	}
	return nil
}

// target is one way to reach the bench database.
type target struct {
	name     string
	host     string
	port     int
	user     string
	password string
	// via is the proxy the target goes through; nil for direct connections.
	via *child
}

// dsn is a URL for pgx that connects to the bench database through t.
func (t target) dsn() string {
	u := url.URL{
		Scheme:   "postgres",
		User:     url.UserPassword(t.user, t.password),
		Host:     hostPort(t.host, t.port),
		Path:     "/" + benchDatabase,
		RawQuery: "sslmode=disable",
	}
	return u.String()
}

// env is the environment for a libpq program (pgbench) connecting to t: the
// bench's own environment without any PG* variable that could redirect it.
func (t target) env() []string {
	env := cleanEnv()
	return append(env,
		"PGHOST="+t.host,
		fmt.Sprint("PGPORT=", t.port),
		"PGUSER="+t.user,
		"PGPASSWORD="+t.password,
		"PGDATABASE="+benchDatabase,
		"PGSSLMODE=disable",
		"PGCONNECT_TIMEOUT=10",
	)
}

// cleanEnv returns the process environment without PG* variables: neither
// libpq's (PGSERVICE, PGOPTIONS ...) nor pgtenant's (PGTENANT_*) settings of
// whoever runs the bench may change what is measured.
func cleanEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "PG") || strings.HasPrefix(kv, "PGTENANT_CPUPROFILE=") {
			env = append(env, kv)
		}
	}
	return env
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}
