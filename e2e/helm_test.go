package e2e

import (
	"net"
	"net/url"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/authsidecar/authsidecar/config"
)

// chartDir is the Helm chart, relative to the repository root.
const chartDir = "deploy/helm/authsidecar"

// helmValueFiles lists the chart's CI value files ("" stands for the defaults).
func helmValueFiles(tb testing.TB) []string {
	tb.Helper()
	files, err := filepath.Glob(repoFile(chartDir + "/ci/*.yaml"))
	if err != nil || len(files) == 0 {
		tb.Fatalf("no value files under %s/ci (%v)", chartDir, err)
	}
	return append([]string{""}, files...)
}

// helmArgs are the arguments that select the chart and, unless empty, a value file.
func helmArgs(values string, extra ...string) []string {
	args := append([]string{repoFile(chartDir)}, extra...)
	if values != "" {
		args = append(args, "-f", values)
	}
	return args
}

// helmTemplate renders the chart as release "web" in namespace "apps".
func helmTemplate(tb testing.TB, values string) []byte {
	tb.Helper()
	return render(tb, "helm", append([]string{"template", "web"}, helmArgs(values, "--namespace", "apps")...)...)
}

func TestHelmChartPassesLint(t *testing.T) {
	for _, values := range helmValueFiles(t) {
		out := render(t, "helm", append([]string{"lint", "--strict"}, helmArgs(values)...)...)
		if !strings.Contains(string(out), "0 chart(s) failed") {
			t.Errorf("helm lint %s:\n%s", values, out)
		}
	}
}

// renderedPod is what the checks read from one rendering of the chart.
type renderedPod struct {
	objs       []object
	deployment object
	sidecar    map[string]any
	app        map[string]any
}

func renderChart(tb testing.TB, values string) renderedPod {
	tb.Helper()
	r := renderedPod{objs: parseObjects(tb, helmTemplate(tb, values))}
	for _, o := range r.objs {
		if o.kind() == "Deployment" {
			r.deployment = o
		}
	}
	if r.deployment == nil {
		tb.Fatalf("%s: no Deployment rendered", values)
	}
	containers := list(r.deployment.podSpec()["containers"])
	if len(containers) < 2 {
		tb.Fatalf("%s: %d containers, want the app and the sidecar", values, len(containers))
	}
	r.app = containers[0]
	for _, c := range containers {
		if c["name"] == "authsidecar" {
			r.sidecar = c
		}
	}
	if r.sidecar == nil {
		tb.Fatalf("%s: no container named authsidecar", values)
	}
	return r
}

// containerEnv reads a container's environment; a variable from a Secret gets a plausible
// value of the kind the Secret would hold.
func containerEnv(c map[string]any) map[string]string {
	secretValues := map[string]string{
		"DATABASE_URL": "postgres://authsidecar:secret@postgres:5432/app?sslmode=require",
		"REDIS_URL":    "redis://:secret@redis:6379/0",
		"ADMIN_TOKEN":  strings.Repeat("a", 32),
	}
	env := map[string]string{}
	for _, e := range list(c["env"]) {
		name, _ := e["name"].(string)
		if v, ok := e["value"].(string); ok {
			env[name] = v
		} else if dig(e, "valueFrom", "secretKeyRef") != nil {
			env[name] = secretValues[name]
		}
	}
	return env
}

// containerPort returns the number of a container's named port, 0 if none.
func containerPort(c map[string]any, name string) int {
	for _, p := range list(c["ports"]) {
		if p["name"] == name {
			n, _ := p["containerPort"].(int)
			return n
		}
	}
	return 0
}

func portOf(tb testing.TB, addr string) int {
	tb.Helper()
	_, port, err := net.SplitHostPort(addr)
	n, _ := strconv.Atoi(port)
	if err != nil || n == 0 {
		tb.Fatalf("%q is not host:port", addr)
	}
	return n
}

