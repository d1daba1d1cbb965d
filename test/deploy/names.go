// Package deploy reads the files that operators load into Grafana and
// Prometheus (deploy/grafana, deploy/prometheus) so that tests can check
// them: which queries they run and which pgtenant metrics those queries
// name. A test that runs pgtenant compares UsedMetricNames with the
// families its /metrics serves, so that a renamed metric breaks a test
// rather than a dashboard.
package deploy

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"

	"go.yaml.in/yaml/v3"
)

// Paths of the deploy files, relative to the repository root.
const (
	DashboardPath  = "deploy/grafana/pgtenant.json"
	RulesPath      = "deploy/prometheus/pgtenant-rules.yml"
	RulesTestPath  = "deploy/prometheus/pgtenant-rules.test.yml"
	MetricsDocPath = "docs/metrics.md"
)

// Dashboard is the part of a Grafana dashboard model that the checks read.
type Dashboard struct {
	Title         string  `json:"title"`
	UID           string  `json:"uid"`
	SchemaVersion int     `json:"schemaVersion"`
	Panels        []Panel `json:"panels"`
	Templating    struct {
		List []Variable `json:"list"`
	} `json:"templating"`
}

// Panel is a dashboard panel; a row holds its collapsed panels in Panels.
type Panel struct {
	ID          int         `json:"id"`
	Type        string      `json:"type"`
	Title       string      `json:"title"`
	Description string      `json:"description"`
	Datasource  *Datasource `json:"datasource"`
	Targets     []Target    `json:"targets"`
	Panels      []Panel     `json:"panels"`
}

// Target is one query of a panel.
type Target struct {
	RefID      string      `json:"refId"`
	Expr       string      `json:"expr"`
	Datasource *Datasource `json:"datasource"`
}

// Datasource names a data source, by a template variable in pgtenant's
// dashboard.
type Datasource struct {
	Type string `json:"type"`
	UID  string `json:"uid"`
}

// Variable is a dashboard template variable. Query is a string or, since
// Grafana 10, an object with a "query" field.
type Variable struct {
	Name       string          `json:"name"`
	Type       string          `json:"type"`
	Query      json.RawMessage `json:"query"`
	Definition string          `json:"definition"`
}

// QueryString returns the variable's query whichever form it is stored in.
func (v Variable) QueryString() string {
	var s string
	if json.Unmarshal(v.Query, &s) == nil {
		return s
	}
	var q struct {
		Query string `json:"query"`
	}
	if json.Unmarshal(v.Query, &q) == nil && q.Query != "" {
		return q.Query
	}
	return v.Definition
}

// AllPanels returns the dashboard's panels, those inside rows included, in
// order.
func (d *Dashboard) AllPanels() []Panel {
	var out []Panel
	var walk func([]Panel)
	walk = func(ps []Panel) {
		for _, p := range ps {
			out = append(out, p)
			walk(p.Panels)
		}
	}
	walk(d.Panels)
	return out
}

// RuleFile is a Prometheus rule file.
type RuleFile struct {
	Groups []RuleGroup `yaml:"groups"`
}

// RuleGroup is one group of a rule file.
type RuleGroup struct {
	Name  string `yaml:"name"`
	Rules []Rule `yaml:"rules"`
}

// Rule is an alerting or recording rule.
type Rule struct {
	Alert       string            `yaml:"alert,omitempty"`
	Record      string            `yaml:"record,omitempty"`
	Expr        string            `yaml:"expr"`
	For         string            `yaml:"for,omitempty"`
	Labels      map[string]string `yaml:"labels,omitempty"`
	Annotations map[string]string `yaml:"annotations,omitempty"`
}

// ReadDashboard parses the dashboard under root.
func ReadDashboard(root string) (*Dashboard, error) {
	b, err := os.ReadFile(filepath.Join(root, DashboardPath))
	if err != nil {
		return nil, err
	}
	var d Dashboard
	if err := json.Unmarshal(b, &d); err != nil {
		return nil, fmt.Errorf("%s: %w", DashboardPath, err)
	}
	return &d, nil
}

// ReadRules parses the alert rules under root. Unknown keys are errors, so
// that a misspelt "annotations" does not pass unnoticed.
func ReadRules(root string) (*RuleFile, error) {
	f, err := os.Open(filepath.Join(root, RulesPath))
	if err != nil {
		return nil, err
	}
	defer f.Close()
	dec := yaml.NewDecoder(f)
	dec.KnownFields(true)
	var rf RuleFile
	if err := dec.Decode(&rf); err != nil {
		return nil, fmt.Errorf("%s: %w", RulesPath, err)
	}
	return &rf, nil
}

// Exprs returns every PromQL expression of the dashboard and the rules
// under root: panel targets, template variable queries and rule exprs.
func Exprs(root string) ([]string, error) {
	d, err := ReadDashboard(root)
	if err != nil {
		return nil, err
	}
	rf, err := ReadRules(root)
	if err != nil {
		return nil, err
	}
	var exprs []string
	for _, p := range d.AllPanels() {
		for _, t := range p.Targets {
			exprs = append(exprs, t.Expr)
		}
	}
	for _, v := range d.Templating.List {
		if v.Type == "query" {
			exprs = append(exprs, v.QueryString())
		}
	}
	for _, g := range rf.Groups {
		for _, r := range g.Rules {
			exprs = append(exprs, r.Expr)
		}
	}
	return exprs, nil
}

var metricName = regexp.MustCompile(`pgtenant_[a-z0-9_]+`)

// histogramSuffixes are the series suffixes of a histogram family; a
// query names pgtenant_x_seconds_bucket, /metrics's "# TYPE" line names
// pgtenant_x_seconds.
var histogramSuffixes = []string{"_bucket", "_sum", "_count"}

// UsedMetricNames returns the pgtenant metric families that the dashboard
// and the alert rules under root (the repository root) query, as /metrics
// names them in its "# TYPE" lines: histogram series are reported by their
// family name.
func UsedMetricNames(root string) (map[string]bool, error) {
	exprs, err := Exprs(root)
	if err != nil {
		return nil, err
	}
	names := map[string]bool{}
	for _, e := range exprs {
		for _, n := range metricName.FindAllString(e, -1) {
			names[FamilyName(n)] = true
		}
	}
	return names, nil
}

// FamilyName strips a histogram series suffix from a series name.
func FamilyName(series string) string {
	for _, s := range histogramSuffixes {
		if base, ok := strings.CutSuffix(series, s); ok {
			return base
		}
	}
	return series
}

// Sorted returns the keys of a name set in order, for messages.
func Sorted(names map[string]bool) []string {
	out := make([]string, 0, len(names))
	for n := range names {
		out = append(out, n)
	}
	sort.Strings(out)
	return out
}
