package main

import (
	"bytes"
	"context"
	"io"
	"net"
	"net/http"
	"os"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"go.uber.org/goleak"

	"github.com/pgtenant/pgtenant/auth"
	"github.com/pgtenant/pgtenant/internal/pgcluster"
	"github.com/pgtenant/pgtenant/test/testpg"
)

func TestMain(m *testing.M) {
	if _, err := pgcluster.BinDir(); err != nil {
		// The demo test needs PostgreSQL; make test installs it.
		os.Stderr.WriteString(err.Error() + "\n")
		os.Exit(1)
	}
	goleak.VerifyTestMain(m)
}

const testSecret = "cmd-test-secret-0123456789abcdef-0123456789"

func runCmd(t *testing.T, args ...string) (string, error) {
	t.Helper()
	cmd := newRootCmd()
	var out bytes.Buffer
	cmd.SetOut(&out)
	cmd.SetErr(io.Discard)
	cmd.SetArgs(args)
	err := cmd.ExecuteContext(context.Background())
	return out.String(), err
}

func TestTokenPrintsAVerifiableTokenAlone(t *testing.T) {
	t.Setenv("PGTENANT_AUTH_JWT_SECRET", testSecret)
	out, err := runCmd(t, "token", "--org", "acme", "--sub", "alice", "--ttl", "10m")
	if err != nil {
		t.Fatal(err)
	}
	tok := strings.TrimSuffix(out, "\n")
	if strings.ContainsAny(tok, " \n") {
		t.Fatalf("output is not the token alone: %q", out)
	}
	v, err := auth.NewVerifier(auth.JWTConfig{Secret: testSecret}, nil)
	if err != nil {
		t.Fatal(err)
	}
	id, err := v.Verify(tok)
	if err != nil {
		t.Fatal(err)
	}
	if id.Org != "acme" || id.Subject != "alice" || time.Until(id.ExpiresAt) > 10*time.Minute {
		t.Fatalf("token claims: %+v", id)
	}
}

func TestTokenRefusesAnOrgThePatternRejects(t *testing.T) {
	t.Setenv("PGTENANT_AUTH_JWT_SECRET", testSecret)
	if _, err := runCmd(t, "token", "--org", "acme'; --"); err == nil {
		t.Fatal("minted a token for an invalid org")
	}
	if _, err := runCmd(t, "token"); err == nil || !strings.Contains(err.Error(), "--org") {
		t.Fatalf("missing --org: %v", err)
	}
}

func TestServeRefusesAnIncompleteConfigNamingTheKey(t *testing.T) {
	t.Setenv("PGTENANT_AUTH_JWT_SECRET", testSecret)
	_, err := runCmd(t, "serve")
	if err == nil || !strings.Contains(err.Error(), "backend.dsn") {
		t.Fatalf("got %v, want an error naming backend.dsn", err)
	}
}

var psqlLine = regexp.MustCompile(`PGPASSWORD='([^']+)' psql "host=(\S+) port=(\d+) dbname=(\S+) user=(\S+) sslmode=disable"`)

func TestDemoServesEachTenantOnlyItsRowsAndCleansUp(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var out testpg.SyncBuffer
	done := make(chan error, 1)
	go func() { done <- runDemo(ctx, &out, "127.0.0.1:0") }()

	deadline := time.Now().Add(90 * time.Second)
	for !strings.Contains(out.String(), "Press Ctrl-C") {
		select {
		case err := <-done:
			t.Fatalf("demo ended early: %v\n%s", err, out.String())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("demo did not start:\n%s", out.String())
		}
		time.Sleep(100 * time.Millisecond)
	}
	lines := psqlLine.FindAllStringSubmatch(out.String(), -1)
	if len(lines) != len(demoTenants) {
		t.Fatalf("want a psql command per tenant, got:\n%s", out.String())
	}
	var addr string
	for i, m := range lines {
		org := demoTenants[i].org
		addr = net.JoinHostPort(m[2], m[3])
		conn, err := pgx.Connect(ctx, "postgres://"+m[5]+":"+m[1]+"@"+addr+"/"+m[4]+"?sslmode=disable")
		if err != nil {
			t.Fatal(err)
		}
		rows, err := conn.Query(ctx, "SELECT org_id FROM projects", pgx.QueryExecModeSimpleProtocol)
		if err != nil {
			t.Fatal(err)
		}
		orgs, err := pgx.CollectRows(rows, pgx.RowTo[string])
		if err != nil {
			t.Fatal(err)
		}
		if len(orgs) != len(demoTenants[i].projects) {
			t.Errorf("%s sees %d rows, want %d", org, len(orgs), len(demoTenants[i].projects))
		}
		for _, o := range orgs {
			if o != org {
				t.Errorf("%s sees a row of %s", org, o)
			}
		}
		conn.Close(ctx)
	}

	// The admin listener serves the metrics.
	if m := regexp.MustCompile(`metrics on (http://\S+/metrics)`).FindStringSubmatch(out.String()); m == nil {
		t.Fatalf("no metrics URL printed:\n%s", out.String())
	} else if resp, err := http.Get(m[1]); err != nil {
		t.Fatal(err)
	} else {
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if !strings.Contains(string(body), `pgtenant_cancel_requests_total{result="rejected"} 0`) {
			t.Fatalf("metrics lack pgtenant_cancel_requests_total:\n%s", body)
		}
	}

	// The admin UI is served, and the printed token signs in to its API.
	m := regexp.MustCompile(`admin UI is at (http://\S+)/ui/ ; sign in with this platform admin token:\s+(\S+)`).FindStringSubmatch(out.String())
	if m == nil {
		t.Fatalf("no admin UI URL and token printed:\n%s", out.String())
	}
	req, _ := http.NewRequest("GET", m[1]+"/api/v1/orgs", nil)
	req.Header.Set("Authorization", "Bearer "+m[2])
	if resp, err := http.DefaultClient.Do(req); err != nil {
		t.Fatal(err)
	} else {
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 || !strings.Contains(string(body), `"acme"`) || !strings.Contains(string(body), `"globex"`) {
			t.Fatalf("GET /api/v1/orgs with the demo's admin token: %d %s", resp.StatusCode, body)
		}
	}

	cancel() // Ctrl-C
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("demo: %v", err)
		}
	case <-time.After(60 * time.Second):
		t.Fatal("demo did not stop")
	}
	if c, err := net.DialTimeout("tcp", addr, time.Second); err == nil {
		c.Close()
		t.Fatal("the proxy still listens after the demo stopped")
	}
	if !strings.Contains(out.String(), "removing its data") {
		t.Fatalf("the throwaway PostgreSQL was not stopped:\n%s", out.String())
	}
}
