package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
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

// pgbouncerPreparedOutput is what pgbench 15 prints, in part, for -M prepared
// through PgBouncer 1.18 in transaction pooling mode.
const pgbouncerPreparedOutput = `pgbench (15.18 (Debian 15.18-0+deb12u1))
pgbench: error: ERROR:  prepared statement "P_0" already exists
pgbench: error: ERROR:  prepared statement "P_0" already exists
pgbench: error: client 8 script 0 aborted in command 1 query 0: ERROR:  prepared statement "P_0" does not exist
pgbench: error: client 13 script 0 aborted in command 1 query 0: ERROR:  prepared statement "P_0" does not exist
transaction type: <builtin: select only>
number of transactions actually processed: 69318
tps = 13870.976585 (without initial connection time)
pgbench: error: Run was aborted; the above results are incomplete.`

func TestUnsupportedReasonOnlyForPgbouncersPreparedStatementClash(t *testing.T) {
	clash := &pgbenchError{err: errors.New("exit status 2"), output: pgbouncerPreparedOutput}
	// measure wraps runPgbench's error.
	wrapped := fmt.Errorf("pgbench -M prepared against pgbouncer failed: %w\n--- pgbouncer's output ---", clash)
	const abortLine = `pgbench: error: client 8 script 0 aborted in command 1 query 0: ERROR:  prepared statement "P_0" does not exist`
	for _, tc := range []struct {
		name, mode, target string
		err                error
		want               string
	}{
		{"clash", "prepared", "pgbouncer", clash, abortLine},
		{"wrapped clash", "prepared", "pgbouncer", wrapped, abortLine},
		{"no abort line", "prepared", "pgbouncer", &pgbenchError{errors.New("exit status 2"),
			`pgbench: error: ERROR:  prepared statement "P_0" already exists`},
			`pgbench: error: ERROR:  prepared statement "P_0" already exists`},
		{"other failure", "prepared", "pgbouncer", &pgbenchError{errors.New("exit status 2"),
			"pgbench: error: client 0 aborted in command 1 (SQL) of script 0; perhaps the backend died while processing"}, ""},
		{"not pgbench's failure", "prepared", "pgbouncer", errors.New(pgbouncerPreparedOutput), ""},
		{"other mode", "extended", "pgbouncer", clash, ""},
		{"other target", "prepared", "pgtenant", clash, ""},
		{"direct", "prepared", "direct", clash, ""},
		{"no error", "prepared", "pgbouncer", nil, ""},
	} {
		if got := unsupportedReason(tc.mode, tc.target, tc.err); got != tc.want {
			t.Errorf("%s: unsupportedReason(%q, %q) = %q, want %q", tc.name, tc.mode, tc.target, got, tc.want)
		}
	}
}

func TestRotateStartsEachElementFirstOnceACycle(t *testing.T) {
	s := []string{"a", "b", "c"}
	for k, want := range [][]string{{"a", "b", "c"}, {"b", "c", "a"}, {"c", "a", "b"}, {"a", "b", "c"}, {"b", "c", "a"}} {
		got := rotate(s, k)
		if !slices.Equal(got, want) {
			t.Errorf("rotate(%v, %d) = %v, want %v", s, k, got, want)
		}
		got[0] = "x" // a copy: s must not change
	}
	if !slices.Equal(s, []string{"a", "b", "c"}) {
		t.Errorf("rotate changed its input: %v", s)
	}
	if got := rotate([]string(nil), 1); len(got) != 0 {
		t.Errorf("rotate(nil, 1) = %v", got)
	}
}

// fakePgbench is a pgbench stand-in for runRounds. It logs "port mode length"
// per run to $FAKE_PGBENCH_LOG; through port 3 (pgbouncer) -M prepared fails
// like PgBouncer 1.18, in the short check too unless $FAKE_PROBE_PASSES is
// set; through port 2 (pgtenant) -M extended fails otherwise; the rest succeed.
const fakePgbench = `#!/bin/sh
mode= len=
while [ $# -gt 0 ]; do
	case $1 in
	-M) mode=$2; shift ;;
	-T) len=T$2; shift ;;
	-t) len=t$2; shift ;;
	esac
	shift
done
echo "$PGPORT $mode $len" >> "$FAKE_PGBENCH_LOG"
if [ "$PGPORT $mode" = "3 prepared" ] && { [ -z "$FAKE_PROBE_PASSES" ] || [ "${len#T}" != "$len" ]; }; then
	echo 'pgbench: error: ERROR:  prepared statement "P_0" already exists' >&2
	echo 'pgbench: error: client 1 script 0 aborted in command 1 query 0: ERROR:  prepared statement "P_0" does not exist' >&2
	echo 'tps = 5.0 (without initial connection time)'
	echo 'pgbench: error: Run was aborted; the above results are incomplete.' >&2
	exit 2
fi
if [ "$PGPORT $mode" = "2 extended" ]; then
	echo 'pgbench: error: client 0 aborted in command 1 (SQL) of script 0; perhaps the backend died while processing' >&2
	exit 2
fi
echo 'number of transactions actually processed: 1000'
echo "tps = 100$PGPORT.5 (without initial connection time)"
`

