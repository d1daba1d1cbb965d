package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/pgtenant/pgtenant/config"
	"github.com/pgtenant/pgtenant/internal/pgcluster"
	"github.com/pgtenant/pgtenant/policies"
)

// The RLS overhead workload (issue 5, item 5): a tenant table of rlsTenants
// x rlsRowsPerTenant rows, queried by primary key and by a short range scan,
// (a) directly as a BYPASSRLS role that writes WHERE org_id = ... itself and
// (b) through pgtenant as the application role, with Row-Level Security on
// org_id = (SELECT tenancy.current_org()) and the signed context. A third
// side, (c), runs (a)'s queries through pgtenant on a copy of the table
// without RLS: (c)/(a) is the proxy's share of the cost, (b)/(c) the
// policy's (verifying the signed context once per statement).
const (
	rlsTenants       = 1000
	rlsRowsPerTenant = 1000
	rlsTable         = "tenant_items"
	// rlsPlainTable is a copy of rlsTable without RLS, for side (c).
	rlsPlainTable = "tenant_items_plain"
	// rlsBypassRole is the direct target's role: BYPASSRLS, so the policy is
	// not applied and the query's own org filter is all there is.
	rlsBypassRole = "bench_bypass"
	// rlsMode is the query protocol of both targets: prepared statements,
	// which is what pgx and most drivers use for repeated queries.
	rlsMode = "prepared"
	// rlsRangeRows is how many rows the range scan returns.
	rlsRangeRows = 10
)

// rlsSetupSQL creates and fills the tenant table. Tenant k (1..rlsTenants)
// owns the ids n*rlsTenants + k: the tenants' rows are interleaved in the
// heap as if they had arrived mixed, so a tenant's range scan touches as many
// pages as it returns rows. org_id is text, what tenancy.current_org()
// returns; tenant ids are the decimal numbers.
var rlsSetupSQL = fmt.Sprintf(`
CREATE TABLE %[1]s (
	org_id text NOT NULL,
	id bigint NOT NULL,
	amount integer NOT NULL,
	note text NOT NULL,
	PRIMARY KEY (org_id, id)
);
INSERT INTO %[1]s
	SELECT ((g - 1) %% %[2]d + 1)::text, g, (g::bigint * 7919 %% 10000)::integer, 'item ' || g
	FROM generate_series(1, %[2]d * %[3]d) AS g;
ALTER TABLE %[1]s ENABLE ROW LEVEL SECURITY;
ALTER TABLE %[1]s FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON %[1]s
	USING (org_id = (SELECT tenancy.current_org()))
	WITH CHECK (org_id = (SELECT tenancy.current_org()));
CREATE TABLE %[4]s (LIKE %[1]s INCLUDING ALL);
INSERT INTO %[4]s SELECT * FROM %[1]s;
`, rlsTable, rlsTenants, rlsRowsPerTenant, rlsPlainTable)

// rlsWarmSQL runs after rlsSetupSQL, each statement on its own: VACUUM
// cannot run in the implicit transaction of several statements.
var rlsWarmSQL = []string{
	"VACUUM ANALYZE " + rlsTable,
	"VACUUM ANALYZE " + rlsPlainTable,
	"SELECT pg_prewarm('" + rlsTable + "'), pg_prewarm('" + rlsTable + "_pkey')",
	"SELECT pg_prewarm('" + rlsPlainTable + "'), pg_prewarm('" + rlsPlainTable + "_pkey')",
}

// rlsScript is one pgbench custom script in its form for each side, in
// rlsTargetNames' order. All draw a row of the client's tenant (pgbench -D
// org=K); (a) and (c) name the tenant in the query, (b) leaves that to the
// policy.
type rlsScript struct {
	name  string
	forms [3]string
}

func newRLSScript(name, explicit, rls string) rlsScript {
	return rlsScript{name: name, forms: [3]string{
		rlsIDLine + fmt.Sprintf(explicit, rlsTable),
		rlsIDLine + fmt.Sprintf(rls, rlsTable),
		rlsIDLine + fmt.Sprintf(explicit, rlsPlainTable),
	}}
}

// rlsIDLine picks one of the tenant's ids at random.
var rlsIDLine = fmt.Sprintf("\\set n random(0, %d)\n\\set id :n * %d + :org\n", rlsRowsPerTenant-1, rlsTenants)

