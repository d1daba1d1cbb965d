package e2e

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// psqlCmd runs psql as org through e, reading commands from stdin.
func psqlCmd(t *testing.T, ctx context.Context, e *env, org string) *exec.Cmd {
	t.Helper()
	psql := lookRuntime(t, "psql (Debian: postgresql-client)", nil, "psql")
	host, port, err := net.SplitHostPort(e.addr)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.CommandContext(ctx, psql, "-X", "-q", "-A", "-t", "-v", "VERBOSITY=verbose",
		"-h", host, "-p", port, "-U", "app", "-d", database)
	cmd.Env = append(clientEnv(t, e), "PGPASSWORD="+token(t, org), "PGSSLMODE=disable", "PGAPPNAME=compat-psql")
	cmd.WaitDelay = 5 * time.Second
	return cmd
}

func TestCompatPsqlCopiesWithBackslashCopyAndCancelsOnInterrupt(t *testing.T) {
	t.Parallel()
	e := startProxy(t, nil)
	for _, org := range compatOrgs {
		t.Run(org, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), clientTimeout)
			defer cancel()
			marker := "compat-psql-" + org
			in := filepath.Join(t.TempDir(), "rows.tsv")
			var rows strings.Builder
			for i := 0; i < 500; i++ {
				fmt.Fprintf(&rows, "%d\t%s\n", i, marker)
			}
			if err := os.WriteFile(in, []byte(rows.String()), 0o644); err != nil {
				t.Fatal(err)
			}
			script := fmt.Sprintf(`\set ON_ERROR_STOP 1
SELECT 'setting:' || current_setting('app.current_org');
\copy (SELECT org_id, name FROM items ORDER BY id) TO STDOUT
BEGIN;
\copy app_owned (id, note) FROM '%[1]s'
SELECT 'copied:' || count(*) FROM app_owned WHERE note = '%[2]s';
INSERT INTO items (name) VALUES ('%[2]s') RETURNING 'inserted:' || org_id;
SELECT 'in-tx:' || count(*) FROM items;
ROLLBACK;
SELECT 'after:' || count(*) FROM app_owned WHERE note = '%[2]s';
SELECT 'after:' || count(*) FROM items WHERE name = '%[2]s';
`, in, marker)
			cmd := psqlCmd(t, ctx, e, org)
			cmd.Stdin = strings.NewReader(script)
			out, err := cmd.CombinedOutput()
			if err != nil {
				t.Fatalf("psql: %v\n%s", err, out)
			}
			var want strings.Builder
			fmt.Fprintf(&want, "setting:%s\n", org)
			for _, name := range tenantRows[org] {
				fmt.Fprintf(&want, "%s\t%s\n", org, name)
			}
			fmt.Fprintf(&want, "copied:500\ninserted:%s\nin-tx:%d\nafter:0\nafter:0\n", org, len(tenantRows[org])+1)
			if string(out) != want.String() {
				t.Fatalf("psql printed\n%s\nwant\n%s", out, want.String())
			}
		})
	}
	for _, org := range compatOrgs {
		t.Run("cancel as "+org, func(t *testing.T) { psqlCancel(t, e, org) })
	}
}

// psqlCancel interrupts psql during pg_sleep(30), as a user at the terminal
// would: psql sends a CancelRequest with the key pgtenant issued and the
// query fails with 57014. (A script interrupted so stops: psql then exits
// with status 3.)
func psqlCancel(t *testing.T, e *env, org string) {
	ctx, cancel := context.WithTimeout(context.Background(), clientTimeout)
	defer cancel()
	mark := "/* compat-psql-cancel-" + org + " */"
	cmd := psqlCmd(t, ctx, e, org)
	cmd.Stdin = strings.NewReader("SELECT pg_sleep(30) " + mark + ";\nSELECT 'not reached';\n")
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()

	su := superuser(t)
	eventually(t, "psql's pg_sleep runs", func() bool {
		var n int
		err := su.QueryRow(ctx, "SELECT count(*) FROM pg_stat_activity WHERE state = 'active' AND query LIKE '%' || $1 || '%' AND pid <> pg_backend_pid()", mark).Scan(&n)
		return err == nil && n == 1
	})
	time.Sleep(300 * time.Millisecond)
	start := time.Now()
	if err := cmd.Process.Signal(syscall.SIGINT); err != nil {
		t.Fatal(err)
	}
	err := <-done
	took := time.Since(start)
	var exit *exec.ExitError
	if !errors.As(err, &exit) || exit.ExitCode() != 3 {
		t.Errorf("psql exited with %v, want status 3 (a script stopped by Ctrl-C)", err)
	}
	got := out.String()
	if !strings.HasPrefix(got, "Cancel request sent\nERROR:  57014: canceling statement due to user request\n") ||
		strings.Contains(got, "not reached") {
		t.Errorf("psql printed %q, want the 57014 of a canceled statement and nothing after it", got)
	}
	if took > 10*time.Second {
		t.Errorf("the cancel took %s", took)
	}
}
