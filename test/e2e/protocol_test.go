package e2e

import (
	"encoding/json"
	"net"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/pgtenant/pgtenant/test/testpg"
)

// rawSession is a logged-in connection driven message by message.
type rawSession struct {
	t  *testing.T
	fe *pgproto3.Frontend
	c  net.Conn
}

func hijack(t *testing.T, dsn string) *rawSession {
	t.Helper()
	pc, err := pgconn.Connect(testpg.Context(t), dsn)
	if err != nil {
		t.Fatal(err)
	}
	hc, err := pc.Hijack()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { hc.Conn.Close() })
	_ = hc.Conn.SetDeadline(time.Now().Add(30 * time.Second))
	return &rawSession{t: t, fe: hc.Frontend, c: hc.Conn}
}

// exchange sends msgs and returns every message received up to the
// ready-th ReadyForQuery, as JSON.
func (r *rawSession) exchange(ready int, msgs ...pgproto3.FrontendMessage) []string {
	r.t.Helper()
	for _, m := range msgs {
		r.fe.Send(m)
	}
	if err := r.fe.Flush(); err != nil {
		r.t.Fatal(err)
	}
	var got []string
	for ready > 0 {
		m, err := r.fe.Receive()
		if err != nil {
			r.t.Fatalf("after %v: %v", got, err)
		}
		b, _ := json.Marshal(m)
		got = append(got, string(b))
		if _, ok := m.(*pgproto3.ReadyForQuery); ok {
			ready--
		}
	}
	return got
}

func TestInjectedRepliesNeverReachTheClient(t *testing.T) {
	e := startProxy(t, nil)
	c := testpgCluster(t)
	direct := hijack(t, c.DSN(appRole, appPassword, database))
	proxied := hijack(t, e.dsn(token(t, "acme")))
	ext := func(sql string, args ...[]byte) []pgproto3.FrontendMessage {
		return []pgproto3.FrontendMessage{
			&pgproto3.Parse{Query: sql},
			&pgproto3.Bind{Parameters: args},
			&pgproto3.Describe{ObjectType: 'P'},
			&pgproto3.Execute{},
			&pgproto3.Sync{},
		}
	}
	steps := []struct {
		name  string
		ready int
		msgs  []pgproto3.FrontendMessage
	}{
		{"simple query", 1, []pgproto3.FrontendMessage{&pgproto3.Query{String: "SELECT 1 AS one"}}},
		{"multi-statement", 1, []pgproto3.FrontendMessage{&pgproto3.Query{String: "SELECT 1; SELECT 'two' AS t"}}},
		{"empty query", 1, []pgproto3.FrontendMessage{&pgproto3.Query{String: ""}}},
		{"extended", 1, ext("SELECT $1::int + 1 AS n", []byte("41"))},
		{"simple error", 1, []pgproto3.FrontendMessage{&pgproto3.Query{String: "SELECT 1/0"}}},
		{"extended error", 1, ext("SELECT * FROM no_such_table")},
		{"explicit transaction", 3, []pgproto3.FrontendMessage{
			&pgproto3.Query{String: "BEGIN"}, &pgproto3.Query{String: "SELECT 2"}, &pgproto3.Query{String: "COMMIT"}}},
		{"commit outside a transaction", 1, []pgproto3.FrontendMessage{&pgproto3.Query{String: "COMMIT"}}},
		{"pipeline", 2, append(ext("SELECT 1"), ext("SELECT 2")...)},
		{"lone sync", 1, []pgproto3.FrontendMessage{&pgproto3.Sync{}}},
		{"named statement", 1, []pgproto3.FrontendMessage{
			&pgproto3.Parse{Name: "s1", Query: "SELECT $1::int * 2 AS d"},
			&pgproto3.Describe{ObjectType: 'S', Name: "s1"}, &pgproto3.Sync{}}},
		{"named statement, next transaction", 1, []pgproto3.FrontendMessage{
			&pgproto3.Bind{PreparedStatement: "s1", Parameters: [][]byte{[]byte("21")}},
			&pgproto3.Describe{ObjectType: 'P'}, &pgproto3.Execute{}, &pgproto3.Sync{}}},
		{"close named statement", 1, []pgproto3.FrontendMessage{
			&pgproto3.Close{ObjectType: 'S', Name: "s1"}, &pgproto3.Sync{}}},
		{"close unknown statement", 1, []pgproto3.FrontendMessage{
			&pgproto3.Close{ObjectType: 'S', Name: "never"}, &pgproto3.Sync{}}},
		{"bind unknown statement", 1, []pgproto3.FrontendMessage{
			&pgproto3.Bind{PreparedStatement: "never"}, &pgproto3.Execute{}, &pgproto3.Sync{}}},
		{"vacuum", 1, []pgproto3.FrontendMessage{&pgproto3.Query{String: "VACUUM app_owned"}}},
		{"notice", 1, []pgproto3.FrontendMessage{&pgproto3.Query{String: "DO $$ BEGIN RAISE NOTICE 'hello'; END $$"}}},
	}
	for _, s := range steps {
		want := direct.exchange(s.ready, s.msgs...)
		got := proxied.exchange(s.ready, s.msgs...)
		if strings.Join(got, "\n") != strings.Join(want, "\n") {
			t.Errorf("%s: through pgtenant\n  %s\nstraight to PostgreSQL\n  %s", s.name,
				strings.Join(got, "\n  "), strings.Join(want, "\n  "))
		}
	}
}

