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

// modes are the pgbench query protocols measured (pgbench -M).
var modes = []string{"simple", "extended", "prepared"}

// runSlack is how long a pgbench run may take beyond -T (connecting, the
// last transactions) before it counts as hung and is killed.
const runSlack = 30 * time.Second

// probeTransactions is how many transactions each client runs in the short
// check that precedes the first timed run of a mode and target that may be
// unsupported (see mayBeUnsupported): finding out must not take a whole -T.
const probeTransactions = 50

// results holds the tps of every successful run, by mode and target name, in
// run order, the first failure of each mode and target, and the modes a
// target does not support.
type results struct {
	tps    map[string]map[string][]float64
	failed map[string]map[string]error
	// unsupported says, by mode and target name, why the target cannot run
	// the mode at all (pgbench's line that shows it): a result, not a failure.
	unsupported map[string]map[string]string
	// cpu is the proxy process's CPU time per transaction, in microseconds,
	// of every successful run through a proxy.
	cpu map[string]map[string][]float64
}

func newResults() *results {
	r := &results{tps: map[string]map[string][]float64{}, failed: map[string]map[string]error{},
		unsupported: map[string]map[string]string{}, cpu: map[string]map[string][]float64{}}
	for _, m := range modes {
		r.tps[m] = map[string][]float64{}
		r.failed[m] = map[string]error{}
		r.unsupported[m] = map[string]string{}
		r.cpu[m] = map[string][]float64{}
	}
	return r
}

// rotate returns a copy of s that starts at s[k%len(s)] and wraps around.
func rotate[T any](s []T, k int) []T {
	if len(s) == 0 {
		return nil
	}
	k %= len(s)
	return append(append(make([]T, 0, len(s)), s[k:]...), s[:k]...)
}

// runRounds runs every mode against every target once per round. Targets
// take turns going first, so none is always measured right after the same
// neighbour, and so do the modes. A mode and target whose run fails is
// reported at once, with the proxy's output, and not run again; the others go
// on, and the error at the end lists the failures. A target that turns out
// not to support a mode (see unsupportedReason) is reported as such, not as
// a failure, and not run again either.
func runRounds(ctx context.Context, pgbench string, targets []target, o options, out io.Writer) (*results, error) {
	res := newResults()
	var failed []string
	probed := map[string]bool{}
	for round := range o.rounds {
		order := rotate(targets, round)
		for _, mode := range rotate(modes, round) {
			for _, t := range order {
				if ctx.Err() != nil {
					return res, ctx.Err()
				}
				if res.failed[mode][t.name] != nil || res.unsupported[mode][t.name] != "" {
					continue
				}
				prefix := fmt.Sprintf("round %d/%d  %-8s  %-9s", round+1, o.rounds, mode, t.name)
				// record notes a failed run; it reports whether the run failed.
				record := func(err error) bool {
					if err == nil {
						return false
					}
					if reason := unsupportedReason(mode, t.name, err); reason != "" {
						res.unsupported[mode][t.name] = reason
						fmt.Fprintf(out, "%s  unsupported: %s\n", prefix, reason)
						return true
					}
					res.failed[mode][t.name] = err
					failed = append(failed, fmt.Sprintf("-M %s against %s", mode, t.name))
					fmt.Fprintf(out, "%s  FAILED\n%v\n", prefix, err)
					return true
				}
				if key := mode + " " + t.name; mayBeUnsupported(mode, t.name) && !probed[key] {
					probed[key] = true
					_, _, err := measure(ctx, pgbench, t, mode, o, probeTransactions)
					if ctx.Err() != nil {
						return res, ctx.Err()
					}
					if record(err) {
						continue
					}
				}
				tps, cpu, err := measure(ctx, pgbench, t, mode, o, 0)
				if ctx.Err() != nil {
					return res, ctx.Err()
				}
				if record(err) {
					continue
				}
				res.tps[mode][t.name] = append(res.tps[mode][t.name], tps)
				if cpu > 0 {
					res.cpu[mode][t.name] = append(res.cpu[mode][t.name], cpu)
				}
				fmt.Fprintf(out, "%s  %10.0f tps\n", prefix, tps)
			}
		}
	}
	if len(failed) > 0 {
		return res, fmt.Errorf("pgbench failed (%s); the output is above", strings.Join(failed, ", "))
	}
	return res, nil
}

