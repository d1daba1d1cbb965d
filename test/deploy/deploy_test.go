package deploy

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"
)

// root is the repository root, seen from this package's directory.
const root = "../.."

// datasourceUID is how every panel and query names its data source: the
// dashboard's datasource variable, so that an import picks the Prometheus.
const datasourceUID = "${datasource}"

func TestDashboardIsImportableAndEveryPanelSaysWhatItShows(t *testing.T) {
	t.Parallel()
	d, err := ReadDashboard(root)
	if err != nil {
		t.Fatal(err)
	}
	if d.SchemaVersion != 39 {
		t.Errorf("schemaVersion = %d, want 39", d.SchemaVersion)
	}
	if d.UID == "" || d.Title == "" {
		t.Errorf("uid %q and title %q must both be set", d.UID, d.Title)
	}

	vars := map[string]Variable{}
	for _, v := range d.Templating.List {
		vars[v.Name] = v
	}
	if v, ok := vars["datasource"]; !ok || v.Type != "datasource" || string(v.Query) != `"prometheus"` {
		t.Errorf("want a datasource variable of type prometheus, got %+v", v)
	}
	if v, ok := vars["tenant"]; !ok || v.QueryString() != "label_values(pgtenant_transactions_total, tenant)" {
		t.Errorf("want a tenant variable from label_values(pgtenant_transactions_total, tenant), got %+v", v)
	}

	ids := map[int]string{}
	var rows, graphs int
	for _, p := range d.AllPanels() {
		if prev, dup := ids[p.ID]; dup {
			t.Errorf("panel %q reuses the id %d of %q", p.Title, p.ID, prev)
		}
		ids[p.ID] = p.Title
		if p.Type == "row" {
			rows++
			continue
		}
		graphs++
		if p.Title == "" || p.Description == "" {
			t.Errorf("panel %d (%q) needs a title and a description", p.ID, p.Title)
		}
		if p.Datasource == nil || p.Datasource.UID != datasourceUID {
			t.Errorf("panel %q: datasource %+v, want uid %s", p.Title, p.Datasource, datasourceUID)
		}
		if len(p.Targets) == 0 {
			t.Errorf("panel %q has no query", p.Title)
		}
		for _, q := range p.Targets {
			if strings.TrimSpace(q.Expr) == "" {
				t.Errorf("panel %q, query %s: empty expr", p.Title, q.RefID)
			}
			if q.Datasource == nil || q.Datasource.UID != datasourceUID {
				t.Errorf("panel %q, query %s: datasource %+v, want uid %s", p.Title, q.RefID, q.Datasource, datasourceUID)
			}
		}
	}
	for _, want := range []string{"Overview", "Overhead", "Pools", "Security", "Audit", "Registry"} {
		if !hasPanel(d, "row", want) {
			t.Errorf("no row %q", want)
		}
	}
	t.Logf("%d rows, %d panels", rows, graphs)
}

func hasPanel(d *Dashboard, typ, title string) bool {
	for _, p := range d.AllPanels() {
		if p.Type == typ && p.Title == title {
			return true
		}
	}
	return false
}

// The alerts that the rules must define: docs/metrics.md describes each
// under a heading of its name.
var wantAlerts = []string{
	"PgtenantPoolWaitSaturation",
	"PgtenantOverheadHigh",
	"PgtenantCrossTenantBlockSpike",
	"PgtenantAuditEventsDropped",
	"PgtenantBackendDown",
	"PgtenantRegistryStale",
	"PgtenantRegistryReloadErrors",
}

func TestEveryAlertHasASeverityARunbookAndADocumentedMeaning(t *testing.T) {
	t.Parallel()
	rf, err := ReadRules(root)
	if err != nil {
		t.Fatal(err)
	}
	doc, err := os.ReadFile(filepath.Join(root, MetricsDocPath))
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]bool{}
	for _, g := range rf.Groups {
		for _, r := range g.Rules {
			if r.Alert == "" {
				continue
			}
			got[r.Alert] = true
			if s := r.Labels["severity"]; s != "warning" && s != "critical" {
				t.Errorf("%s: severity %q, want warning or critical", r.Alert, s)
			}
			if r.Annotations["summary"] == "" {
				t.Errorf("%s: no summary annotation", r.Alert)
			}
			anchor := "docs/metrics.md#" + strings.ToLower(r.Alert)
			if !strings.Contains(r.Annotations["description"], anchor) {
				t.Errorf("%s: the description does not point at its runbook %s", r.Alert, anchor)
			}
		}
	}
	for _, a := range wantAlerts {
		if !got[a] {
			t.Errorf("no alert %s", a)
		}
	}
	for a := range got {
		if !regexp.MustCompile(`(?m)^#+ ` + a + `$`).Match(doc) {
			t.Errorf("%s has no heading of its name in %s (its runbook anchor)", a, MetricsDocPath)
		}
	}
}

// ruleTests is the part of a promtool rule test file read here.
type ruleTests struct {
	Tests []struct {
		AlertRuleTest []struct {
			Alertname string           `yaml:"alertname"`
			ExpAlerts []map[string]any `yaml:"exp_alerts"`
		} `yaml:"alert_rule_test"`
	} `yaml:"tests"`
}

