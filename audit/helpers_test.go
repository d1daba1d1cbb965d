package audit

import (
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"

	"github.com/pgtenant/pgtenant/test/testpg"
)

// tableDDL creates the audit table as the policies command does.
const tableDDL = `
CREATE SCHEMA IF NOT EXISTS tenancy;
CREATE TABLE IF NOT EXISTS tenancy.audit_events (id bigserial primary key, at timestamptz not null, org text, subject text, token_id text, client_addr text, reason text not null, rule text, sqlstate text, fingerprint text, detail text, instance text);
`

var nonIdent = regexp.MustCompile(`[^a-z0-9]+`)

// dbName derives a database name of the test's own from its name.
func dbName(t testing.TB) string {
	n := "audit_" + nonIdent.ReplaceAllString(strings.ToLower(t.Name()), "_")
	if len(n) > 60 {
		n = n[:60]
	}
	return n
}

// controlDB is a control database of the test's own, dropped at the end.
type controlDB struct {
	t    testing.TB
	name string
	dsn  string
	conn *pgx.Conn // opened by connect
}

// newControlDB names a database for the test without creating it; create
// makes it exist, with the audit table.
func newControlDB(t testing.TB) *controlDB {
	t.Helper()
	c := testpg.Cluster(t)
	db := &controlDB{t: t, name: dbName(t), dsn: c.SuperuserDSN(dbName(t))}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if err := c.Exec(ctx, "DROP DATABASE IF EXISTS "+pgx.Identifier{db.name}.Sanitize()+" WITH (FORCE)"); err != nil {
			t.Errorf("dropping %s: %v", db.name, err)
		}
	})
	return db
}

// create creates the database and the audit table, plus extra SQL.
func (db *controlDB) create(extra string) {
	db.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c := testpg.Cluster(db.t)
	if err := c.CreateDatabase(ctx, db.name); err != nil {
		db.t.Fatal(err)
	}
	if err := c.ExecIn(ctx, db.name, tableDDL+extra); err != nil {
		db.t.Fatal(err)
	}
}

// createdControlDB is a control database with the audit table.
func createdControlDB(t testing.TB) *controlDB {
	db := newControlDB(t)
	db.create("")
	return db
}

// connect returns the test's connection to the database, opened on first
// use and closed when the test ends (before the database is dropped).
func (db *controlDB) connect() *pgx.Conn {
	db.t.Helper()
	if db.conn != nil {
		return db.conn
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, db.dsn)
	if err != nil {
		db.t.Fatal(err)
	}
	db.t.Cleanup(func() { conn.Close(context.Background()) })
	db.conn = conn
	return conn
}

// queryInt runs a query that returns one integer.
func (db *controlDB) queryInt(sql string) int {
	db.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var n int
	if err := db.connect().QueryRow(ctx, sql).Scan(&n); err != nil {
		db.t.Fatal(err)
	}
	return n
}

// rows counts the rows of the audit table.
func (db *controlDB) rows() int {
	db.t.Helper()
	return db.queryInt("SELECT count(*) FROM tenancy.audit_events")
}

// unreachableDSN points at a loopback port nobody listens on.
func unreachableDSN(t testing.TB) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return "postgres://postgres:secret@" + addr + "/audit?sslmode=disable"
}

// testLog is a Log under test with its own registry and log output.
type testLog struct {
	*Log
	reg *prometheus.Registry
	out *testpg.SyncBuffer
}

// startLog starts a Log that retries the database every 50ms at most. It is
// closed when the test ends if the test has not closed it.
func startLog(t testing.TB, cfg Config) *testLog {
	t.Helper()
	if cfg.SpoolDir == "" {
		cfg.SpoolDir = t.TempDir()
	}
	reg := prometheus.NewRegistry()
	out := &testpg.SyncBuffer{}
	l, err := newLog(cfg, zerolog.New(out), reg, options{maxBackoff: 50 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := l.Close(ctx); err != nil {
			t.Errorf("close: %v", err)
		}
	})
	return &testLog{Log: l, reg: reg, out: out}
}

// close closes the Log, failing the test on error.
func (l *testLog) close(t testing.TB) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := l.Close(ctx); err != nil {
		t.Fatal(err)
	}
}

// metric returns the value of the series of name whose labels include
// label=value (any series when label is empty); 0 when there is none.
func (l *testLog) metric(t testing.TB, name, label, value string) float64 {
	t.Helper()
	families, err := l.reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range families {
		if f.GetName() != name {
			continue
		}
		for _, m := range f.GetMetric() {
			match := label == ""
			for _, lp := range m.GetLabel() {
				if lp.GetName() == label && lp.GetValue() == value {
					match = true
				}
			}
			if !match {
				continue
			}
			switch {
			case m.GetCounter() != nil:
				return m.GetCounter().GetValue()
			case m.GetGauge() != nil:
				return m.GetGauge().GetValue()
			}
		}
	}
	return 0
}

// wantMetric fails the test unless metric(name, label, value) is want.
func (l *testLog) wantMetric(t testing.TB, name, label, value string, want float64) {
	t.Helper()
	if got := l.metric(t, name, label, value); got != want {
		t.Fatalf("%s{%s=%q} = %v, want %v", name, label, value, got, want)
	}
}

// eventually waits up to timeout for cond, failing the test with what
// describes the state when it never holds.
func eventually(t testing.TB, timeout time.Duration, cond func() bool, describe func() string) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("condition not met within %v: %s", timeout, describe())
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// numbered returns n events told apart by Detail "event i".
func numbered(n int) []Event {
	events := make([]Event, n)
	for i := range events {
		events[i] = Event{
			Org: "acme", Subject: "alice", ClientAddr: "10.0.0.1:5000", Reason: ReasonBlockedStatement,
			Rule: "reserved_setting", SQLState: "42501", Fingerprint: "SET app.current_org = $1",
			Detail: fmt.Sprintf("event %d", i),
		}
	}
	return events
}

// spoolSegments lists the segment files in dir.
func spoolSegments(t testing.TB, dir string) []string {
	t.Helper()
	files, err := filepath.Glob(filepath.Join(dir, segmentPrefix+"*"+segmentSuffix))
	if err != nil {
		t.Fatal(err)
	}
	return files
}

// dirBytes sums the sizes of the segment files in dir.
func dirBytes(t testing.TB, dir string) int64 {
	t.Helper()
	var n int64
	for _, f := range spoolSegments(t, dir) {
		info, err := os.Stat(f)
		if err != nil {
			t.Fatal(err)
		}
		n += info.Size()
	}
	return n
}
