package main

import (
	"context"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/pgtenant/pgtenant/config"
	"github.com/pgtenant/pgtenant/test/deploy"
	"github.com/pgtenant/pgtenant/test/testpg"
)

// scrape reads a running pgtenant's /metrics.
func scrape(t *testing.T, a listening) map[string]*dto.MetricFamily {
	t.Helper()
	resp, err := http.Get("http://" + a.Admin + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	parser := expfmt.NewTextParser(model.UTF8Validation)
	families, err := parser.TextToMetricFamilies(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return families
}

// value returns the value of the series of name with the labels given as
// name, value pairs (all of them for a histogram: its count), summed over
// the series that match.
func value(families map[string]*dto.MetricFamily, name string, labels ...string) float64 {
	f := families[name]
	if f == nil {
		return -1
	}
	var sum float64
	for _, m := range f.Metric {
		match := true
		for i := 0; i < len(labels); i += 2 {
			found := false
			for _, l := range m.Label {
				if l.GetName() == labels[i] && l.GetValue() == labels[i+1] {
					found = true
				}
			}
			match = match && found
		}
		if !match {
			continue
		}
		switch {
		case m.Counter != nil:
			sum += m.Counter.GetValue()
		case m.Gauge != nil:
			sum += m.Gauge.GetValue()
		case m.Histogram != nil:
			sum += float64(m.Histogram.GetSampleCount())
		}
	}
	return sum
}

func TestMetricsCountWhatHappensAndCoverTheDashboardAndTheAlerts(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	e := startRegistryEnv(ctx, t)
	e.cli("create", "acme", "--pool", `{"size":1,"wait_timeout":"30s"}`)
	e.cfg.Admin.Pprof = true
	a := e.serve(ctx)
	conn := e.connect(ctx, a, "acme")
	if status := httpStatus(t, "http://"+a.Admin+"/debug/pprof/cmdline"); status != http.StatusOK {
		t.Errorf("pprof with admin.pprof on: %d", status)
	}

	// Every query is one observation of the overhead and of the backend's
	// time, and counts once.
	before := scrape(t, a)
	const n = 25
	for range n {
		if _, err := conn.Exec(ctx, "SELECT 1", pgx.QueryExecModeSimpleProtocol); err != nil {
			t.Fatal(err)
		}
	}
	after := scrape(t, a)
	for _, name := range []string{"pgtenant_query_overhead_seconds", "pgtenant_backend_query_duration_seconds"} {
		if d := value(after, name) - value(before, name); d != n {
			t.Errorf("%s: %v new observations for %d queries", name, d, n)
		}
	}
	if d := value(after, "pgtenant_queries_total", "tenant", "acme") - value(before, "pgtenant_queries_total", "tenant", "acme"); d != n {
		t.Errorf("pgtenant_queries_total grew by %v for %d queries", d, n)
	}
	if d := value(after, "pgtenant_transactions_total", "tenant", "acme") - value(before, "pgtenant_transactions_total", "tenant", "acme"); d != n {
		t.Errorf("pgtenant_transactions_total grew by %v for %d transactions", d, n)
	}

	// One blocked statement, one count.
	blocked := func() float64 {
		return value(scrape(t, a), "pgtenant_cross_tenant_blocked_total", "reason", "blocked_statement")
	}
	b0 := blocked()
	if _, err := conn.Exec(ctx, "SET app.current_org = 'globex'"); testpg.SQLState(err) != "42501" {
		t.Fatalf("a blocked statement: %v", err)
	}
	if d := blocked() - b0; d != 1 {
		t.Errorf("the blocked counter grew by %v for one blocked statement", d)
	}

	// A transaction holding acme's only connection makes the next one
	// wait: it shows as a waiting client, then in the wait histogram.
	tx, err := conn.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tx.Exec(ctx, "SELECT 1"); err != nil {
		t.Fatal(err)
	}
	other := e.connect(ctx, a, "acme")
	waited := make(chan error, 1)
	go func() { _, err := other.Exec(ctx, "SELECT 1"); waited <- err }()
	within(t, 10*time.Second, "a waiting client in the metrics", func() bool {
		m := scrape(t, a)
		return value(m, "pgtenant_client_connections", "state", "waiting") == 1 &&
			value(m, "pgtenant_pool_waiting_clients", "tenant", "acme") == 1
	})
	time.Sleep(20 * time.Millisecond)
	if err := tx.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	if err := <-waited; err != nil {
		t.Fatal(err)
	}
	// A failed login counts by its reason.
	if _, err := connectAs(ctx, a, "not-a-token"); testpg.SQLState(err) != "28P01" {
		t.Fatalf("a login with a malformed token: %v", err)
	}
	m := scrape(t, a)
	if got := value(m, "pgtenant_auth_failures_total", "reason", "malformed"); got != 1 {
		t.Errorf("pgtenant_auth_failures_total{reason=\"malformed\"} = %v, want 1", got)
	}
	var slow uint64
	for _, s := range m["pgtenant_pool_wait_duration_seconds"].Metric {
		for _, bk := range s.Histogram.Bucket {
			if bk.GetUpperBound() == 0.01 {
				slow += s.Histogram.GetSampleCount() - bk.GetCumulativeCount()
			}
		}
	}
	if slow < 1 {
		t.Errorf("the wait of at least 20ms is not in the wait histogram")
	}
	for name, want := range map[string]float64{
		"pgtenant_pool_size":                    1,
		"pgtenant_tenants":                      1,
		"pgtenant_backend_up":                   1,
		"pgtenant_build_info":                   1,
		"pgtenant_registry_notify_errors_total": 0,
	} {
		if got := value(m, name); got != want {
			t.Errorf("%s = %v, want %v", name, got, want)
		}
	}

	// Every metric the dashboard and the alert rules query is exported.
	used, err := deploy.UsedMetricNames(filepath.Join("..", ".."))
	if err != nil {
		t.Fatal(err)
	}
	for name := range used {
		if m[name] == nil {
			t.Errorf("the dashboard or the alert rules use %s, which pgtenant does not export", name)
		}
	}
}

func TestSIGHUPResizesPoolsAndSIGTERMLetsTheTransactionCommit(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	e := startRegistryEnv(ctx, t)
	e.cli("create", "acme")

	// The file a SIGHUP reloads.
	file := filepath.Join(t.TempDir(), "pgtenant.yaml")
	write := func(size int) {
		body := "pool:\n  size: " + strconv.Itoa(size) + "\n"
		if err := os.WriteFile(file, []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	write(2)
	reload := func() (config.Config, error) {
		next, err := config.Read(file, nil, nil)
		if err != nil {
			return next, err
		}
		c := e.cfg
		c.Pool = next.Pool
		return c, c.Validate()
	}
	runCtx, stop := context.WithCancel(ctx)
	started, done := make(chan listening, 1), make(chan error, 1)
	go func() { done <- run(runCtx, e.cfg, newLogger(e.cfg.Log), started, reload) }()
	var a listening
	select {
	case a = <-started:
	case err := <-done:
		t.Fatal(err)
	}
	conn := e.connect(ctx, a, "acme")
	if _, err := conn.Exec(ctx, "SELECT 1"); err != nil {
		t.Fatal(err)
	}
	if status := httpStatus(t, "http://"+a.Admin+"/debug/pprof/cmdline"); status != http.StatusNotFound {
		t.Errorf("pprof with admin.pprof off: %d, want 404", status)
	}
	write(5)
	if err := syscall.Kill(os.Getpid(), syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	within(t, 10*time.Second, "the pool resized by SIGHUP", func() bool {
		return value(scrape(t, a), "pgtenant_pool_size", "tenant", "acme") == 5
	})
	if err := conn.Ping(ctx); err != nil {
		t.Fatalf("the session did not survive the reload: %v", err)
	}

	// SIGTERM (ctx ends, as main's signal.NotifyContext does) during an
	// open transaction: it may still commit; then pgtenant exits cleanly.
	tx, err := conn.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tx.Exec(ctx, "INSERT INTO items (name) VALUES ('during shutdown')"); err != nil {
		t.Fatal(err)
	}
	stop()
	time.Sleep(100 * time.Millisecond)
	if _, err := connectAs(ctx, a, clientToken(t, "acme", "alice")); err == nil {
		t.Error("a new client was accepted during shutdown")
	}
	if err := tx.Commit(ctx); err != nil {
		t.Fatalf("commit during shutdown: %v", err)
	}
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("pgtenant exited with %v", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("pgtenant did not exit after its last transaction")
	}
	var n int
	if err := e.superuser(ctx).QueryRow(ctx, "SELECT count(*) FROM items WHERE name = 'during shutdown'").Scan(&n); err != nil || n != 1 {
		t.Fatalf("the transaction committed during shutdown is missing: %d rows, %v", n, err)
	}
}

// With plans.sample_slow, a slow tenant statement that scans a tenant table
// without a tenant-leading index is explained in the background and counted.
func TestSlowStatementsAreExplainedAndSeqScansCounted(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	e := startRegistryEnv(ctx, t)
	if _, err := e.superuser(ctx).Exec(ctx, `INSERT INTO items (org_id, name)
		SELECT CASE WHEN i % 2 = 0 THEN 'acme' ELSE 'globex' END, 'n' || i FROM generate_series(1, 20000) i;
		ANALYZE items`); err != nil {
		t.Fatal(err)
	}
	e.cli("create", "acme")
	e.cfg.Plans.SampleSlow, e.cfg.Plans.SlowThreshold = true, time.Nanosecond
	a := e.serve(ctx)
	conn := e.connect(ctx, a, "acme")
	if _, err := conn.Exec(ctx, "SELECT count(*) FROM items WHERE name = 'n42'"); err != nil {
		t.Fatal(err)
	}
	within(t, 30*time.Second, "the sampled seq scan in the metrics", func() bool {
		return value(scrape(t, a), "pgtenant_tenant_seqscans_total", "table", "public.items") >= 1
	})
}

func httpStatus(t *testing.T, url string) int {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode
}