func TestEveryAlertIsTestedFiringAndNotFiring(t *testing.T) {
	t.Parallel()
	b, err := os.ReadFile(filepath.Join(root, RulesTestPath))
	if err != nil {
		t.Fatal(err)
	}
	var rt ruleTests
	if err := yaml.Unmarshal(b, &rt); err != nil {
		t.Fatalf("%s: %v", RulesTestPath, err)
	}
	fires, quiet := map[string]bool{}, map[string]bool{}
	for _, tc := range rt.Tests {
		for _, a := range tc.AlertRuleTest {
			if len(a.ExpAlerts) > 0 {
				fires[a.Alertname] = true
			} else {
				quiet[a.Alertname] = true
			}
		}
	}
	for _, a := range wantAlerts {
		if !fires[a] {
			t.Errorf("%s: no test case where it fires", a)
		}
		if !quiet[a] {
			t.Errorf("%s: no test case where it stays quiet (exp_alerts: [])", a)
		}
	}
}

// documentedMetric matches a metric's row in the tables of docs/metrics.md.
var documentedMetric = regexp.MustCompile("(?m)^\\| `(pgtenant_[a-z0-9_]+)`")

// TestEveryQueriedMetricIsDocumented checks the dashboard and the rules
// against the metrics docs/metrics.md lists. That pgtenant really exports
// each is checked where pgtenant runs, with UsedMetricNames.
func TestEveryQueriedMetricIsDocumented(t *testing.T) {
	t.Parallel()
	used, err := UsedMetricNames(root)
	if err != nil {
		t.Fatal(err)
	}
	doc, err := os.ReadFile(filepath.Join(root, MetricsDocPath))
	if err != nil {
		t.Fatal(err)
	}
	documented := map[string]bool{}
	for _, m := range documentedMetric.FindAllSubmatch(doc, -1) {
		documented[string(m[1])] = true
	}
	if len(documented) == 0 {
		t.Fatalf("%s lists no metric", MetricsDocPath)
	}
	for _, n := range Sorted(used) {
		if !documented[n] {
			t.Errorf("%s is queried by the dashboard or the rules but not documented in %s", n, MetricsDocPath)
		}
	}
	t.Logf("%d metrics queried: %s", len(used), strings.Join(Sorted(used), " "))
}

func TestUsedMetricNamesReportsHistogramsByFamily(t *testing.T) {
	t.Parallel()
	for series, want := range map[string]string{
		"pgtenant_query_overhead_seconds_bucket":  "pgtenant_query_overhead_seconds",
		"pgtenant_pool_wait_duration_seconds_sum": "pgtenant_pool_wait_duration_seconds",
		"pgtenant_query_overhead_seconds_count":   "pgtenant_query_overhead_seconds",
		"pgtenant_transactions_total":             "pgtenant_transactions_total",
		"pgtenant_backend_up":                     "pgtenant_backend_up",
	} {
		if got := FamilyName(series); got != want {
			t.Errorf("FamilyName(%q) = %q, want %q", series, got, want)
		}
	}
	used, err := UsedMetricNames(root)
	if err != nil {
		t.Fatal(err)
	}
	for n := range used {
		if FamilyName(n) != n {
			t.Errorf("UsedMetricNames returned the series name %s", n)
		}
	}
	if !used["pgtenant_query_overhead_seconds"] {
		t.Error("UsedMetricNames misses pgtenant_query_overhead_seconds, which the overhead panel and alert query")
	}
}

// promtool returns the promtool to run: $PROMTOOL, else promtool on PATH,
// else Debian's /usr/bin/promtool.
func promtool() (string, error) {
	if p := os.Getenv("PROMTOOL"); p != "" {
		return p, nil
	}
	if p, err := exec.LookPath("promtool"); err == nil {
		return p, nil
	}
	if _, err := os.Stat("/usr/bin/promtool"); err == nil {
		return "/usr/bin/promtool", nil
	}
	return "", errors.New("promtool not found in $PROMTOOL, PATH or /usr/bin")
}

// grafanaVariables stand in for the dashboard's variables so that its
// queries can be parsed as PromQL.
var grafanaVariables = strings.NewReplacer("$__rate_interval", "5m", "$instance", ".*", "$tenant", ".*")

// dashboardAsRules writes every panel query of the dashboard as a recording
// rule, so that promtool check rules parses them.
func dashboardAsRules(t *testing.T) string {
	t.Helper()
	d, err := ReadDashboard(root)
	if err != nil {
		t.Fatal(err)
	}
	g := RuleGroup{Name: "dashboard"}
	for _, p := range d.AllPanels() {
		for _, q := range p.Targets {
			g.Rules = append(g.Rules, Rule{
				Record: fmt.Sprintf("dashboard:panel%d_%s", p.ID, q.RefID),
				Expr:   grafanaVariables.Replace(q.Expr),
			})
		}
	}
	b, err := yaml.Marshal(RuleFile{Groups: []RuleGroup{g}})
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "dashboard-rules.yml")
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestRulesAndDashboardQueriesPassPromtool(t *testing.T) {
	t.Parallel()
	tool, err := promtool()
	if err != nil {
		msg := fmt.Sprintf("%v; run scripts/ensure-promtool.sh as root", err)
		if os.Getenv("CI") == "true" {
			t.Fatal(msg)
		}
		fmt.Fprintln(os.Stderr, "!!! SKIPPING "+t.Name()+": "+msg)
		t.Skip(msg)
	}
	for _, args := range [][]string{
		{"check", "rules", RulesPath},
		{"test", "rules", RulesTestPath},
		{"check", "rules", dashboardAsRules(t)},
	} {
		cmd := exec.CommandContext(t.Context(), tool, args...)
		cmd.Dir = root
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Errorf("promtool %s: %v\n%s", strings.Join(args, " "), err, out)
		}
	}
}
