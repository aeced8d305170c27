package e2e

import (
	"encoding/json"
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"
)

// dashboardFile is the Grafana dashboard, relative to the repository root.
const dashboardFile = "deploy/grafana/authsidecar.json"

// dashboardPanel is the part of a Grafana panel the test reads; rows nest panels.
type dashboardPanel struct {
	ID         int              `json:"id"`
	Type       string           `json:"type"`
	Title      string           `json:"title"`
	Datasource *json.RawMessage `json:"datasource"`
	Targets    []struct {
		Expr string `json:"expr"`
	} `json:"targets"`
	Panels []dashboardPanel `json:"panels"`
}

// dashboard is the part of the dashboard JSON the test reads.
type dashboard struct {
	UID        string           `json:"uid"`
	Title      string           `json:"title"`
	Panels     []dashboardPanel `json:"panels"`
	Templating struct {
		List []struct {
			Name       string `json:"name"`
			Definition string `json:"definition"`
		} `json:"list"`
	} `json:"templating"`
}

// promMetric matches the metric names a query can use from the sidecar's /metrics page.
var promMetric = regexp.MustCompile(`\b(?:authsidecar|go|process)_[a-z0-9_]+`)

// promLabels matches the label names in selectors and in by/without/on/ignoring lists.
var (
	promMatcher  = regexp.MustCompile(`([a-zA-Z_][a-zA-Z0-9_]*)\s*(?:=~|!~|!=|=)\s*"`)
	promGrouping = regexp.MustCompile(`\b(?:by|without|on|ignoring)\s*\(([^)]*)\)`)
)

// dashboardQueries returns every PromQL expression of the dashboard: panel targets and
// template variable queries.
func dashboardQueries(tb testing.TB) (map[string][]string, dashboard) {
	tb.Helper()
	raw, err := os.ReadFile(repoFile(dashboardFile))
	if err != nil {
		tb.Fatal(err)
	}
	var d dashboard
	if err := json.Unmarshal(raw, &d); err != nil {
		tb.Fatalf("parse %s: %v", dashboardFile, err)
	}
	queries := map[string][]string{}
	ids := map[int]bool{}
	var walk func([]dashboardPanel)
	walk = func(panels []dashboardPanel) {
		for _, p := range panels {
			if ids[p.ID] {
				tb.Errorf("panel id %d used twice", p.ID)
			}
			ids[p.ID] = true
			walk(p.Panels)
			if p.Type == "row" {
				continue
			}
			if len(p.Targets) == 0 || p.Datasource == nil || !strings.Contains(string(*p.Datasource), "${datasource}") {
				tb.Errorf("panel %q has no query or does not use the ${datasource} variable", p.Title)
			}
			for _, t := range p.Targets {
				queries["panel "+p.Title] = append(queries["panel "+p.Title], t.Expr)
			}
		}
	}
	walk(d.Panels)
	for _, v := range d.Templating.List {
		if v.Definition != "" {
			queries["variable "+v.Name] = append(queries["variable "+v.Name], v.Definition)
		}
	}
	return queries, d
}

// exportedLabels maps each sample name on a /metrics page to its label names.
func exportedLabels(page string) map[string][]string {
	labels := map[string][]string{}
	label := regexp.MustCompile(`([a-zA-Z_][a-zA-Z0-9_]*)="`)
	for line := range strings.SplitSeq(page, "\n") {
		if line == "" || line[0] == '#' {
			continue
		}
		name, rest, _ := strings.Cut(line, "{")
		name = strings.Fields(name)[0]
		if _, ok := labels[name]; !ok {
			labels[name] = nil
		}
		if i := strings.IndexByte(rest, '}'); i >= 0 {
			for _, m := range label.FindAllStringSubmatch(rest[:i], -1) {
				if !slices.Contains(labels[name], m[1]) {
					labels[name] = append(labels[name], m[1])
				}
			}
		}
	}
	return labels
}

// TestGrafanaDashboardUsesOnlyExportedMetrics scrapes a running sidecar, with Redis, and
// checks every query of the dashboard: each metric it names is exported, and each label it
// matches or groups by is a label of one of its metrics (or instance and job, which
// Prometheus adds).
func TestGrafanaDashboardUsesOnlyExportedMetrics(t *testing.T) {
	queries, d := dashboardQueries(t)
	if d.UID == "" || d.Title == "" {
		t.Errorf("dashboard uid %q, title %q", d.UID, d.Title)
	}
	st := newStack(t)
	sc := StartSidecar(t, st.env(NewUpstream(t, nil).URL, nil))
	sc.Get(t, "/api/health/redis", "")
	sc.Get(t, "/app", "") // a 401, so http_requests_total has a series
	exported := exportedLabels(sc.Admin(t, "/metrics").Body)

	used := map[string]bool{}
	for where, exprs := range queries {
		for _, expr := range exprs {
			metrics := promMetric.FindAllString(expr, -1)
			if len(metrics) == 0 {
				t.Errorf("%s: %q names no authsidecar metric", where, expr)
			}
			allowed := []string{"instance", "job"}
			for _, m := range metrics {
				labels, ok := exported[m]
				if !ok {
					t.Errorf("%s uses %s, which the sidecar does not export", where, m)
				}
				allowed = append(allowed, labels...)
				used[strings.TrimSuffix(strings.TrimSuffix(m, "_bucket"), "_count")] = true
			}
			var names []string
			for _, m := range promMatcher.FindAllStringSubmatch(expr, -1) {
				names = append(names, m[1])
			}
			for _, g := range promGrouping.FindAllStringSubmatch(expr, -1) {
				for l := range strings.SplitSeq(g[1], ",") {
					names = append(names, strings.TrimSpace(l))
				}
			}
			for _, l := range names {
				if l != "" && !slices.Contains(allowed, l) {
					t.Errorf("%s: label %s is not on %v", where, l, metrics)
				}
			}
		}
	}
	// The panels: request rate and latency, validations, hit rate per layer,
	// breaker, Redis ping, revocations, pools.
	for _, m := range []string{"authsidecar_http_requests_total", "authsidecar_upstream_duration_seconds",
		"authsidecar_session_validations_total", "authsidecar_session_validation_duration_seconds",
		"authsidecar_cache_requests_total", "authsidecar_redis_breaker_state", "authsidecar_redis_ping_seconds",
		"authsidecar_cache_invalidations_total", "authsidecar_redis_pool_connections", "authsidecar_postgres_pool_connections"} {
		if !used[m] {
			t.Errorf("no panel shows %s", m)
		}
	}
}