var rlsScripts = []rlsScript{
	newRLSScript("pk lookup",
		"SELECT amount, note FROM %s WHERE org_id = :org::text AND id = :id;\n",
		"SELECT amount, note FROM %s WHERE id = :id;\n"),
	newRLSScript("range scan",
		"SELECT id, amount FROM %s WHERE org_id = :org::text AND id >= :id ORDER BY id LIMIT "+strconv.Itoa(rlsRangeRows)+";\n",
		"SELECT id, amount FROM %s WHERE id >= :id ORDER BY id LIMIT "+strconv.Itoa(rlsRangeRows)+";\n"),
}

// rlsTargetNames are the sides compared, in the report's order: (a), (b),
// (c).
var rlsTargetNames = []string{"(a) direct, BYPASSRLS, explicit org", "(b) pgtenant, RLS, signed context", "(c) pgtenant, no RLS, explicit org"}

// rlsGroup is one pgbench process of a run: a tenant and its clients.
type rlsGroup struct {
	org    int
	target target
}

// rlsResults holds the tps of every run, by script and target name, and the
// plans of each script on each side.
type rlsResults struct {
	tps    map[string]map[string][]float64
	failed map[string]map[string]error
	plans  map[string]map[string]string
	groups int
}

// prepareRLS creates the tenant table, the BYPASSRLS role, installs the
// tenancy schema with pgtenant's context key and grants the application
// role what it needs.
func prepareRLS(ctx context.Context, c *pgcluster.Cluster, contextSecret []byte, bypassPassword string) error {
	conn, err := c.Connect(ctx, benchDatabase)
	if err != nil {
		return err
	}
	defer conn.Close(context.WithoutCancel(ctx))
	key := policies.ContextKey{ID: config.DefaultContextKeyID, Secret: contextSecret}
	if err := policies.Install(ctx, conn, policies.InstallOptions{Keys: []policies.ContextKey{key}, AppRoles: []string{benchRole}}); err != nil {
		return fmt.Errorf("installing the tenancy schema: %w", err)
	}
	if err := c.CreateRole(ctx, rlsBypassRole, bypassPassword); err != nil {
		return err
	}
	if _, err := conn.Exec(ctx, rlsSetupSQL+
		"ALTER ROLE "+rlsBypassRole+" BYPASSRLS;"+
		"GRANT SELECT ON "+rlsTable+" TO "+rlsBypassRole+", "+benchRole+";"+
		"GRANT SELECT ON "+rlsPlainTable+" TO "+benchRole); err != nil {
		return fmt.Errorf("creating %s: %w", rlsTable, err)
	}
	for _, sql := range rlsWarmSQL {
		if _, err := conn.Exec(ctx, sql); err != nil {
			return fmt.Errorf("%s: %w", sql, err)
		}
	}
	return nil
}

// runRLSWorkload sets up and runs the RLS overhead workload and prints its
// report.
func runRLSWorkload(ctx context.Context, cluster *pgcluster.Cluster, pgbench, bin, work string, pt *proxyServer, o options, out io.Writer) error {
	step(out, fmt.Sprintf("loading the RLS workload (%d tenants x %d rows)", rlsTenants, rlsRowsPerTenant))
	password := randomHex(16)
	if err := prepareRLS(ctx, cluster, pt.contextSecret, password); err != nil {
		return err
	}
	direct := target{name: "direct", host: cluster.Host, port: cluster.Port, user: rlsBypassRole, password: password}
	step(out, fmt.Sprintf("running the RLS workload: %d round(s) x %d scripts x %d sides x %ds",
		o.rounds, len(rlsScripts), len(rlsTargetNames), o.rlsDuration))
	res, err := runRLS(ctx, pgbench, bin, work, direct, pt, o, out)
	printRLSReport(out, res, o)
	return err
}

// rlsGroupsFor splits o.clients into groups of about four clients, each on a
// tenant of its own spread over the tenant range (pgbench cannot change
// its password, and so pgtenant's tenant, per transaction). It returns the
// tenants and the clients of each group.
func rlsGroupsFor(o options) (orgs []int, clients []int) {
	n := max(1, min(o.clients/4, 8))
	for i := range n {
		orgs = append(orgs, 1+i*rlsTenants/n)
		c := o.clients / n
		if i < o.clients%n {
			c++
		}
		clients = append(clients, c)
	}
	return orgs, clients
}

