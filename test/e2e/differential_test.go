package e2e

import (
	"fmt"
	"math/rand/v2"
	"regexp"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5/pgproto3"
)

// protocolScript generates a random but well-formed sequence of frontend
// messages: statements are parsed before they are bound (or bound while
// unknown, on purpose), portals are executed only in the transaction that
// bound them, named statements are not parsed twice while they exist.
type protocolScript struct {
	r        *rand.Rand
	parsed   map[string]int // statement -> parameter count
	portals  map[string]bool
	inBlock  bool
	pending  bool // extended-protocol messages since the last Sync
	messages []pgproto3.FrontendMessage
	ready    int // ReadyForQuery replies to expect
}

var scriptQueries = []struct {
	sql    string
	params int
}{
	{"SELECT $1::int + 1 AS n", 1},
	{"SELECT 'fixed' AS t", 0},
	{"SELECT 1/0", 0},
	{"SELECT generate_series(1, 3) AS g", 0},
	{"SELECT $1::text || $2::text AS c", 2},
	{"SELECT count(*) FROM items", 0},
	{"SELECT current_setting('app.current_org', true) IS NULL AS no_context", 0},
}

func (p *protocolScript) add(m pgproto3.FrontendMessage) {
	p.messages = append(p.messages, m)
	switch m.(type) {
	case *pgproto3.Sync, *pgproto3.Query:
		p.pending = false
	default:
		p.pending = true
	}
}

func (p *protocolScript) endOfTransaction() {
	if !p.inBlock {
		p.portals = map[string]bool{}
	}
}

func (p *protocolScript) step() {
	names := []string{"", "s1", "s2"}
	switch k := p.r.IntN(12); {
	case k < 3: // Parse
		name := names[p.r.IntN(len(names))]
		if name == "" && p.inBlock {
			// Known difference: an unnamed Parse that fails by itself (in an
			// aborted transaction, or on a syntax error) drops the previous
			// unnamed statement in PostgreSQL; pgtenant cannot tell that
			// failure from a Parse skipped after an earlier error, and keeps it.
			name = "s1"
		}
		if _, ok := p.parsed[name]; ok && name != "" {
			p.add(&pgproto3.Close{ObjectType: 'S', Name: name})
			delete(p.parsed, name)
		}
		q := scriptQueries[p.r.IntN(len(scriptQueries))]
		p.add(&pgproto3.Parse{Name: name, Query: q.sql})
		p.parsed[name] = q.params
	case k < 6: // Bind (+ Describe) + Execute
		name := names[p.r.IntN(len(names))]
		n, known := p.parsed[name]
		if !known {
			n = 0
		}
		args := make([][]byte, n)
		for i := range args {
			args[i] = []byte(fmt.Sprint(p.r.IntN(100)))
		}
		portal := []string{"", "p1"}[p.r.IntN(2)]
		p.add(&pgproto3.Bind{DestinationPortal: portal, PreparedStatement: name, Parameters: args})
		if p.r.IntN(2) == 0 {
			p.add(&pgproto3.Describe{ObjectType: 'P', Name: portal})
		}
		p.add(&pgproto3.Execute{Portal: portal, MaxRows: uint32(p.r.IntN(3))})
		p.portals[portal] = true
	case k < 7: // Describe a statement
		p.add(&pgproto3.Describe{ObjectType: 'S', Name: names[p.r.IntN(len(names))]})
	case k < 8: // Close a statement
		name := names[p.r.IntN(len(names))]
		p.add(&pgproto3.Close{ObjectType: 'S', Name: name})
		delete(p.parsed, name)
	case k < 10: // Sync
		p.add(&pgproto3.Sync{})
		p.ready++
		p.endOfTransaction()
	default: // a simple query; after an error PostgreSQL ignores
		// everything up to a Sync, so one comes first
		if p.pending {
			p.add(&pgproto3.Sync{})
			p.ready++
			p.endOfTransaction()
		}
		q := []string{"SELECT 1", "BEGIN", "COMMIT", "ROLLBACK", "SELECT 1/0", "SELECT count(*) FROM items"}[p.r.IntN(6)]
		switch q {
		case "BEGIN":
			p.inBlock = true
		case "COMMIT", "ROLLBACK":
			p.inBlock = false
		}
		p.add(&pgproto3.Query{String: q})
		p.ready++
		p.endOfTransaction()
	}
}

