package proxy

import (
	"fmt"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/prometheus/client_golang/prometheus"
)

// tenantSeries gathers srv's metrics and returns the tenant label values of
// family name.
func tenantSeries(t *testing.T, srv *Server, name string) map[string]float64 {
	t.Helper()
	reg := prometheus.NewRegistry()
	reg.MustRegister(srv.Collector())
	families, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]float64{}
	for _, f := range families {
		if f.GetName() != name {
			continue
		}
		for _, m := range f.Metric {
			for _, l := range m.Label {
				if l.GetName() == "tenant" {
					out[l.GetValue()] = m.GetCounter().GetValue()
				}
			}
		}
	}
	return out
}

// With 1,000 tenants, the tenant label takes at most N+1 values under top:N:
// the N busiest and one for the rest, which adds up to the same total.
func TestTenantLabelsStayWithinTheirBound(t *testing.T) {
	const tenants = 1000
	for _, tc := range []struct {
		labels int
		want   int // label values
	}{{-1, tenants}, {0, 1}, {20, 21}} {
		t.Run(fmt.Sprint(tc.labels), func(t *testing.T) {
			srv, err := New(Config{Backend: &pgconn.Config{}, Setting: "app.current_org", TenantLabels: tc.labels}, nil)
			if err != nil {
				t.Fatal(err)
			}
			defer srv.Close()
			var total float64
			for i := range tenants {
				ts := srv.metrics.tenant(fmt.Sprintf("org%04d", i))
				ts.transactions.Add(uint64(i))
				ts.wait.observe(time.Duration(i) * time.Millisecond)
				total += float64(i)
			}
			series := tenantSeries(t, srv, "pgtenant_transactions_total")
			if len(series) != tc.want {
				t.Fatalf("%d tenant label values, want %d", len(series), tc.want)
			}
			var sum float64
			for _, v := range series {
				sum += v
			}
			if sum != total {
				t.Fatalf("the series add up to %v, want %v", sum, total)
			}
			if tc.labels == 20 {
				for i := tenants - 20; i < tenants; i++ {
					if _, ok := series[fmt.Sprintf("org%04d", i)]; !ok {
						t.Fatalf("org%04d, among the 20 busiest, lost its label", i)
					}
				}
			}
		})
	}
}
