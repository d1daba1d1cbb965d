package e2e

import (
	"bytes"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/pgtenant/pgtenant/test/testpg"
)

func TestLargeValuesAndCopyStreamThroughBothWays(t *testing.T) {
	e := startProxy(t, nil)
	conn := e.connect(t, "acme")
	ctx := testpg.Context(t)

	// A result row far larger than any proxy buffer, and a query text too.
	big := strings.Repeat("x", 3<<20)
	var n int
	var echoed string
	if err := conn.QueryRow(ctx, "SELECT length($1::text), repeat('y', 5000000)", big).Scan(&n, &echoed); err != nil {
		t.Fatal(err)
	}
	if n != len(big) || len(echoed) != 5000000 {
		t.Fatalf("got %d and %d bytes", n, len(echoed))
	}

	// COPY FROM STDIN and TO STDOUT through the simple protocol, in a
	// transaction that is rolled back.
	tx, err := conn.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback(ctx)
	var in bytes.Buffer
	for i := 0; i < 20000; i++ {
		in.WriteString("7\tcopied row with some padding to make it longer than a buffer\n")
	}
	tag, err := tx.Conn().PgConn().CopyFrom(ctx, &in, "COPY app_owned (id, note) FROM STDIN")
	if err != nil {
		t.Fatal(err)
	}
	if tag.RowsAffected() != 20000 {
		t.Fatalf("copied %d rows", tag.RowsAffected())
	}
	var out bytes.Buffer
	tag, err = tx.Conn().PgConn().CopyTo(ctx, &out, "COPY (SELECT a.org_id FROM items a, app_owned b) TO STDOUT")
	if err != nil {
		t.Fatal(err)
	}
	// Row-Level Security applies to COPY TO: acme's 2 rows times 20000.
	if tag.RowsAffected() != 40000 || strings.Count(out.String(), "acme\n") != 40000 {
		t.Fatalf("COPY TO returned %d rows, not only acme's", tag.RowsAffected())
	}

	// A failing COPY leaves the session and the backend usable.
	_, err = tx.Conn().PgConn().CopyFrom(ctx, strings.NewReader("not-a-number\tnote\n"), "COPY app_owned (id, note) FROM STDIN")
	if err == nil {
		t.Fatal("a malformed COPY succeeded")
	}
	if err := tx.Rollback(ctx); err != nil {
		t.Fatal(err)
	}
	scanVisible(t, conn.QueryRow(ctx, visibleSQL, pgx.QueryExecModeSimpleProtocol)).check(t, "acme")
}