func TestRandomProtocolSequencesGetTheSameRepliesAsFromPostgreSQL(t *testing.T) {
	e := startProxy(t, func(c *proxyConfig, _ *jwtConfig) { c.Pool.Size = 2 })
	c := testpgCluster(t)
	direct := hijack(t, c.DSN(appRole, appPassword, database))
	// The direct session sees globex's single row when it sets the context
	// the way pgtenant would; compare counts as globex.
	direct.exchange(1, &pgproto3.Query{String: "SET app.current_org = 'globex'"})
	proxied := hijack(t, e.dsn(token(t, "globex")))
	// A second client of the tenant keeps the backends busy with statements
	// of its own, so the proxied session changes backends.
	other := hijack(t, e.dsn(token(t, "globex")))
	other.exchange(1, &pgproto3.Parse{Name: "s1", Query: "SELECT 'other client'"}, &pgproto3.Parse{Query: "SELECT 'other unnamed'"}, &pgproto3.Sync{})

	for seed := uint64(1); seed <= 400; seed++ {
		p := &protocolScript{r: rand.New(rand.NewPCG(seed, 7)), parsed: map[string]int{}, portals: map[string]bool{}}
		for i := 0; i < 4+int(seed%20); i++ {
			p.step()
		}
		if p.pending {
			p.add(&pgproto3.Sync{})
			p.ready++
		}
		if p.inBlock {
			p.add(&pgproto3.Query{String: "ROLLBACK"})
			p.ready++
			p.inBlock = false
		}
		p.add(&pgproto3.Sync{})
		p.ready++
		// Close what the script left, so the next one starts clean.
		p.add(&pgproto3.Close{ObjectType: 'S', Name: ""})
		p.add(&pgproto3.Close{ObjectType: 'S', Name: "s1"})
		p.add(&pgproto3.Close{ObjectType: 'S', Name: "s2"})
		p.add(&pgproto3.Sync{})
		p.ready++

		want := normalize(direct.exchange(p.ready, p.messages...))
		got := normalize(proxied.exchange(p.ready, p.messages...))
		if strings.Join(got, "\n") != strings.Join(want, "\n") {
			var sent []string
			for _, m := range p.messages {
				sent = append(sent, fmt.Sprintf("%T%+v", m, m))
			}
			t.Fatalf("seed %d: replies differ\nsent:\n  %s\nthrough pgtenant:\n  %s\nstraight to PostgreSQL:\n  %s",
				seed, strings.Join(sent, "\n  "), strings.Join(got, "\n  "), strings.Join(want, "\n  "))
		}
		// Keep the other client's statements on the backends.
		other.exchange(1, &pgproto3.Bind{PreparedStatement: "s1"}, &pgproto3.Execute{}, &pgproto3.Sync{})
	}
}

// normalize drops what legitimately differs: where in PostgreSQL's source
// an error was raised, and the name pgtenant uses to refuse a Bind of an
// unnamed statement the client never parsed.
func normalize(msgs []string) []string {
	out := make([]string, len(msgs))
	for i, m := range msgs {
		m = strings.ReplaceAll(m, `prepared statement \"pgtenant_unknown_statement\" does not exist`, `unnamed prepared statement does not exist`)
		out[i] = sourceLocation.ReplaceAllString(m, "")
	}
	return out
}

var sourceLocation = regexp.MustCompile(`"File":"[^"]*","Line":[0-9]+,"Routine":"[^"]*",`)
