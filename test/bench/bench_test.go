package main

import (
	"bytes"
	"errors"
	"slices"
	"strings"
	"testing"
)

// pgbenchOutput is what pgbench 15 prints for a select-only run.
const pgbenchOutput = `pgbench (15.18 (Debian 15.18-0+deb12u1))
transaction type: <builtin: select only>
scaling factor: 10
query mode: extended
number of clients: 16
number of threads: 2
maximum number of tries: 1
duration: 10 s
number of transactions actually processed: 312262
number of failed transactions: 0 (0.000%)
latency average = 0.512 ms
initial connection time = 14.095 ms
tps = 31226.123456 (without initial connection time)
`

func TestParseTPSReadsTheRateWithoutConnectionTime(t *testing.T) {
	got, err := parseTPS(pgbenchOutput)
	if err != nil {
		t.Fatal(err)
	}
	if got != 31226.123456 {
		t.Errorf("parseTPS = %v, want 31226.123456", got)
	}
}

func TestParseTPSFailsWhenPgbenchPrintedNoSummary(t *testing.T) {
	out := "pgbench (15.18)\npgbench: error: client 0 aborted in command 1 (SQL) of script 0\n"
	if _, err := parseTPS(out); err == nil {
		t.Error("parseTPS accepted output without a tps line")
	}
}

func TestMedianTakesTheMiddleWithoutReorderingSamples(t *testing.T) {
	for _, tc := range []struct {
		samples []float64
		want    float64
	}{
		{[]float64{5}, 5},
		{[]float64{3, 1, 2}, 2},
		{[]float64{4, 1, 3, 2}, 2.5},
	} {
		before := append([]float64(nil), tc.samples...)
		if got := median(tc.samples); got != tc.want {
			t.Errorf("median(%v) = %v, want %v", tc.samples, got, tc.want)
		}
		if !slices.Equal(before, tc.samples) {
			t.Errorf("median reordered its input: %v became %v", before, tc.samples)
		}
	}
}

func TestReportShowsMediansRatiosAndFailures(t *testing.T) {
	res := newResults()
	res.tps["simple"]["direct"] = []float64{100, 300, 200}
	res.tps["simple"]["pgtenant"] = []float64{150, 150, 150}
	res.tps["simple"]["pgbouncer"] = []float64{100, 100, 100}
	res.tps["extended"]["direct"] = []float64{100}
	res.failed["extended"]["pgtenant"] = errors.New("boom")
	res.tps["extended"]["pgbouncer"] = []float64{100}
	var buf bytes.Buffer
	printReport(&buf, res, []target{{name: "direct"}, {name: "pgtenant"}, {name: "pgbouncer"}})
	out := buf.String()
	for _, want := range []string{"pgtenant/direct", "0.75x", "1.50x", "failed"} {
		if !strings.Contains(out, want) {
			t.Errorf("report lacks %q:\n%s", want, out)
		}
	}
}
