package e2e

import (
	"os"
	"os/exec"
	"regexp"
	"slices"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"

	"github.com/authsidecar/authsidecar/internal/testenv"
)

// alertsFile is the rule file, relative to the repository root.
const alertsFile = "deploy/prometheus/alerts.yml"

// alertRules is the part of a Prometheus rule file the test reads.
type alertRules struct {
	Groups []struct {
		Name  string `yaml:"name"`
		Rules []struct {
			Alert       string            `yaml:"alert"`
			Expr        string            `yaml:"expr"`
			For         string            `yaml:"for"`
			Labels      map[string]string `yaml:"labels"`
			Annotations map[string]string `yaml:"annotations"`
		} `yaml:"rules"`
	} `yaml:"groups"`
}

// wantAlerts are the seed design's alerts plus breaker open and the 503 rate.
var wantAlerts = []string{
	"AuthsidecarCacheHitRateLow", "AuthsidecarHigh503Rate", "AuthsidecarRedisBreakerOpen",
	"AuthsidecarRedisDown", "AuthsidecarRedisErrors", "AuthsidecarRedisSlowPing",
}

var metricName = regexp.MustCompile(`\bauthsidecar_[a-z0-9_]+`)

// loadAlerts parses the rule file and returns its alert names and every authsidecar_*
// metric name its expressions use.
func loadAlerts(tb testing.TB) (alerts, metrics []string) {
	tb.Helper()
	raw, err := os.ReadFile(repoFile(alertsFile))
	if err != nil {
		tb.Fatal(err)
	}
	var f alertRules
	if err := yaml.Unmarshal(raw, &f); err != nil {
		tb.Fatalf("parse %s: %v", alertsFile, err)
	}
	for _, g := range f.Groups {
		for _, r := range g.Rules {
			if r.Expr == "" || r.For == "" || r.Labels["severity"] == "" || r.Annotations["summary"] == "" {
				tb.Errorf("alert %q lacks expr, for, severity or summary", r.Alert)
			}
			alerts = append(alerts, r.Alert)
			metrics = append(metrics, metricName.FindAllString(r.Expr, -1)...)
		}
	}
	slices.Sort(alerts)
	slices.Sort(metrics)
	return alerts, slices.Compact(metrics)
}

// exportedNames returns the sample names on a /metrics page (histograms as _bucket, _sum
// and _count).
func exportedNames(page string) map[string]bool {
	names := map[string]bool{}
	for line := range strings.SplitSeq(page, "\n") {
		if line == "" || line[0] == '#' {
			continue
		}
		if i := strings.IndexAny(line, "{ "); i > 0 {
			names[line[:i]] = true
		}
	}
	return names
}

func TestAlertsUseOnlyExportedMetrics(t *testing.T) {
	alerts, used := loadAlerts(t)
	if !slices.Equal(alerts, wantAlerts) {
		t.Errorf("alerts = %v, want %v", alerts, wantAlerts)
	}
	st := newStack(t)
	sc := StartSidecar(t, st.env(NewUpstream(t, nil).URL, nil))
	sc.Get(t, "/api/health/redis", "")
	sc.Get(t, "/app", "") // a 401, so http_requests_total has a series
	page := sc.Admin(t, "/metrics")
	exported := exportedNames(page.Body)
	for _, name := range used {
		if !exported[name] {
			t.Errorf("%s uses %s, which the sidecar does not export", alertsFile, name)
		}
	}
	// Families the issue requires besides those the alerts use.
	for _, name := range []string{"authsidecar_postgres_pool_connections", "authsidecar_redis_pool_connections",
		"authsidecar_upstream_duration_seconds_count", "authsidecar_cache_invalidations_total",
		"authsidecar_session_validations_total", "go_goroutines", "process_resident_memory_bytes"} {
		if !exported[name] {
			t.Errorf("/metrics lacks %s", name)
		}
	}
	if len(used) < 5 {
		t.Errorf("alerts use only %v", used)
	}
}

// lookPromtool finds promtool: a test without it fails under CI and skips elsewhere.
func lookPromtool(t *testing.T) string {
	t.Helper()
	promtool, err := exec.LookPath("promtool")
	switch {
	case err != nil && os.Getenv(testenv.EnvCI) != "":
		t.Fatalf("promtool not installed, and CI must check the rules with it (scripts/test.sh installs Debian's prometheus package): %v", err)
	case err != nil:
		t.Skip("promtool not installed (scripts/test.sh installs it); TestAlertsUseOnlyExportedMetrics checks the names")
	}
	return promtool
}

func TestAlertsPassPromtool(t *testing.T) {
	if out, err := exec.Command(lookPromtool(t), "check", "rules", repoFile(alertsFile)).CombinedOutput(); err != nil {
		t.Fatalf("promtool check rules: %v\n%s", err, out)
	}
}

// TestAlertsFireAtTheDocumentedThresholds runs testdata/alerts_test.yml, promtool's unit
// tests of the rules: each alert fires at the threshold and after the duration
// docs/deploying.md's alert table states, not below it or sooner.
func TestAlertsFireAtTheDocumentedThresholds(t *testing.T) {
	if out, err := exec.Command(lookPromtool(t), "test", "rules", repoFile("e2e/testdata/alerts_test.yml")).CombinedOutput(); err != nil {
		t.Fatalf("promtool test rules: %v\n%s", err, out)
	}
}
