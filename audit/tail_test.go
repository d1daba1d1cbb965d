package audit

import (
	"context"
	"slices"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
)

func TestTailFiltersByOrgReasonAndTimeNewestFirst(t *testing.T) {
	t.Parallel()
	db := createdControlDB(t)
	l := startLog(t, Config{DSN: db.dsn, FlushInterval: time.Hour})
	base := time.Date(2025, 6, 1, 12, 0, 0, 0, time.UTC)
	for i, ev := range []Event{
		{Org: "acme", Reason: ReasonBlockedStatement, Detail: "a0"},
		{Org: "globex", Reason: ReasonBlockedStatement, Detail: "g1"},
		{Org: "acme", Reason: ReasonRLSViolation, Detail: "a2"},
		{Org: "acme", Reason: ReasonBlockedStatement, Detail: "a3"},
		{Org: "globex", Reason: ReasonAuthFailed, Detail: "g4"},
	} {
		ev.Time = base.Add(time.Duration(i) * time.Minute)
		l.Record(ev)
	}
	l.close(t)
	conn := db.connect()
	ctx := context.Background()

	for _, tc := range []struct {
		name   string
		filter TailFilter
		want   []string
	}{
		{"everything, newest first", TailFilter{}, []string{"g4", "a3", "a2", "g1", "a0"}},
		{"one org", TailFilter{Org: "acme"}, []string{"a3", "a2", "a0"}},
		{"one reason", TailFilter{Reason: ReasonBlockedStatement}, []string{"a3", "g1", "a0"}},
		{"org and reason", TailFilter{Org: "acme", Reason: ReasonBlockedStatement}, []string{"a3", "a0"}},
		{"since", TailFilter{Since: base.Add(2 * time.Minute)}, []string{"g4", "a3", "a2"}},
		{"limit", TailFilter{Limit: 2}, []string{"g4", "a3"}},
		{"nothing matches", TailFilter{Org: "initech"}, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := Tail(ctx, conn, tc.filter)
			if err != nil {
				t.Fatal(err)
			}
			var details []string
			for _, e := range got {
				details = append(details, e.Detail)
			}
			if !slices.Equal(details, tc.want) {
				t.Fatalf("got %v, want %v", details, tc.want)
			}
		})
	}

	all, err := Tail(ctx, conn, TailFilter{})
	if err != nil {
		t.Fatal(err)
	}
	// Paging through the events stored after a given one, as --follow does.
	var paged []string
	for after := all[4].ID; ; {
		page, err := Tail(ctx, conn, TailFilter{AfterID: after, Limit: 2, OldestFirst: true})
		if err != nil {
			t.Fatal(err)
		}
		if len(page) == 0 {
			break
		}
		for _, e := range page {
			paged = append(paged, e.Detail)
		}
		after = page[len(page)-1].ID
	}
	if want := []string{"g1", "a2", "a3", "g4"}; !slices.Equal(paged, want) {
		t.Fatalf("paging after a0 gave %v, want %v", paged, want)
	}
	if _, err := Tail(ctx, conn, TailFilter{Limit: -1}); err == nil {
		t.Fatal("a negative limit was accepted")
	}
}

func TestTailFiltersBySubjectAndUntilAndPagesBackByIDThroughAPool(t *testing.T) {
	t.Parallel()
	db := createdControlDB(t)
	l := startLog(t, Config{DSN: db.dsn, FlushInterval: time.Hour})
	base := time.Date(2025, 6, 1, 12, 0, 0, 0, time.UTC)
	for i, ev := range []Event{
		{Org: "acme", Subject: "alice", Reason: ReasonBlockedStatement, Detail: "e0"},
		{Org: "acme", Subject: "bob", Reason: ReasonBlockedStatement, Detail: "e1"},
		{Org: "acme", Subject: "alice", Reason: ReasonRLSViolation, Detail: "e2"},
		{Org: "globex", Subject: "alice", Reason: ReasonAuthFailed, Detail: "e3"},
		{Org: "acme", Subject: "bob", Reason: ReasonBlockedStatement, Detail: "e4"},
	} {
		ev.Time = base.Add(time.Duration(i) * time.Minute)
		l.Record(ev)
	}
	// Stored last but happened first, as an event replayed from the spool.
	l.Record(Event{Org: "acme", Subject: "carol", Reason: ReasonAuthFailed, Detail: "replayed", Time: base.Add(-time.Hour)})
	l.close(t)
	ctx := context.Background()
	pool, err := pgxpool.New(ctx, db.dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()

	details := func(events []StoredEvent) []string {
		var d []string
		for _, e := range events {
			d = append(d, e.Detail)
		}
		return d
	}
	for _, tc := range []struct {
		name   string
		filter TailFilter
		want   []string
	}{
		{"one subject", TailFilter{Subject: "alice"}, []string{"e3", "e2", "e0"}},
		{"subject and org", TailFilter{Subject: "alice", Org: "acme"}, []string{"e2", "e0"}},
		{"until is exclusive", TailFilter{Until: base.Add(2 * time.Minute)}, []string{"e1", "e0", "replayed"}},
		{"since and until", TailFilter{Since: base.Add(time.Minute), Until: base.Add(3 * time.Minute)}, []string{"e2", "e1"}},
		{"by id, newest stored first", TailFilter{ByID: true}, []string{"replayed", "e4", "e3", "e2", "e1", "e0"}},
	} {
		got, err := Tail(ctx, pool, tc.filter)
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		if !slices.Equal(details(got), tc.want) {
			t.Errorf("%s: got %v, want %v", tc.name, details(got), tc.want)
		}
	}

	// Paging back two at a time visits every event once, the replayed one
	// included.
	var paged []string
	var before int64
	for range 10 {
		page, err := Tail(ctx, pool, TailFilter{ByID: true, BeforeID: before, Limit: 2})
		if err != nil {
			t.Fatal(err)
		}
		if len(page) == 0 {
			break
		}
		paged = append(paged, details(page)...)
		before = page[len(page)-1].ID
	}
	if want := []string{"replayed", "e4", "e3", "e2", "e1", "e0"}; !slices.Equal(paged, want) {
		t.Fatalf("paging back by id gave %v, want %v", paged, want)
	}
	if _, err := Tail(ctx, pool, TailFilter{BeforeID: -1}); err == nil {
		t.Fatal("a negative before id was accepted")
	}
}
