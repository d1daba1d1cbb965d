package tenants

import (
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/pgtenant/pgtenant/test/testpg"
)

// countRows returns the rows of each org in table, as "org:n" in org order.
func countRows(t *testing.T, conn *pgx.Conn, table string) string {
	t.Helper()
	var s string
	err := conn.QueryRow(testpg.Context(t),
		"SELECT coalesce(string_agg(org_id || ':' || n, ' ' ORDER BY org_id), '') FROM (SELECT org_id, count(*) n FROM "+table+" GROUP BY org_id) c").Scan(&s)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestPurgeDeletesOnlyThatOrgsRowsInBatches(t *testing.T) {
	t.Parallel()
	d := newControlDB(t)
	su := d.superuser()
	// A plain table and a partitioned one, whose partitions repeat ctids.
	exec(t, su, `
		CREATE TABLE items (org_id text NOT NULL, v int);
		INSERT INTO items SELECT o, i FROM unnest(ARRAY['a', 'b']) o, generate_series(1, 25) i;
		CREATE TABLE events (org_id text NOT NULL, id int NOT NULL) PARTITION BY HASH (id);
		CREATE TABLE events_0 PARTITION OF events FOR VALUES WITH (MODULUS 2, REMAINDER 0);
		CREATE TABLE events_1 PARTITION OF events FOR VALUES WITH (MODULUS 2, REMAINDER 1);
		INSERT INTO events SELECT o, i FROM unnest(ARRAY['a', 'b', 'c']) o, generate_series(1, 30) i;`)
	var calls []string
	sums := map[string]int64{}
	progress := func(table string, deleted int64) {
		calls = append(calls, fmt.Sprintf("%s:%d", table, deleted))
		sums[table] += deleted
		if deleted > 7 {
			t.Errorf("a batch of %s deleted %d rows, more than the batch size 7", table, deleted)
		}
	}
	tables := []string{pgx.Identifier{"public", "items"}.Sanitize(), pgx.Identifier{"public", "events"}.Sanitize()}
	if err := Purge(testpg.Context(t), su, "a", tables, "org_id", 7, progress); err != nil {
		t.Fatal(err)
	}
	if got := countRows(t, su, "items"); got != "b:25" {
		t.Errorf("items after the purge: %s, want b:25", got)
	}
	if got := countRows(t, su, "events"); got != "b:30 c:30" {
		t.Errorf("events after the purge: %s, want b:30 c:30", got)
	}
	got := strings.Join(calls, " ")
	if !strings.HasPrefix(got, `"public"."items":7 "public"."items":7 "public"."items":7 "public"."items":4 "public"."events":`) || sums[tables[0]] != 25 || sums[tables[1]] != 30 {
		t.Errorf("progress calls: %s; want batches of 7 adding up to 25 for items and 30 for events", got)
	}
	// Again: nothing left, one call per table or partition.
	calls = nil
	if err := Purge(testpg.Context(t), su, "a", tables, "org_id", 0, progress); err != nil || strings.Join(calls, " ") != `"public"."items":0 "public"."events":0 "public"."events":0` {
		t.Errorf("second purge: %v, calls %v", err, calls)
	}
}

func TestPurgeRefusesWhatWouldDeleteTheWrongRowsOrSilentlyNone(t *testing.T) {
	t.Parallel()
	d := newControlDB(t)
	owner := d.connect(d.owner)
	// The owner is held to the policy, which hides every row without a
	// tenant context: a purge as the owner must fail, not report success.
	exec(t, owner, `
		CREATE TABLE items (org_id text NOT NULL, v int);
		INSERT INTO items SELECT 'a', i FROM generate_series(1, 5) i;
		ALTER TABLE items ENABLE ROW LEVEL SECURITY;
		ALTER TABLE items FORCE ROW LEVEL SECURITY;
		CREATE POLICY tenant_isolation ON items USING (org_id = tenancy.current_org());`)
	ctx := testpg.Context(t)
	err := Purge(ctx, owner, "a", []string{`"public"."items"`}, "org_id", 2, nil)
	if err == nil || !strings.Contains(err.Error(), "BYPASSRLS") {
		t.Errorf("purge under forced RLS: err = %v, want a refusal naming BYPASSRLS", err)
	}
	su := d.superuser()
	if got := countRows(t, su, "items"); got != "a:5" {
		t.Errorf("items after the refused purge: %s", got)
	}
	for _, tc := range []struct {
		name   string
		tables []string
		col    string
		batch  int
	}{
		{"missing table", []string{`"public"."items"`, `"public"."nope"`}, "org_id", 2},
		{"no org column", []string{`"public"."items"`}, "", 2},
		{"negative batch", []string{`"public"."items"`}, "org_id", -1},
	} {
		if err := Purge(ctx, su, "a", tc.tables, tc.col, tc.batch, nil); !errors.Is(err, ErrInvalid) {
			t.Errorf("%s: err = %v, want ErrInvalid", tc.name, err)
		}
	}
	if got := countRows(t, su, "items"); got != "a:5" {
		t.Errorf("a refused purge deleted rows: %s", got)
	}
}
