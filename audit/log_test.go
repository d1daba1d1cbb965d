package audit

import (
	"context"
	"encoding/json"
	"errors"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"
)

func TestEventsReachTheTableInBatchesOfBatchSize(t *testing.T) {
	t.Parallel()
	db := createdControlDB(t)
	// No timed flush: only full batches are written until Close.
	l := startLog(t, Config{DSN: db.dsn, BatchSize: 500, FlushInterval: time.Hour, Instance: "proxy-1"})
	for _, ev := range numbered(1200) {
		l.Record(ev)
	}
	eventually(t, 10*time.Second, func() bool { return db.rows() == 1000 },
		func() string { return "rows: " + itoa(db.rows()) })
	// Rows inserted by one statement share their inserting transaction.
	if n := db.queryInt("SELECT count(DISTINCT xmin::text) FROM tenancy.audit_events"); n != 2 {
		t.Fatalf("1000 events were written in %d transactions, want 2 batches", n)
	}
	l.close(t)
	if n := db.rows(); n != 1200 {
		t.Fatalf("after Close the table has %d rows, want 1200", n)
	}
	l.wantMetric(t, "pgtenant_audit_events_total", "sink", "table", 1200)
	l.wantMetric(t, "pgtenant_cross_tenant_blocked_total", "reason", ReasonBlockedStatement, 1200)
	l.wantMetric(t, "pgtenant_audit_events_total", "sink", "spool", 0)
}

func TestAnEventIsStoredWithEveryFieldAndEmptyOnesAsNull(t *testing.T) {
	t.Parallel()
	db := createdControlDB(t)
	l := startLog(t, Config{DSN: db.dsn, FlushInterval: 10 * time.Millisecond, Instance: "proxy-1"})
	at := time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)
	want := Event{
		Time: at, Org: "acme", Subject: "alice", TokenID: "jti-1", ClientAddr: "10.0.0.1:5000",
		Reason: ReasonForgedContext, Rule: "context_signature", SQLState: "42501",
		Fingerprint: "SELECT * FROM items WHERE id = $1", Detail: "context token does not verify",
	}
	l.Record(want)
	l.Record(Event{Reason: ReasonAuthFailed, Detail: "nul\x00 and bad utf-8 \xff"})
	eventually(t, 10*time.Second, func() bool { return db.rows() == 2 },
		func() string { return "rows: " + itoa(db.rows()) })

	got, err := Tail(context.Background(), db.connect(), TailFilter{Reason: ReasonForgedContext})
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 1 || !got[0].Time.Equal(at) || got[0].Instance != "proxy-1" {
		t.Fatalf("got %+v", got)
	}
	got[0].Time = at
	if got[0].Event != want {
		t.Fatalf("stored %+v\nwant %+v", got[0].Event, want)
	}
	if n := db.queryInt("SELECT count(*) FROM tenancy.audit_events WHERE org IS NULL AND subject IS NULL AND rule IS NULL AND fingerprint IS NULL"); n != 1 {
		t.Fatalf("empty fields are not stored as NULL")
	}
	bad, err := Tail(context.Background(), db.connect(), TailFilter{Reason: ReasonAuthFailed})
	if err != nil {
		t.Fatal(err)
	}
	if len(bad) != 1 || bad[0].Detail != "nul and bad utf-8 \uFFFD" {
		t.Fatalf("the unclean detail was stored as %+v", bad)
	}
}

