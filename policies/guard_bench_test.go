package policies

import (
	"strconv"
	"testing"
)

// A statement as an ORM writes it: quoted identifiers send it to the parser.
const benchORMStatement = `SELECT "orders"."id", "orders"."total", "customers"."name" FROM "orders" ` +
	`JOIN "customers" ON "customers"."id" = "orders"."customer_id" ` +
	`WHERE "orders"."org_id" = $1 AND "orders"."created_at" > $2 ORDER BY "orders"."created_at" DESC LIMIT 50`

// The same statement written by hand: the pre-check lets it through.
const benchPlainStatement = `SELECT o.id, o.total, c.name FROM orders o JOIN customers c ON c.id = o.customer_id ` +
	`WHERE o.org_id = $1 AND o.created_at > $2 ORDER BY o.created_at DESC LIMIT 50`

func BenchmarkGuardCached(b *testing.B) {
	g := newTestGuard(b, GuardConfig{})
	g.Check(benchORMStatement)
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if g.Check(benchORMStatement).Blocked() {
				b.Fatal("blocked")
			}
		}
	})
}

func BenchmarkGuardFirstParse(b *testing.B) {
	g := newTestGuard(b, GuardConfig{CacheSize: -1})
	b.ReportAllocs()
	for b.Loop() {
		if g.Check(benchORMStatement).Blocked() {
			b.Fatal("blocked")
		}
	}
}

func BenchmarkGuardPrecheck(b *testing.B) {
	g := newTestGuard(b, GuardConfig{})
	b.ReportAllocs()
	for b.Loop() {
		if g.Check(benchPlainStatement).Blocked() {
			b.Fatal("blocked")
		}
	}
}

// BenchmarkGuardCacheChurn checks a stream of distinct texts, each parsed
// once, against a cache smaller than the stream.
func BenchmarkGuardCacheChurn(b *testing.B) {
	g := newTestGuard(b, GuardConfig{CacheSize: 1000})
	texts := make([]string, 2000)
	for i := range texts {
		texts[i] = benchORMStatement + " OFFSET " + strconv.Itoa(i)
	}
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		g.Check(texts[i%len(texts)])
		i++
	}
}
