package main

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/pgtenant/pgtenant/internal/pgcluster"
)

func TestPoliciesInstallThenCheckAGoodAndABadRole(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	c, err := pgcluster.Start(ctx, pgcluster.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := c.Stop(); err != nil {
			t.Errorf("stopping PostgreSQL: %v", err)
		}
	})
	if err := c.CreateDatabase(ctx, "app"); err != nil {
		t.Fatal(err)
	}
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
		if !strings.Contains(out, "tenancy schema version 1 installed in database app; context keys: k1; granted to: good_app") ||
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