func TestRecordNeverBlocksWhileTheDatabaseHangs(t *testing.T) {
	t.Parallel()
	// A server that accepts connections and never answers: the writer hangs
	// in its connection attempt.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var held sync.WaitGroup
	held.Go(func() {
		var conns []net.Conn
		for {
			c, err := ln.Accept()
			if err != nil {
				break
			}
			conns = append(conns, c)
		}
		for _, c := range conns {
			c.Close()
		}
	})
	t.Cleanup(func() { ln.Close(); held.Wait() })

	const n = 5000
	l := startLog(t, Config{
		DSN:       "postgres://postgres:secret@" + ln.Addr().String() + "/audit?sslmode=disable&connect_timeout=600",
		QueueSize: 100, BatchSize: 10, FlushInterval: 10 * time.Millisecond,
	})
	start := time.Now()
	for _, ev := range numbered(n) {
		l.Record(ev)
	}
	// A Record that waited for the writer would wait for the connection
	// attempt, ten minutes; the bound leaves room for a loaded machine.
	if d := time.Since(start); d > 30*time.Second {
		t.Fatalf("%d Records took %v with the database hanging", n, d)
	}
	dropped := l.metric(t, "pgtenant_audit_events_dropped_total", "cause", "queue_full")
	if dropped < n-200 {
		t.Fatalf("dropped %v events for a full queue, want nearly all of %d", dropped, n)
	}
	l.wantMetric(t, "pgtenant_audit_queue_length", "", "", 100) // full

	// Close gives up on the hung database when its context ends; what was
	// queued goes to the spool.
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	if err := l.Close(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Close with the database hanging: %v", err)
	}
	select {
	case <-l.done:
	case <-time.After(10 * time.Second):
		t.Fatal("the writer did not stop after Close gave up")
	}
	spooled := l.metric(t, "pgtenant_audit_events_total", "sink", "spool")
	if spooled+dropped != n {
		t.Fatalf("spooled %v + dropped %v != recorded %d: events lost uncounted", spooled, dropped, n)
	}
	l.wantMetric(t, "pgtenant_cross_tenant_blocked_total", "reason", ReasonBlockedStatement, n)
}

func TestSpooledEventsReachTheTableOnceWhenTheDatabaseComesBack(t *testing.T) {
	t.Parallel()
	db := newControlDB(t) // not created yet: connections fail
	dir := t.TempDir()
	l := startLog(t, Config{DSN: db.dsn, SpoolDir: dir, BatchSize: 100, FlushInterval: 10 * time.Millisecond})
	events := numbered(350)
	for _, ev := range events[:300] {
		l.Record(ev)
	}
	eventually(t, 10*time.Second, func() bool { return l.metric(t, "pgtenant_audit_events_total", "sink", "spool") == 300 },
		func() string { return l.out.String() })
	if got, want := l.metric(t, "pgtenant_audit_spool_bytes", "", ""), float64(dirBytes(t, dir)); got != want || got == 0 {
		t.Fatalf("pgtenant_audit_spool_bytes = %v, the segments hold %v bytes", got, want)
	}
	if !strings.Contains(l.out.String(), "spooling audit events") {
		t.Fatalf("the outage was not logged:\n%s", l.out.String())
	}

	db.create("")
	for _, ev := range events[300:] {
		l.Record(ev)
	}
	eventually(t, 10*time.Second, func() bool { return db.rows() == 350 },
		func() string { return "rows: " + itoa(db.rows()) + "\n" + l.out.String() })
	if n := db.queryInt("SELECT count(DISTINCT detail) FROM tenancy.audit_events"); n != 350 {
		t.Fatalf("%d distinct events of 350", n)
	}
	eventually(t, 5*time.Second, func() bool { return len(spoolSegments(t, dir)) == 0 },
		func() string { return strings.Join(spoolSegments(t, dir), ", ") })
	l.wantMetric(t, "pgtenant_audit_spool_bytes", "", "", 0)
	l.wantMetric(t, "pgtenant_audit_events_total", "sink", "table", 350)
	if !strings.Contains(l.out.String(), "reachable again") {
		t.Fatalf("the recovery was not logged:\n%s", l.out.String())
	}
	l.close(t)
	if n := db.rows(); n != 350 {
		t.Fatalf("%d rows after Close, want 350", n)
	}
}

