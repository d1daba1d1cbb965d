package main

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/pgtenant/pgtenant/audit"
	"github.com/pgtenant/pgtenant/internal/pgcluster"
	"github.com/pgtenant/pgtenant/test/testpg"
)

// startAuditDB starts a throwaway cluster whose "control" database holds the
// audit table with events recorded through an audit.Log, and returns its DSN.
func startAuditDB(t *testing.T, events []audit.Event) (dsn string, c *pgcluster.Cluster) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	c = startCluster(ctx, t, "control")
	if err := c.ExecIn(ctx, "control", `CREATE SCHEMA tenancy;
CREATE TABLE tenancy.audit_events (id bigserial primary key, at timestamptz not null, org text, subject text, token_id text, client_addr text, reason text not null, rule text, sqlstate text, fingerprint text, detail text, instance text);`); err != nil {
		t.Fatal(err)
	}
	dsn = c.SuperuserDSN("control")
	recordEvents(t, dsn, events)
	return dsn, c
}

// recordEvents writes events to the control database through an audit.Log.
func recordEvents(t *testing.T, dsn string, events []audit.Event) {
	t.Helper()
	l, err := audit.New(audit.Config{DSN: dsn, SpoolDir: t.TempDir()}, zerolog.Nop(), nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, ev := range events {
		l.Record(ev)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := l.Close(ctx); err != nil {
		t.Fatal(err)
	}
}

func TestAuditTailPrintsRecentEventsNewestFirstFilteredAndFollows(t *testing.T) {
	now := time.Now().Truncate(time.Second)
	dsn, _ := startAuditDB(t, []audit.Event{
		{Time: now.Add(-3 * time.Hour), Org: "acme", Subject: "alice", Reason: audit.ReasonBlockedStatement, Rule: "reserved_setting", SQLState: "42501", Fingerprint: "SET app.current_org = $1"},
		{Time: now.Add(-2 * time.Minute), Org: "globex", Subject: "hank", Reason: audit.ReasonAuthFailed, Rule: "expired", SQLState: "28P01"},
		{Time: now.Add(-time.Minute), Org: "acme", Subject: "bob\x1b[2J", Reason: audit.ReasonRLSViolation, SQLState: "42501", Fingerprint: "INSERT INTO items\n\tVALUES ($1)"},
	})

	t.Run("the table lists every event newest first", func(t *testing.T) {
		out, err := runCmd(t, "audit", "tail", "--dsn", dsn)
		if err != nil {
			t.Fatal(err)
		}
		lines := strings.Split(strings.TrimSpace(out), "\n")
		if len(lines) != 4 || !strings.HasPrefix(lines[0], "TIME") || !strings.Contains(lines[0], "FINGERPRINT") {
			t.Fatalf("want a header and 3 events:\n%s", out)
		}
		for i, want := range []string{"rls_violation", "auth_failed", "blocked_statement"} {
			if !strings.Contains(lines[i+1], want) {
				t.Fatalf("line %d is not the %s event:\n%s", i+1, want, out)
			}
		}
		if !strings.Contains(lines[1], "INSERT INTO items VALUES ($1)") {
			t.Fatalf("the fingerprint is not shown on one line:\n%s", out)
		}
		if strings.Contains(out, "\x1b") {
			t.Fatalf("a control character from an event reached the terminal: %q", out)
		}
	})

	t.Run("filters and JSON lines, DSN from the environment", func(t *testing.T) {
		t.Setenv(auditDSNEnv, dsn)
		out, err := runCmd(t, "audit", "tail", "--org", "acme", "--since", "1h", "--json")
		if err != nil {
			t.Fatal(err)
		}
		lines := strings.Split(strings.TrimSpace(out), "\n")
		if len(lines) != 1 {
			t.Fatalf("want the one acme event of the last hour:\n%s", out)
		}
		var ev audit.StoredEvent
		if err := json.Unmarshal([]byte(lines[0]), &ev); err != nil {
			t.Fatal(err)
		}
		if ev.ID == 0 || ev.Org != "acme" || ev.Reason != audit.ReasonRLSViolation || ev.Subject != "bob\x1b[2J" {
			t.Fatalf("decoded %+v", ev)
		}
		out, err = runCmd(t, "audit", "tail", "--reason", "auth_failed", "-n", "5")
		if err != nil {
			t.Fatal(err)
		}
		if strings.Count(out, "\n") != 2 || !strings.Contains(out, "hank") {
			t.Fatalf("want the header and the auth_failed event:\n%s", out)
		}
	})

	t.Run("follow prints new events as they are stored", func(t *testing.T) {
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		var out testpg.SyncBuffer
		cmd := newRootCmd()
		cmd.SetOut(&out)
		cmd.SetErr(io.Discard)
		cmd.SetArgs([]string{"audit", "tail", "--dsn", dsn, "--org", "acme", "--follow"})
		done := make(chan error, 1)
		go func() { done <- cmd.ExecuteContext(ctx) }()

		waitForOutput(t, &out, "rls_violation", done)
		recordEvents(t, dsn, []audit.Event{
			{Org: "globex", Reason: audit.ReasonTenantRefused, Detail: "other tenant"},
			{Org: "acme", Subject: "carol", Reason: audit.ReasonForgedContext, SQLState: "PT401"},
		})
		waitForOutput(t, &out, "forged_context", done)
		cancel()
		if err := <-done; err != nil {
			t.Fatalf("follow ended with %v", err)
		}
		lines := strings.Split(strings.TrimSpace(out.String()), "\n")
		if len(lines) != 4 {
			t.Fatalf("want a header, the 2 acme events and the new one:\n%s", out.String())
		}
		// Following reads oldest first, like tail -f.
		for i, want := range []string{"blocked_statement", "rls_violation", "forged_context"} {
			if !strings.Contains(lines[i+1], want) {
				t.Fatalf("line %d is not the %s event:\n%s", i+1, want, out.String())
			}
		}
		if strings.Contains(out.String(), "tenant_refused") {
			t.Fatalf("follow ignored --org:\n%s", out.String())
		}
	})
}

// waitForOutput waits for s in out, failing when the command ends first.
func waitForOutput(t *testing.T, out *testpg.SyncBuffer, s string, done <-chan error) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for !strings.Contains(out.String(), s) {
		select {
		case err := <-done:
			t.Fatalf("the command ended (%v) before printing %q:\n%s", err, s, out.String())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("%q not printed:\n%s", s, out.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestAuditTailRequiresADSN(t *testing.T) {
	t.Setenv(auditDSNEnv, "")
	_, err := runCmd(t, "audit", "tail")
	if err == nil || !strings.Contains(err.Error(), auditDSNEnv) {
		t.Fatalf("got %v, want an error naming --dsn and %s", err, auditDSNEnv)
	}
}

func TestTheTableFormatShowsEmptyFieldsAsADash(t *testing.T) {
	var b bytes.Buffer
	p := newEventPrinter(&b, false)
	if err := p.print([]audit.StoredEvent{{ID: 1, Event: audit.Event{Time: time.Unix(0, 0), Reason: audit.ReasonAuthFailed}}}); err != nil {
		t.Fatal(err)
	}
	fields := strings.Fields(strings.Split(b.String(), "\n")[1])
	if len(fields) != 7 || fields[1] != "-" || fields[6] != "-" {
		t.Fatalf("row %q", fields)
	}
}