func TestOversizedMessageEndsTheSessionWith54000(t *testing.T) {
	e := startProxy(t, func(c *proxyConfig, _ *jwtConfig) { c.MaxMessageSize = 64 << 10 })
	r := hijack(t, e.dsn(token(t, "acme")))
	r.fe.Send(&pgproto3.Query{String: "SELECT '" + strings.Repeat("x", 100<<10) + "'"})
	_ = r.fe.Flush()
	m, err := r.fe.Receive()
	if err != nil {
		t.Fatal(err)
	}
	er, ok := m.(*pgproto3.ErrorResponse)
	if !ok || er.Code != "54000" || er.Severity != "FATAL" {
		t.Fatalf("got %#v, want FATAL 54000", m)
	}
	if _, err := r.fe.Receive(); err == nil {
		t.Fatal("the connection stayed open")
	}
}

func TestProtocol32IsNegotiatedDownTo30(t *testing.T) {
	e := startProxy(t, nil)
	c, err := net.Dial("tcp", e.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	fe := pgproto3.NewFrontend(c, c)
	fe.Send(&pgproto3.StartupMessage{ProtocolVersion: pgproto3.ProtocolVersion32, Parameters: map[string]string{
		"user": "app", "database": database, "_pq_.future_option": "1"}})
	if err := fe.Flush(); err != nil {
		t.Fatal(err)
	}
	m, err := fe.Receive()
	if err != nil {
		t.Fatal(err)
	}
	npv, ok := m.(*pgproto3.NegotiateProtocolVersion)
	if !ok || npv.NewestMinorProtocol != 0 || len(npv.UnrecognizedOptions) != 1 || npv.UnrecognizedOptions[0] != "_pq_.future_option" {
		t.Fatalf("got %#v, want NegotiateProtocolVersion to 3.0 naming the option", m)
	}
	if m, err = fe.Receive(); err != nil {
		t.Fatal(err)
	}
	if _, ok := m.(*pgproto3.AuthenticationCleartextPassword); !ok {
		t.Fatalf("got %#v, want a password request", m)
	}
	fe.Send(&pgproto3.PasswordMessage{Password: token(t, "acme")})
	fe.Send(&pgproto3.Query{String: "SELECT current_setting('app.current_org')"})
	if err := fe.Flush(); err != nil {
		t.Fatal(err)
	}
	for {
		m, err := fe.Receive()
		if err != nil {
			t.Fatal(err)
		}
		if dr, ok := m.(*pgproto3.DataRow); ok {
			if string(dr.Values[0]) != "acme" {
				t.Fatalf("context %q", dr.Values[0])
			}
			return
		}
		if er, ok := m.(*pgproto3.ErrorResponse); ok {
			t.Fatalf("error: %s", er.Message)
		}
	}
}

func TestMalformedStartupPacketsAreRefused(t *testing.T) {
	e := startProxy(t, nil)
	for _, tc := range []struct {
		name   string
		packet []byte
		code   string
	}{
		{"unsupported protocol", []byte{0, 0, 0, 8, 0, 2, 0, 0}, "0A000"},
		{"length too large", []byte{0x7f, 0, 0, 0, 0, 3, 0, 0}, "08P01"},
		{"length too small", []byte{0, 0, 0, 2}, "08P01"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := net.Dial("tcp", e.addr)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			_ = c.SetDeadline(time.Now().Add(10 * time.Second))
			if _, err := c.Write(tc.packet); err != nil {
				t.Fatal(err)
			}
			fe := pgproto3.NewFrontend(c, c)
			m, err := fe.Receive()
			if err != nil {
				t.Fatal(err)
			}
			if er, ok := m.(*pgproto3.ErrorResponse); !ok || er.Code != tc.code {
				t.Fatalf("got %#v, want error %s", m, tc.code)
			}
		})
	}
}

func TestPsqlSeesOnlyItsTenantsRows(t *testing.T) {
	psql, err := exec.LookPath("psql")
	if err != nil {
		t.Fatal("psql is required (Debian package postgresql-client): ", err)
	}
	e := startProxy(t, nil)
	host, port, _ := net.SplitHostPort(e.addr)
	for org, rows := range tenantRows {
		cmd := exec.CommandContext(testpg.Context(t), psql, "-X", "-A", "-t", "-v", "ON_ERROR_STOP=1",
			"-h", host, "-p", port, "-U", "app", "-d", database,
			"-c", "SELECT current_setting('app.current_org') || ':' || string_agg(name, ',' ORDER BY id) FROM items",
			"-c", "BEGIN", "-c", "SELECT count(*) FROM items", "-c", "COMMIT")
		cmd.Env = append(cmd.Environ(), "PGPASSWORD="+token(t, org), "PGSSLMODE=disable")
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("psql as %s: %v\n%s", org, err, out)
		}
		lines := strings.Fields(string(out))
		want := org + ":" + strings.Join(rows, ",")
		if len(lines) < 2 || lines[0] != want || lines[2] != strconv.Itoa(len(rows)) {
			t.Fatalf("psql as %s printed %q, want %q then BEGIN and %d", org, out, want, len(rows))
		}
	}
}