// runRLS runs both scripts against both sides, o.rounds times interleaved,
// each run o.rlsDuration seconds with the tenant groups running at once.
func runRLS(ctx context.Context, pgbench, bin, work string, direct target, pt *proxyServer, o options, out io.Writer) (*rlsResults, error) {
	orgs, clients := rlsGroupsFor(o)
	res := &rlsResults{tps: map[string]map[string][]float64{}, failed: map[string]map[string]error{},
		plans: map[string]map[string]string{}, groups: len(orgs)}
	sides := map[string][]rlsGroup{}
	for _, org := range orgs {
		tok, err := mintToken(ctx, bin, pt.env, strconv.Itoa(org))
		if err != nil {
			return res, err
		}
		via := pt.target
		via.user, via.password = strconv.Itoa(org), tok
		sides[rlsTargetNames[0]] = append(sides[rlsTargetNames[0]], rlsGroup{org: org, target: direct})
		sides[rlsTargetNames[1]] = append(sides[rlsTargetNames[1]], rlsGroup{org: org, target: via})
		sides[rlsTargetNames[2]] = append(sides[rlsTargetNames[2]], rlsGroup{org: org, target: via})
	}
	scriptDir := filepath.Join(work, "rls")
	if err := os.MkdirAll(scriptDir, 0o755); err != nil {
		return res, err
	}
	for i, s := range rlsScripts {
		res.tps[s.name] = map[string][]float64{}
		res.failed[s.name] = map[string]error{}
		res.plans[s.name] = map[string]string{}
		for j, text := range s.forms {
			f := filepath.Join(scriptDir, fmt.Sprintf("script%d-%d.sql", i, j))
			if err := os.WriteFile(f, []byte(text), 0o644); err != nil {
				return res, err
			}
		}
		for j, name := range rlsTargetNames {
			plan, err := explainScript(ctx, sides[name][0].target, s.forms[j], strconv.Itoa(orgs[0]))
			if err != nil {
				return res, err
			}
			res.plans[s.name][name] = plan
		}
	}
	var failed []string
	for round := range o.rounds {
		for i, s := range rotate(rlsScripts, round) {
			si := (i + round) % len(rlsScripts)
			for _, name := range rotate(rlsTargetNames, round+i) {
				if ctx.Err() != nil {
					return res, ctx.Err()
				}
				if res.failed[s.name][name] != nil {
					continue
				}
				script := filepath.Join(scriptDir, fmt.Sprintf("script%d-%d.sql", si, index(rlsTargetNames, name)))
				tps, err := runRLSGroups(ctx, pgbench, script, sides[name], clients, o)
				prefix := fmt.Sprintf("round %d/%d  %-10s  %s", round+1, o.rounds, s.name, name)
				if ctx.Err() != nil {
					return res, ctx.Err()
				}
				if err != nil {
					res.failed[s.name][name] = err
					failed = append(failed, s.name+" against "+name)
					fmt.Fprintf(out, "%s  FAILED\n%v\n", prefix, err)
					continue
				}
				res.tps[s.name][name] = append(res.tps[s.name][name], tps)
				fmt.Fprintf(out, "%s  %10.0f tps\n", prefix, tps)
			}
		}
	}
	if len(failed) > 0 {
		return res, fmt.Errorf("RLS workload failed (%s); the output is above", strings.Join(failed, ", "))
	}
	return res, nil
}

func index(names []string, name string) int {
	for i, n := range names {
		if n == name {
			return i
		}
	}
	return -1
}

// runRLSGroups runs one pgbench per group at once, with the group's tenant
// as variable org, and returns the sum of their tps.
func runRLSGroups(ctx context.Context, pgbench, script string, groups []rlsGroup, clients []int, o options) (float64, error) {
	var (
		wg    sync.WaitGroup
		mu    sync.Mutex
		total float64
		errs  []error
	)
	for i, g := range groups {
		wg.Add(1)
		go func() {
			defer wg.Done()
			tps, err := runCustomPgbench(ctx, pgbench, g.target, script, g.org, clients[i], o.rlsDuration)
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				errs = append(errs, fmt.Errorf("tenant %d: %w", g.org, err))
				return
			}
			total += tps
		}()
	}
	wg.Wait()
	return total, errors.Join(errs...)
}

// runCustomPgbench runs pgbench with script against t for duration seconds
// with clients clients and org as the variable org, and returns its tps
// excluding connection time.
func runCustomPgbench(ctx context.Context, pgbench string, t target, script string, org, clients, duration int) (float64, error) {
	limit := time.Duration(duration)*time.Second + runSlack
	ctx, cancel := context.WithTimeout(ctx, limit)
	defer cancel()
	cmd := exec.CommandContext(ctx, pgbench, "-n", "-f", script, "-D", "org="+strconv.Itoa(org),
		"-c", strconv.Itoa(clients), "-j", "1", "-T", strconv.Itoa(duration), "-M", rlsMode, benchDatabase)
	cmd.Env = t.env()
	detach(cmd)
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	cmd.WaitDelay = 5 * time.Second
	b, err := cmd.CombinedOutput()
	output := strings.TrimSpace(string(b))
	if errors.Is(ctx.Err(), context.DeadlineExceeded) {
		return 0, fmt.Errorf("pgbench did not finish within %s and was killed; its output:\n%s", limit, output)
	}
	if err != nil {
		return 0, &pgbenchError{err: err, output: output}
	}
	tps, err := parseTPS(output)
	if err != nil {
		return 0, &pgbenchError{err: err, output: output}
	}
	return tps, nil
}

