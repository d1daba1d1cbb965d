package poolmgr_test

import (
	"context"
	"runtime"
	"testing"

	"github.com/pgtenant/pgtenant/poolmgr"
)

// BenchmarkAcquireRelease measures the per-transaction cost: one Acquire of
// an idle conn and its Release, on one tenant's pool.
func BenchmarkAcquireRelease(b *testing.B) {
	ctx := context.Background()
	b.Run("serial", func(b *testing.B) {
		m, _ := newManager(b, poolmgr.Config{})
		mustAcquire(b, m, acme).Release()
		b.ReportAllocs()
		for b.Loop() {
			l, err := m.Acquire(ctx, acme)
			if err != nil {
				b.Fatal(err)
			}
			l.Release()
		}
	})
	b.Run("parallel16", func(b *testing.B) {
		m, _ := newManager(b, poolmgr.Config{})
		b.ReportAllocs()
		// RunParallel starts parallelism*GOMAXPROCS goroutines.
		procs := runtime.GOMAXPROCS(0)
		b.SetParallelism((16 + procs - 1) / procs)
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				l, err := m.Acquire(ctx, acme)
				if err != nil {
					b.Error(err)
					return
				}
				l.Release()
			}
		})
	})
}
