package e2e

import (
	"encoding/json"
	"os"
	"regexp"
	"strings"
	"testing"
)

// TestDocsQuoteTheVersionsTheBuildNeeds: the Go version the README and deploying.md name is
// go.mod's go line (the Dockerfile's golang image its minor release), and the Node.js
// version the README names is the example app's engines floor.
func TestDocsQuoteTheVersionsTheBuildNeeds(t *testing.T) {
	read := func(name string) string {
		b, err := os.ReadFile(repoFile(name))
		if err != nil {
			t.Fatal(err)
		}
		return string(b)
	}
	gomod := regexp.MustCompile(`(?m)^go (\d+\.\d+\.\d+)$`).FindStringSubmatch(read("go.mod"))
	if gomod == nil {
		t.Fatal("go.mod has no go line")
	}
	goVersion := gomod[1]
	readme := read("README.md")
	quoted := regexp.MustCompile(`Go ≥ (\d[\d.]*)`).FindAllStringSubmatch(readme, -1)
	if len(quoted) == 0 {
		t.Error("the README names no Go version")
	}
	for _, q := range quoted {
		if q[1] != goVersion {
			t.Errorf("the README says Go ≥ %s, go.mod says %s", q[1], goVersion)
		}
	}
	minor := goVersion[:strings.LastIndex(goVersion, ".")]
	if !strings.Contains(read("Dockerfile"), "ARG GO_VERSION="+minor+"\n") ||
		!strings.Contains(read("docs/deploying.md"), "`golang:"+minor+"`") {
		t.Errorf("the Dockerfile's golang image or deploying.md's mention of it is not %s (go.mod's %s)", minor, goVersion)
	}

	var pkg struct{ Engines struct{ Node string } }
	if err := json.Unmarshal([]byte(read("examples/nextjs/package.json")), &pkg); err != nil {
		t.Fatal(err)
	}
	floor := regexp.MustCompile(`^\^(\d+\.\d+)\.0\b`).FindStringSubmatch(pkg.Engines.Node)
	if floor == nil || !strings.Contains(readme, "Node.js ≥ "+floor[1]) {
		t.Errorf("the example app needs node %q; the README does not say Node.js ≥ that", pkg.Engines.Node)
	}
}
