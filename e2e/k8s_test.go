package e2e

import (
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/authsidecar/authsidecar/config"
)

// TestKustomizeManifestsRunTheSidecarInFrontOfTheApp renders deploy/k8s and its overlays
// and checks what a deployer relies on: the sidecar's environment loads, the Service
// reaches the sidecar only, and the NetworkPolicies admit the app's port from the ingress
// controller's namespace at most (in the overlays), never from everywhere.
func TestKustomizeManifestsRunTheSidecarInFrontOfTheApp(t *testing.T) {
	for _, dir := range kustomizeDirs {
		t.Run(dir, func(t *testing.T) {
			objs := parseObjects(t, render(t, "kustomize", "build", repoFile(dir)))
			var sidecar, pod map[string]any
			for _, o := range objs {
				if o.kind() != "Deployment" {
					continue
				}
				for _, c := range list(o.podSpec()["containers"]) {
					if c["name"] == "authsidecar" {
						sidecar, pod = c, o.podSpec()
					}
				}
			}
			if sidecar == nil {
				t.Fatal("no authsidecar container")
			}
			// DATABASE_URL, REDIS_URL and ADMIN_TOKEN come from the Secret (envFrom).
			env := containerEnv(sidecar)
			assertGraceOutlastsTheDrain(t, pod, env)
			env["DATABASE_URL"] = "postgres://authsidecar:secret@postgres:5432/app?sslmode=require"
			for name := range env {
				if !slices.Contains(config.Names(), name) {
					t.Errorf("the sidecar gets %s, which is not a configuration variable", name)
				}
			}
			if _, err := config.Load(env, "UPSTREAM_URL", "DATABASE_URL"); err != nil {
				t.Errorf("the sidecar's environment does not load:\n%v", err)
			}
			if !strings.HasPrefix(env["ADMIN_ADDR"], "0.0.0.0:") {
				t.Errorf("ADMIN_ADDR = %q: kubelet probes reach the Pod IP", env["ADMIN_ADDR"])
			}
			policies := 0
			for _, o := range objs {
				switch o.kind() {
				case "Service":
					if o.name() == "web" && dig(o, "spec", "ports") != nil {
						if p := list(dig(o, "spec", "ports"))[0]; p["targetPort"] != "http" || p["port"] != 80 {
							t.Errorf("Service web: port %v → %v, want 80 → the sidecar's port http", p["port"], p["targetPort"])
						}
					}
				case "NetworkPolicy":
					policies++
					for _, rule := range list(dig(o, "spec", "ingress")) {
						for _, p := range list(rule["ports"]) {
							if p["port"] != "http" && (rule["from"] == nil || p["port"] != "admin" && p["port"] != "app-http") {
								t.Errorf("NetworkPolicy %s admits port %v from %v", o.name(), p["port"], rule["from"])
							}
						}
					}
				}
			}
			if policies == 0 {
				t.Error("no NetworkPolicy")
			}
		})
	}
}

// assertGraceOutlastsTheDrain: deploying.md's terminationGracePeriodSeconds (30 s) above
// SHUTDOWN_TIMEOUT (15 s), so a rollout lets in-flight requests drain before the kubelet
// kills the container.
func assertGraceOutlastsTheDrain(t *testing.T, pod map[string]any, env map[string]string) {
	t.Helper()
	grace, _ := pod["terminationGracePeriodSeconds"].(int)
	drain, err := time.ParseDuration(env["SHUTDOWN_TIMEOUT"])
	if err != nil {
		drain = 15 * time.Second // the default
	}
	if grace != 30 || drain != 15*time.Second {
		t.Errorf("terminationGracePeriodSeconds %d and SHUTDOWN_TIMEOUT %v, the docs say 30 and 15s", grace, drain)
	}
	if time.Duration(grace)*time.Second <= drain {
		t.Errorf("terminationGracePeriodSeconds %d does not outlast SHUTDOWN_TIMEOUT %v", grace, drain)
	}
}