// mayBeUnsupported reports whether target name may be unable to run mode at
// all: PgBouncer in transaction pooling mode sends each transaction to
// whichever server connection is free, where the statement the client
// prepared (-M prepared) is missing or another client's of the same name is in
// the way, unless it is 1.21 or later with max_prepared_statements set; the
// Debian 12 package is 1.18.
func mayBeUnsupported(mode, name string) bool {
	return mode == "prepared" && name == "pgbouncer"
}

// preparedStatementClash is the error PostgreSQL returns when a pooler mixes
// up the clients' prepared statements, as pgbench prints it.
var preparedStatementClash = regexp.MustCompile(`prepared statement "[^"]*" (?:already exists|does not exist)`)

// unsupportedReason returns pgbench's line saying why target name cannot run
// mode at all when err, from running mode against it, shows that; otherwise
// "". Only what mayBeUnsupported expects qualifies: any other failure, a hung
// run included, is a failure. A line that says a client aborted is preferred
// to pgbench's other error lines.
func unsupportedReason(mode, name string, err error) string {
	var pe *pgbenchError
	if !mayBeUnsupported(mode, name) || !errors.As(err, &pe) {
		return ""
	}
	var first string
	for _, line := range strings.Split(pe.output, "\n") {
		if !preparedStatementClash.MatchString(line) {
			continue
		}
		line = strings.TrimSpace(line)
		if strings.Contains(line, " aborted ") {
			return line
		}
		if first == "" {
			first = line
		}
	}
	return first
}

// measure runs pgbench against t once, for o.duration seconds or, when
// transactions is positive, for that many transactions per client. When t
// goes through a proxy, a failure carries the proxy's output during the run,
// and a proxy that has exited is not run against.
func measure(ctx context.Context, pgbench string, t target, mode string, o options, transactions int) (tps, cpuPerTx float64, err error) {
	if t.via == nil {
		tps, _, err := runPgbench(ctx, pgbench, t, mode, o, transactions)
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
	tps, txs, err := runPgbench(ctx, pgbench, t, mode, o, transactions)
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

// pgbenchError is a pgbench run that ended in an error, with its output.
type pgbenchError struct {
	err    error
	output string
}

func (e *pgbenchError) Error() string {
	return fmt.Sprintf("%v; pgbench's output:\n%s", e.err, e.output)
}

func (e *pgbenchError) Unwrap() error { return e.err }

// runPgbench runs the select-only workload against t once, for o.duration
// seconds or, when transactions is positive, for that many transactions per
// client, and returns its tps, excluding connection time, and the number of
// transactions. Any error, aborted client or missing result is a failure: a
// *pgbenchError, unless pgbench hung and was killed.
func runPgbench(ctx context.Context, pgbench string, t target, mode string, o options, transactions int) (float64, int64, error) {
	length, limit := []string{"-T", strconv.Itoa(o.duration)}, time.Duration(o.duration)*time.Second+runSlack
	if transactions > 0 {
		length, limit = []string{"-t", strconv.Itoa(transactions)}, runSlack
	}
	ctx, cancel := context.WithTimeout(ctx, limit)
	defer cancel()
	args := append([]string{"-n", "-S", "-c", strconv.Itoa(o.clients), "-j", strconv.Itoa(o.jobs)}, length...)
	cmd := exec.CommandContext(ctx, pgbench, append(args, "-M", mode, benchDatabase)...)
	cmd.Env = t.env()
	detach(cmd)
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	cmd.WaitDelay = 5 * time.Second
	b, err := cmd.CombinedOutput()
	output := strings.TrimSpace(string(b))
	if errors.Is(ctx.Err(), context.DeadlineExceeded) {
		return 0, 0, fmt.Errorf("pgbench did not finish within %s and was killed; its output:\n%s", limit, output)
	}
	if err != nil {
		return 0, 0, &pgbenchError{err: err, output: output}
	}
	tps, err := parseTPS(output)
	if err != nil {
		return 0, 0, &pgbenchError{err: err, output: output}
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