// explainScript connects to t and returns EXPLAIN (ANALYZE, COSTS OFF) of the
// script's query as pgbench would run it prepared, its variables bound for
// tenant org's first row. Through pgtenant the statement runs with the
// tenant's signed context, as pgbench's do.
func explainScript(ctx context.Context, t target, script, org string) (string, error) {
	var query string
	for _, line := range strings.Split(script, "\n") {
		if line != "" && !strings.HasPrefix(line, `\`) {
			query = strings.TrimSuffix(line, ";")
		}
	}
	query = strings.ReplaceAll(query, ":org::text", "'"+org+"'")
	query = strings.ReplaceAll(query, ":id", org)
	conn, err := pgx.Connect(ctx, t.dsn())
	if err != nil {
		return "", fmt.Errorf("connecting to %s: %w", t.name, err)
	}
	defer conn.Close(context.WithoutCancel(ctx))
	rows, err := conn.Query(ctx, "EXPLAIN (ANALYZE, COSTS OFF, TIMING OFF, SUMMARY OFF) "+query)
	if err != nil {
		return "", fmt.Errorf("EXPLAIN on %s: %w", t.name, err)
	}
	lines, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return "", fmt.Errorf("EXPLAIN on %s: %w", t.name, err)
	}
	return query + "\n" + strings.Join(lines, "\n"), nil
}

// printRLSReport prints the median tps of each script on each side, the
// ratio (b)/(a) against the goal and the two ratios that split it, and the
// plans of each script.
func printRLSReport(out io.Writer, res *rlsResults, o options) {
	fmt.Fprintf(out, "\nRLS overhead: %d tenants x %d rows, -M %s, %d clients in %d tenant groups, %ds per run:\n",
		rlsTenants, rlsRowsPerTenant, rlsMode, o.clients, res.groups, o.rlsDuration)
	fmt.Fprintf(out, "  %-10s  %9s  %9s  %9s  %8s  %8s  %8s\n", "script", "(a) tps", "(b) tps", "(c) tps", "(b)/(a)", "(c)/(a)", "(b)/(c)")
	for _, s := range rlsScripts {
		row := []string{}
		med := map[string]float64{}
		for _, name := range rlsTargetNames {
			samples := res.tps[s.name][name]
			switch {
			case len(samples) > 0:
				med[name] = median(samples)
				row = append(row, fmt.Sprintf("%.0f", med[name]))
			case res.failed[s.name][name] != nil:
				row = append(row, "failed")
			default:
				row = append(row, "-")
			}
		}
		a, b, c := med[rlsTargetNames[0]], med[rlsTargetNames[1]], med[rlsTargetNames[2]]
		goal := ""
		if a > 0 && b > 0 {
			goal = "  goal (b) >= 0.85x (a): met"
			if b < 0.85*a {
				goal = "  goal (b) >= 0.85x (a): not met"
			}
		}
		fmt.Fprintf(out, "  %-10s  %9s  %9s  %9s  %8s  %8s  %8s%s\n", s.name, row[0], row[1], row[2], ratio(b, a), ratio(c, a), ratio(b, c), goal)
	}
	for _, name := range rlsTargetNames {
		fmt.Fprintf(out, "  %s\n", name)
	}
	for _, s := range rlsScripts {
		for _, name := range rlsTargetNames {
			fmt.Fprintf(out, "\nEXPLAIN ANALYZE, %s, %s:\n", s.name, name)
			for _, line := range strings.Split(res.plans[s.name][name], "\n") {
				fmt.Fprintf(out, "  %s\n", line)
			}
		}
	}
	fmt.Fprintln(out, "\nRLS samples (tps, in run order):")
	for _, s := range rlsScripts {
		for _, name := range rlsTargetNames {
			var v []string
			for _, x := range res.tps[s.name][name] {
				v = append(v, fmt.Sprintf("%.0f", x))
			}
			if res.failed[s.name][name] != nil {
				v = append(v, "failed")
			}
			fmt.Fprintf(out, "  %-10s  %-36s  %s\n", s.name, name, strings.Join(v, " "))
		}
	}
}
