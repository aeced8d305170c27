package e2e

import (
	"bytes"
	"errors"
	"io"
	"os"
	"os/exec"
	"strings"
	"sync"
	"testing"

	"go.yaml.in/yaml/v3"
)

// deployTools holds the paths scripts/tools.sh printed, one lookup (and at most one build)
// per tool and test run.
var deployTools struct {
	mu    sync.Mutex
	paths map[string]string
	errs  map[string]string
}

// deployTool returns the path of helm or kustomize, built and cached by scripts/tools.sh on
// first use. Without the tool the test skips, except under CI, where it fails.
func deployTool(tb testing.TB, name string) string {
	tb.Helper()
	t := &deployTools
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.paths == nil {
		t.paths, t.errs = map[string]string{}, map[string]string{}
	}
	if _, done := t.paths[name]; !done && t.errs[name] == "" {
		var stderr bytes.Buffer
		cmd := exec.Command("bash", repoFile("scripts/tools.sh"), name)
		cmd.Stderr = &stderr
		out, err := cmd.Output()
		if err != nil {
			t.errs[name] = err.Error() + "\n" + stderr.String()
		} else {
			t.paths[name] = strings.TrimSpace(string(out))
		}
	}
	if msg := t.errs[name]; msg != "" {
		if os.Getenv("CI") != "" {
			tb.Fatalf("scripts/tools.sh %s: %s", name, msg)
		}
		tb.Skipf("%s unavailable (scripts/tools.sh could not build it): %s", name, msg)
	}
	return t.paths[name]
}

// render runs a deploy tool and returns its stdout, failing the test with its stderr.
func render(tb testing.TB, tool string, args ...string) []byte {
	tb.Helper()
	cmd := exec.Command(deployTool(tb, tool), args...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		tb.Fatalf("%s %s: %v\n%s", tool, strings.Join(args, " "), err, stderr.String())
	}
	return out
}

// object is one Kubernetes object, as generic YAML.
type object map[string]any

// parseObjects splits a multi-document YAML stream into its objects.
func parseObjects(tb testing.TB, stream []byte) []object {
	tb.Helper()
	dec := yaml.NewDecoder(bytes.NewReader(stream))
	var objs []object
	for {
		// Decoded as a plain map: into an object, nested maps would be objects too.
		var o map[string]any
		err := dec.Decode(&o)
		if errors.Is(err, io.EOF) {
			return objs
		}
		if err != nil {
			tb.Fatalf("parse rendered manifests: %v", err)
		}
		if o != nil {
			objs = append(objs, object(o))
		}
	}
}

func (o object) kind() string { s, _ := o["kind"].(string); return s }

func (o object) name() string { s, _ := dig(o, "metadata", "name").(string); return s }

// dig walks nested maps by key; nil when a key is missing.
func dig(v any, keys ...string) any {
	for _, k := range keys {
		m, ok := v.(map[string]any)
		if !ok {
			if o, isObj := v.(object); isObj {
				m = o
			} else {
				return nil
			}
		}
		v = m[k]
	}
	return v
}

// podSpec returns the Pod spec of a workload object, or nil for other kinds.
func (o object) podSpec() map[string]any {
	var spec any
	switch o.kind() {
	case "Pod":
		spec = o["spec"]
	case "Deployment", "StatefulSet", "DaemonSet", "ReplicaSet", "Job":
		spec = dig(o, "spec", "template", "spec")
	case "CronJob":
		spec = dig(o, "spec", "jobTemplate", "spec", "template", "spec")
	}
	m, _ := spec.(map[string]any)
	return m
}

// list returns v as a list of maps, skipping anything else.
func list(v any) []map[string]any {
	items, _ := v.([]any)
	out := make([]map[string]any, 0, len(items))
	for _, it := range items {
		if m, ok := it.(map[string]any); ok {
			out = append(out, m)
		}
	}
	return out
}
