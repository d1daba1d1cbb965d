package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// modes are the pgbench query protocols measured (pgbench -M). "prepared"
// is left out: PgBouncer in transaction mode does not support it here.
var modes = []string{"simple", "extended"}

// runSlack is how long a pgbench run may take beyond -T (connecting, the
// last transactions) before it counts as hung and is killed.
const runSlack = 30 * time.Second

// results holds the tps of every successful run, by mode and target name, in
// run order, and the first failure of each mode and target.
type results struct {
	tps    map[string]map[string][]float64
	failed map[string]map[string]error
	// cpu is the proxy process's CPU time per transaction, in microseconds,
	// of every successful run through a proxy.
	cpu map[string]map[string][]float64
}

func newResults() *results {
	r := &results{tps: map[string]map[string][]float64{}, failed: map[string]map[string]error{},
		cpu: map[string]map[string][]float64{}}
	for _, m := range modes {
		r.tps[m] = map[string][]float64{}
		r.failed[m] = map[string]error{}
		r.cpu[m] = map[string][]float64{}
	}
	return r
}

// runRounds runs every mode against every target once per round. Targets
// take turns going first, so none is always measured right after the same
// neighbour, and the order of the modes alternates. A mode and target whose
// run fails is reported at once, with the proxy's output, and not run again;
// the others go on, and the error at the end lists the failures.
func runRounds(ctx context.Context, pgbench string, targets []target, o options, out io.Writer) (*results, error) {
	res := newResults()
	var failed []string
	for round := range o.rounds {
		order := append(append([]target(nil), targets[round%len(targets):]...), targets[:round%len(targets)]...)
		roundModes := modes
		if round%2 == 1 {
			roundModes = []string{modes[1], modes[0]}
		}
		for _, mode := range roundModes {
			for _, t := range order {
				if ctx.Err() != nil {
					return res, ctx.Err()
				}
				if res.failed[mode][t.name] != nil {
					continue
				}
				tps, cpu, err := measure(ctx, pgbench, t, mode, o)
				if ctx.Err() != nil {
					return res, ctx.Err()
				}
				if err != nil {
					res.failed[mode][t.name] = err
					failed = append(failed, fmt.Sprintf("-M %s against %s", mode, t.name))
					fmt.Fprintf(out, "round %d/%d  %-8s  %-9s  FAILED\n%v\n", round+1, o.rounds, mode, t.name, err)
					continue
				}
				res.tps[mode][t.name] = append(res.tps[mode][t.name], tps)
				if cpu > 0 {
					res.cpu[mode][t.name] = append(res.cpu[mode][t.name], cpu)
				}
				fmt.Fprintf(out, "round %d/%d  %-8s  %-9s  %10.0f tps\n", round+1, o.rounds, mode, t.name, tps)
			}
		}
	}
	if len(failed) > 0 {
		return res, fmt.Errorf("pgbench failed (%s); the output is above", strings.Join(failed, ", "))
	}
	return res, nil
}

// measure runs pgbench against t once. When t goes through a proxy, a
// failure carries the proxy's output during the run, and a proxy that has
// exited is not run against.
func measure(ctx context.Context, pgbench string, t target, mode string, o options) (tps, cpuPerTx float64, err error) {
	if t.via == nil {
		tps, _, err := runPgbench(ctx, pgbench, t, mode, o)
		if err != nil {
			return 0, 0, fmt.Errorf("pgbench -M %s against %s failed: %w", mode, t.name, err)
		}
		return tps, 0, nil
	}
	if t.via.exited() {
		return 0, 0, fmt.Errorf("%s has exited; pgbench -M %s not run against it", t.name, mode)
	}
	offset := t.via.logSize()
	cpu0 := processCPU(t.via.pid)
	tps, txs, err := runPgbench(ctx, pgbench, t, mode, o)
	if err != nil {
		return 0, 0, fmt.Errorf("pgbench -M %s against %s failed: %w\n--- %s's output during that run ---\n%s\n---",
			mode, t.name, err, t.name, t.via.logSince(offset))
	}
	if cpu := processCPU(t.via.pid) - cpu0; cpu > 0 && txs > 0 {
		cpuPerTx = float64(cpu.Microseconds()) / float64(txs)
	}
	return tps, cpuPerTx, nil
}

// processCPU returns the user plus system CPU time pid has used, or 0 when
// /proc does not tell.
func processCPU(pid int) time.Duration {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	// Fields after the command name, which is in parentheses and may hold spaces.
	i := strings.LastIndexByte(string(b), ')')
	if i < 0 {
		return 0
	}
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 13 {
		return 0
	}
	utime, _ := strconv.ParseInt(f[11], 10, 64)
	stime, _ := strconv.ParseInt(f[12], 10, 64)
	const clockTicks = 100 // USER_HZ on Linux
	return time.Duration(utime+stime) * time.Second / clockTicks
}

// runPgbench runs the select-only workload against t once and returns its
// tps, excluding connection time, and the number of transactions. Any error,
// aborted client or missing result is a failure that carries pgbench's output.
func runPgbench(ctx context.Context, pgbench string, t target, mode string, o options) (float64, int64, error) {
	ctx, cancel := context.WithTimeout(ctx, time.Duration(o.duration)*time.Second+runSlack)
	defer cancel()
	cmd := exec.CommandContext(ctx, pgbench, "-n", "-S",
		"-c", strconv.Itoa(o.clients), "-j", strconv.Itoa(o.jobs),
		"-T", strconv.Itoa(o.duration), "-M", mode, benchDatabase)
	cmd.Env = t.env()
	detach(cmd)
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	cmd.WaitDelay = 5 * time.Second
	b, err := cmd.CombinedOutput()
	output := strings.TrimSpace(string(b))
	if errors.Is(ctx.Err(), context.DeadlineExceeded) {
		return 0, 0, fmt.Errorf("pgbench did not finish within %s of its -T and was killed; its output:\n%s",
			runSlack, output)
	}
	if err != nil {
		return 0, 0, fmt.Errorf("%w; pgbench's output:\n%s", err, output)
	}
	tps, err := parseTPS(output)
	if err != nil {
		return 0, 0, fmt.Errorf("%w; pgbench's output:\n%s", err, output)
	}
	var txs int64
	if m := txLine.FindStringSubmatch(output); m != nil {
		txs, _ = strconv.ParseInt(m[1], 10, 64)
	}
	return tps, txs, nil
}

// tpsLine is pgbench's summary line (PostgreSQL 14 and later).
var tpsLine = regexp.MustCompile(`(?m)^tps = ([0-9]+(?:\.[0-9]+)?) \(without initial connection time\)`)

// txLine is pgbench's count of completed transactions.
var txLine = regexp.MustCompile(`(?m)^number of transactions actually processed: ([0-9]+)`)

// parseTPS returns the throughput from pgbench's output.
func parseTPS(output string) (float64, error) {
	m := tpsLine.FindStringSubmatch(output)
	if m == nil {
		return 0, errors.New(`no "tps = N (without initial connection time)" line`)
	}
	return strconv.ParseFloat(m[1], 64)
}