func TestRunRoundsRotatesModesAndReportsUnsupportedAsAResult(t *testing.T) {
	dir := t.TempDir()
	pgbench := filepath.Join(dir, "pgbench")
	if err := os.WriteFile(pgbench, []byte(fakePgbench), 0o755); err != nil {
		t.Fatal(err)
	}
	targets := []target{{name: "direct", port: 1}, {name: "pgtenant", port: 2}, {name: "pgbouncer", port: 3}}
	o := options{duration: 1, rounds: 3, clients: 2, jobs: 1}

	for _, probePasses := range []bool{false, true} {
		t.Run(fmt.Sprint("probe passes=", probePasses), func(t *testing.T) {
			logFile := filepath.Join(t.TempDir(), "runs")
			t.Setenv("FAKE_PGBENCH_LOG", logFile)
			if probePasses {
				t.Setenv("FAKE_PROBE_PASSES", "1")
			}
			var out bytes.Buffer
			res, err := runRounds(context.Background(), pgbench, targets, o, &out)

			// Only pgtenant's -M extended is a failure.
			if err == nil || !strings.Contains(err.Error(), "-M extended against pgtenant") || strings.Contains(err.Error(), "prepared") {
				t.Errorf("runRounds error = %v, want the failure of -M extended against pgtenant only", err)
			}
			if strings.Count(out.String(), "FAILED") != 1 {
				t.Errorf("want exactly one FAILED run:\n%s", out.String())
			}
			if got := res.unsupported["prepared"]["pgbouncer"]; !strings.Contains(got, "client 1 script 0 aborted") {
				t.Errorf("unsupported reason = %q, want pgbench's abort line", got)
			}
			if res.failed["prepared"]["pgbouncer"] != nil || len(res.tps["prepared"]["pgbouncer"]) != 0 {
				t.Errorf("pgbouncer's -M prepared counted as failed (%v) or measured (%v)",
					res.failed["prepared"]["pgbouncer"], res.tps["prepared"]["pgbouncer"])
			}
			if !strings.Contains(out.String(), "prepared  pgbouncer  unsupported: ") {
				t.Errorf("output does not report pgbouncer's -M prepared as unsupported:\n%s", out.String())
			}
			if got := res.tps["prepared"]["pgtenant"]; len(got) != 3 {
				t.Errorf("pgtenant -M prepared samples = %v, want 3", got)
			}

			b, err := os.ReadFile(logFile)
			if err != nil {
				t.Fatal(err)
			}
			runs := strings.Split(strings.TrimSpace(string(b)), "\n")
			// Modes and targets take turns going first. A failed or
			// unsupported mode and target is not run again; pgbouncer's
			// -M prepared gets a short check (-t) before its first timed
			// run, which happens only when the check passes.
			bouncerPrepared := []string{"3 prepared t50"}
			if probePasses {
				bouncerPrepared = append(bouncerPrepared, "3 prepared T1")
			}
			var want []string
			want = append(want, "1 simple T1", "2 simple T1", "3 simple T1",
				"1 extended T1", "2 extended T1", "3 extended T1",
				"1 prepared T1", "2 prepared T1")
			want = append(want, bouncerPrepared...)
			want = append(want, "3 extended T1", "1 extended T1", // round 2: pgtenant first, extended first
				"2 prepared T1", "1 prepared T1",
				"2 simple T1", "3 simple T1", "1 simple T1",
				"1 prepared T1", "2 prepared T1", // round 3: pgbouncer first, prepared first
				"3 simple T1", "1 simple T1", "2 simple T1",
				"3 extended T1", "1 extended T1")
			if !slices.Equal(runs, want) {
				t.Errorf("runs:\n%s\nwant:\n%s", strings.Join(runs, "\n"), strings.Join(want, "\n"))
			}
		})
	}
}

func TestReportShowsMediansRatiosFailuresAndUnsupported(t *testing.T) {
	res := newResults()
	res.tps["simple"]["direct"] = []float64{100, 300, 200}
	res.tps["simple"]["pgtenant"] = []float64{150, 150, 150}
	res.tps["simple"]["pgbouncer"] = []float64{100, 100, 100}
	res.tps["extended"]["direct"] = []float64{100}
	res.failed["extended"]["pgtenant"] = errors.New("boom")
	res.tps["extended"]["pgbouncer"] = []float64{100}
	res.tps["prepared"]["direct"] = []float64{400}
	res.tps["prepared"]["pgtenant"] = []float64{100}
	res.cpu["prepared"]["pgtenant"] = []float64{12.5}
	res.unsupported["prepared"]["pgbouncer"] = `pgbench: error: client 8 script 0 aborted in command 1 query 0: ERROR:  prepared statement "P_0" does not exist`
	var buf bytes.Buffer
	printReport(&buf, res, []target{{name: "direct"}, {name: "pgtenant"}, {name: "pgbouncer"}})
	out := buf.String()
	for _, want := range []string{"pgtenant/direct", "0.75x", "1.50x", "failed",
		`pgbouncer cannot run -M prepared: pgbench: error: client 8 script 0 aborted`,
		"prepared  pgtenant 12.5   pgbouncer unsupported",
		"prepared  pgbouncer  unsupported"} {
		if !strings.Contains(out, want) {
			t.Errorf("report lacks %q:\n%s", want, out)
		}
	}
	var row []string
	for _, line := range strings.Split(out, "\n") {
		if f := strings.Fields(line); len(f) > 0 && f[0] == "prepared" {
			row = f
			break
		}
	}
	if want := []string{"prepared", "400", "100", "unsupported", "0.25x", "-"}; !slices.Equal(row, want) {
		t.Errorf("prepared row = %q, want %q:\n%s", row, want, out)
	}
}