func TestAFullSpoolDropsNewEventsCountsThemAndLogsOnce(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	const limit = 4096
	l := startLog(t, Config{DSN: unreachableDSN(t), SpoolDir: dir, SpoolMaxBytes: limit, BatchSize: 10, FlushInterval: 10 * time.Millisecond})
	const n = 200
	for _, ev := range numbered(n) {
		l.Record(ev)
	}
	spooled := func() float64 { return l.metric(t, "pgtenant_audit_events_total", "sink", "spool") }
	dropped := func() float64 { return l.metric(t, "pgtenant_audit_events_dropped_total", "cause", "spool_full") }
	eventually(t, 10*time.Second, func() bool { return spooled()+dropped() == n },
		func() string { return "spooled " + ftoa(spooled()) + ", dropped " + ftoa(dropped()) })
	if spooled() == 0 || dropped() == 0 {
		t.Fatalf("spooled %v, dropped %v: the bound was not reached", spooled(), dropped())
	}
	if size := dirBytes(t, dir); size > limit || float64(size) != l.metric(t, "pgtenant_audit_spool_bytes", "", "") {
		t.Fatalf("the spool holds %d bytes (bound %d), the gauge says %v", size, limit, l.metric(t, "pgtenant_audit_spool_bytes", "", ""))
	}
	eventually(t, 5*time.Second, func() bool { return strings.Contains(l.out.String(), "events dropped") },
		func() string { return l.out.String() })
	for _, ev := range numbered(50) {
		l.Record(ev)
	}
	eventually(t, 10*time.Second, func() bool { return spooled()+dropped() == n+50 },
		func() string { return "spooled " + ftoa(spooled()) + ", dropped " + ftoa(dropped()) })
	if c := strings.Count(l.out.String(), "events dropped"); c != 1 {
		t.Fatalf("drops were logged %d times within one interval, want once:\n%s", c, l.out.String())
	}
	l.close(t)
	// Close reports the drops not yet logged.
	if c := strings.Count(l.out.String(), "events dropped"); c != 2 {
		t.Fatalf("Close did not report the drops since the last report:\n%s", l.out.String())
	}
	var line struct {
		SpoolFull int `json:"dropped_spool_full"`
	}
	lines := strings.Split(strings.TrimSpace(l.out.String()), "\n")
	for _, s := range lines {
		if strings.Contains(s, "events dropped") {
			if err := json.Unmarshal([]byte(s), &line); err != nil || line.SpoolFull == 0 {
				t.Fatalf("the drop report does not count by cause: %s", s)
			}
		}
	}
}

func TestCloseWritesQueuedEventsAndIsIdempotent(t *testing.T) {
	t.Parallel()
	db := createdControlDB(t)
	l := startLog(t, Config{DSN: db.dsn, FlushInterval: time.Hour})
	for _, ev := range numbered(10) {
		l.Record(ev)
	}
	l.close(t)
	if n := db.rows(); n != 10 {
		t.Fatalf("Close left %d of 10 events unwritten", 10-n)
	}
	l.close(t)
	l.Record(Event{Reason: ReasonRLSViolation})
	l.wantMetric(t, "pgtenant_audit_events_dropped_total", "cause", "closed", 1)
	l.wantMetric(t, "pgtenant_cross_tenant_blocked_total", "reason", ReasonRLSViolation, 1)
}

func TestARestartReplaysTheSpoolOfTheEarlierRun(t *testing.T) {
	t.Parallel()
	db := newControlDB(t)
	dir := t.TempDir()
	first := startLog(t, Config{DSN: db.dsn, SpoolDir: dir, FlushInterval: time.Hour, Instance: "first"})
	for _, ev := range numbered(20) {
		first.Record(ev)
	}
	first.close(t) // the database does not exist: Close spools
	first.wantMetric(t, "pgtenant_audit_events_total", "sink", "spool", 20)
	if len(spoolSegments(t, dir)) == 0 {
		t.Fatal("no spool segment on disk after Close")
	}

	db.create("")
	second := startLog(t, Config{DSN: db.dsn, SpoolDir: dir, FlushInterval: 10 * time.Millisecond, Instance: "second"})
	if !strings.Contains(second.out.String(), "found spooled events of an earlier run") {
		t.Fatalf("New did not report the spool it found:\n%s", second.out.String())
	}
	eventually(t, 10*time.Second, func() bool { return db.rows() == 20 },
		func() string { return "rows: " + itoa(db.rows()) + "\n" + second.out.String() })
	if n := db.queryInt("SELECT count(*) FROM tenancy.audit_events WHERE instance = 'first'"); n != 20 {
		t.Fatalf("%d replayed events keep the instance that recorded them, want 20", n)
	}
	eventually(t, 5*time.Second, func() bool { return len(spoolSegments(t, dir)) == 0 },
		func() string { return strings.Join(spoolSegments(t, dir), ", ") })
}

func TestACorruptSpoolLineIsSkippedAndCounted(t *testing.T) {
	t.Parallel()
	db := createdControlDB(t)
	dir := t.TempDir()
	good, err := json.Marshal(spooled{Event: Event{Time: time.Now(), Org: "acme", Reason: ReasonRLSViolation}})
	if err != nil {
		t.Fatal(err)
	}
	// A crash cut the second write short.
	data := string(good) + "\n" + `{"time":"2025-01-01T00:00:00Z","org":"glo`
	if err := os.WriteFile(filepath.Join(dir, segmentPrefix+"00000000000000000001-000001"+segmentSuffix), []byte(data), 0o600); err != nil {
		t.Fatal(err)
	}
	l := startLog(t, Config{DSN: db.dsn, SpoolDir: dir, FlushInterval: 10 * time.Millisecond})
	eventually(t, 10*time.Second, func() bool { return len(spoolSegments(t, dir)) == 0 },
		func() string { return l.out.String() })
	if n := db.rows(); n != 1 {
		t.Fatalf("%d rows from a segment with one good line", n)
	}
	l.wantMetric(t, "pgtenant_audit_events_dropped_total", "cause", "spool_corrupt", 1)
}

