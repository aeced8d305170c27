package e2e

import (
	"debug/elf"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"

	"github.com/authsidecar/authsidecar/config"
)

// composeService mirrors the parts of a docker-compose.yml service the checks read.
type composeService struct {
	Ports       []string          `yaml:"ports"`
	Command     []string          `yaml:"command"`
	Environment map[string]string `yaml:"environment"`
	Healthcheck *struct {
		Test []string `yaml:"test"`
	} `yaml:"healthcheck"`
	DependsOn map[string]struct {
		Condition string `yaml:"condition"`
	} `yaml:"depends_on"`
}

func TestComposeStackMatchesTheSpec(t *testing.T) {
	raw, err := os.ReadFile(repoFile("docker-compose.yml"))
	if err != nil {
		t.Fatal(err)
	}
	var c struct {
		Services map[string]composeService `yaml:"services"`
	}
	if err := yaml.Unmarshal(raw, &c); err != nil {
		t.Fatalf("docker-compose.yml: %v", err)
	}
	for _, name := range []string{"postgres", "redis", "app", "sidecar"} {
		if s, ok := c.Services[name]; !ok || s.Healthcheck == nil || len(s.Healthcheck.Test) == 0 {
			t.Errorf("service %s missing or without a healthcheck", name)
		}
	}
	side := c.Services["sidecar"]
	for dep := range c.Services {
		if dep != "sidecar" && side.DependsOn[dep].Condition != "service_healthy" {
			t.Errorf("sidecar must wait for %s to be healthy", dep)
		}
	}
	if !slices.ContainsFunc(side.Ports, func(p string) bool { return strings.HasSuffix(p, ":8080") }) {
		t.Errorf("sidecar does not publish 8080: %v", side.Ports)
	}
	if len(c.Services["app"].Ports) != 0 {
		t.Errorf("the app is published (%v): only the sidecar may reach it", c.Services["app"].Ports)
	}
	for k := range side.Environment {
		if !slices.Contains(config.Names(), k) {
			t.Errorf("sidecar sets %s, which is not a configuration variable", k)
		}
	}
	if _, err := config.Load(side.Environment, "UPSTREAM_URL", "DATABASE_URL"); err != nil {
		t.Errorf("the sidecar's compose environment does not load: %v", err)
	}
	if !slices.Contains(c.Services["redis"].Command, "--requirepass") ||
		!strings.Contains(side.Environment["REDIS_URL"], ":redis-demo-password@") {
		t.Error("Redis must be password-protected and the sidecar must use the password")
	}
}

// TestDockerfileBuildsAStaticStampedBinary runs the image's build step as a plain command
// (no Docker engine here) and checks what the runtime stage relies on.
func TestDockerfileBuildsAStaticStampedBinary(t *testing.T) {
	raw, err := os.ReadFile(repoFile("Dockerfile"))
	if err != nil {
		t.Fatal(err)
	}
	df := string(raw)
	for _, want := range []string{"FROM gcr.io/distroless/static", "USER 65532:65532", "EXPOSE 8080",
		`HEALTHCHECK`, `"/authsidecar", "healthcheck"`, `ENTRYPOINT ["/authsidecar"]`, "ENV CGO_ENABLED=0"} {
		if !strings.Contains(df, want) {
			t.Errorf("Dockerfile lacks %q", want)
		}
	}
	m := regexp.MustCompile(`(?m)^RUN go build (.*) -o /out/authsidecar \.$`).FindStringSubmatch(df)
	if m == nil {
		t.Fatal("Dockerfile has no `RUN go build … -o /out/authsidecar .` step")
	}
	flags := strings.ReplaceAll(m[1], "${VERSION}", "v9.9.9-test")
	out := filepath.Join(t.TempDir(), "authsidecar")
	args := append(splitQuoted(flags), "-o", out, ".")
	cmd := exec.Command("go", append([]string{"build"}, args...)...)
	cmd.Dir = moduleRoot
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build %v: %v\n%s", args, err, b)
	}
	f, err := elf.Open(out)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			t.Error("the binary is dynamically linked; distroless/static cannot run it")
		}
	}
	if b, err := exec.Command(out, "version").Output(); err != nil || !strings.Contains(string(b), "v9.9.9-test") {
		t.Errorf("version = %q, %v; want the stamped version", b, err)
	}
}

// splitQuoted splits a shell word list with double-quoted words, as the Dockerfile writes it.
func splitQuoted(s string) []string {
	var words []string
	for i, part := range strings.Split(s, `"`) {
		if i%2 == 1 {
			words = append(words, part)
			continue
		}
		words = append(words, strings.Fields(part)...)
	}
	return words
}