func TestHelmChartRendersASidecarThatStarts(t *testing.T) {
	for _, values := range helmValueFiles(t) {
		t.Run(filepath.Base(values), func(t *testing.T) {
			r := renderChart(t, values)
			env := containerEnv(r.sidecar)
			for name := range env {
				if !slices.Contains(config.Names(), name) {
					t.Errorf("the sidecar gets %s, which is not a configuration variable", name)
				}
			}
			if _, err := config.Load(env, "UPSTREAM_URL", "DATABASE_URL"); err != nil {
				t.Errorf("the sidecar's environment does not load:\n%v", err)
			}
			// The listeners are the container's ports, and the probes reach the admin port.
			if got, want := portOf(t, env["LISTEN_ADDR"]), containerPort(r.sidecar, "http"); got != want || want == 0 {
				t.Errorf("LISTEN_ADDR port %d, container port http %d", got, want)
			}
			if got, want := portOf(t, env["ADMIN_ADDR"]), containerPort(r.sidecar, "admin"); got != want || want == 0 ||
				!strings.HasPrefix(env["ADMIN_ADDR"], "0.0.0.0:") {
				t.Errorf("ADMIN_ADDR %q, container port admin %d: kubelet probes need the Pod IP", env["ADMIN_ADDR"], want)
			}
			for _, probe := range []string{"livenessProbe", "readinessProbe", "startupProbe"} {
				if port := dig(r.sidecar, probe, "httpGet", "port"); port != "admin" {
					t.Errorf("%s port = %v, want admin", probe, port)
				}
			}
			if path := dig(r.sidecar, "readinessProbe", "httpGet", "path"); path != "/readyz" {
				t.Errorf("readinessProbe path = %v, want /readyz", path)
			}
			// The sidecar forwards to the app on loopback, on the port the app listens on.
			u, err := url.Parse(env["UPSTREAM_URL"])
			if err != nil || u.Hostname() != "127.0.0.1" {
				t.Errorf("UPSTREAM_URL = %q, want the app on 127.0.0.1", env["UPSTREAM_URL"])
			}
			appEnv := containerEnv(r.app)
			if port := appEnv["PORT"]; port != "" && u != nil && u.Port() != port {
				t.Errorf("UPSTREAM_URL port %s, but the app container listens on PORT=%s", u.Port(), port)
			}
			if host := appEnv["HOSTNAME"]; host != "" && host != "127.0.0.1" {
				t.Errorf("the app binds HOSTNAME=%s: other Pods could reach it around the sidecar", host)
			}
			for _, o := range r.objs {
				if o.kind() == "Deployment" {
					assertGraceOutlastsTheDrain(t, o.podSpec(), env)
				}
			}
			checkChartServiceAndPolicy(t, r)
			checkChartHooks(t, r, values)
		})
	}
}

// checkChartServiceAndPolicy: the Service reaches the sidecar only, and the NetworkPolicy
// (when rendered) admits the sidecar's ports only.
func checkChartServiceAndPolicy(t *testing.T, r renderedPod) {
	t.Helper()
	for _, o := range r.objs {
		switch o.kind() {
		case "Service":
			for _, p := range list(dig(o, "spec", "ports")) {
				if p["targetPort"] != "http" {
					t.Errorf("Service %s targets %v, want the sidecar's port http", o.name(), p["targetPort"])
				}
			}
		case "NetworkPolicy":
			for _, rule := range list(dig(o, "spec", "ingress")) {
				for _, p := range list(rule["ports"]) {
					if p["port"] != "http" && p["port"] != "admin" {
						t.Errorf("NetworkPolicy %s admits port %v: only the sidecar's ports may be reachable", o.name(), p["port"])
					}
				}
			}
		}
	}
}

// checkChartHooks: the database Job runs the shipped script before install and upgrade,
// with every file it needs in its ConfigMap, which is created before it.
func checkChartHooks(t *testing.T, r renderedPod, values string) {
	t.Helper()
	var job, sql object
	for _, o := range r.objs {
		switch {
		case o.kind() == "Job":
			job = o
		case o.kind() == "ConfigMap" && strings.HasSuffix(o.name(), "-sql"):
			sql = o
		}
	}
	if strings.Contains(values, "minimal") {
		if job != nil {
			t.Error("dbPrepare.enabled=false still renders the Job")
		}
		return
	}
	if job == nil || sql == nil {
		t.Fatal("no database Job or SQL ConfigMap rendered")
	}
	hook, _ := dig(job, "metadata", "annotations", "helm.sh/hook").(string)
	if !strings.Contains(hook, "pre-install") || !strings.Contains(hook, "pre-upgrade") || dig(sql, "metadata", "annotations", "helm.sh/hook") != hook {
		t.Errorf("Job hook %q, ConfigMap hook %v: want both pre-install,pre-upgrade", hook, dig(sql, "metadata", "annotations", "helm.sh/hook"))
	}
	jw, _ := strconv.Atoi(dig(job, "metadata", "annotations", "helm.sh/hook-weight").(string))
	cw, _ := strconv.Atoi(dig(sql, "metadata", "annotations", "helm.sh/hook-weight").(string))
	if cw >= jw {
		t.Errorf("ConfigMap hook weight %d, Job %d: the ConfigMap must exist first", cw, jw)
	}
	checkPrepareJob(t, job, sql)
}

func TestHelmChartRefusesVariablesItSets(t *testing.T) {
	for _, name := range []string{"DATABASE_URL", "UPSTREAM_URL", "ADMIN_ADDR"} {
		cmd := exec.Command(deployTool(t, "helm"), "template", "web", repoFile(chartDir), "--set", "sidecar.env."+name+"=x")
		out, err := cmd.CombinedOutput()
		if err == nil || !strings.Contains(string(out), "the chart sets "+name+" itself") {
			t.Errorf("sidecar.env.%s: err %v, output:\n%s", name, err, out)
		}
	}
}