func TestAnEventPostgreSQLRefusesDoesNotKeepTheOthersOut(t *testing.T) {
	t.Parallel()
	db := newControlDB(t)
	db.create(`ALTER TABLE tenancy.audit_events ADD CHECK (rule IS DISTINCT FROM 'poison');`)
	l := startLog(t, Config{DSN: db.dsn, FlushInterval: time.Hour})
	events := numbered(5)
	events[2].Rule = "poison"
	for _, ev := range events {
		l.Record(ev)
	}
	l.close(t)
	if n := db.rows(); n != 4 {
		t.Fatalf("%d rows, want the 4 events PostgreSQL accepts", n)
	}
	l.wantMetric(t, "pgtenant_audit_events_dropped_total", "cause", "rejected", 1)
	l.wantMetric(t, "pgtenant_audit_events_total", "sink", "spool", 0)
}

func TestTwoLogsCannotShareASpoolDirectory(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	startLog(t, Config{DSN: unreachableDSN(t), SpoolDir: dir})
	_, err := New(Config{DSN: unreachableDSN(t), SpoolDir: dir}, zerolog.Nop(), nil)
	if err == nil || !strings.Contains(err.Error(), "audit.spool_dir") {
		t.Fatalf("a second Log on the same spool directory: %v", err)
	}
}

func TestWithoutADSNEventsAreOnlyLoggedAndCounted(t *testing.T) {
	t.Parallel()
	dir := filepath.Join(t.TempDir(), "spool")
	l := startLog(t, Config{SpoolDir: dir})
	l.Record(Event{
		Org: "acme", Subject: "alice", ClientAddr: "10.0.0.1:5000", Reason: ReasonBlockedStatement,
		Rule: "listen_notify", SQLState: "42501", Fingerprint: "LISTEN $1", Detail: "LISTEN is global across tenants",
	})
	l.Record(Event{Reason: "guard_panic"})
	var line map[string]any
	first, _, _ := strings.Cut(l.out.String(), "\n")
	if err := json.Unmarshal([]byte(first), &line); err != nil {
		t.Fatal(err)
	}
	want := map[string]any{
		"level": "warn", "tenant": "acme", "subject": "alice", "client_addr": "10.0.0.1:5000",
		"reason": "blocked_statement", "rule": "listen_notify", "sqlstate": "42501", "fingerprint": "LISTEN $1",
	}
	for k, v := range want {
		if line[k] != v {
			t.Errorf("log field %s = %v, want %v", k, line[k], v)
		}
	}
	l.wantMetric(t, "pgtenant_cross_tenant_blocked_total", "reason", ReasonOther, 1)
	l.wantMetric(t, "pgtenant_cross_tenant_blocked_total", "reason", "guard_panic", 0)
	if _, err := os.Stat(dir); !os.IsNotExist(err) {
		t.Fatalf("a Log without a table created its spool directory: %v", err)
	}
}

func TestMetricsAreRegisteredOnTheGivenRegistryOnly(t *testing.T) {
	t.Parallel()
	reg := prometheus.NewRegistry()
	l, err := New(Config{}, zerolog.Nop(), reg)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close(context.Background())
	families, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, f := range families {
		names = append(names, f.GetName())
	}
	want := "pgtenant_audit_events_dropped_total pgtenant_audit_events_total pgtenant_audit_queue_length pgtenant_audit_spool_bytes pgtenant_cross_tenant_blocked_total"
	if got := strings.Join(names, " "); got != want {
		t.Fatalf("registered %s\nwant %s", got, want)
	}
	if _, err := New(Config{}, zerolog.Nop(), reg); err == nil {
		t.Fatal("a second Log registered the same metrics on one registry")
	}
	global, err := prometheus.DefaultGatherer.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range global {
		if strings.HasPrefix(f.GetName(), "pgtenant_") {
			t.Fatalf("%s is registered on the global registry", f.GetName())
		}
	}
}
