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
	Image       string            `yaml:"image"`
	Volumes     []string          `yaml:"volumes"`
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
	// The README's table of what `docker compose up --build` runs.
	if pg, rd := c.Services["postgres"].Image, c.Services["redis"].Image; pg != "postgres:15" || rd != "redis:7" {
		t.Errorf("images %s and %s, the README says postgres:15 and redis:7", pg, rd)
	}
	var initSQL []string
	for _, v := range c.Services["postgres"].Volumes {
		if src, dst, _ := strings.Cut(v, ":"); strings.HasPrefix(dst, "/docker-entrypoint-initdb.d/") {
			initSQL = append(initSQL, strings.TrimPrefix(src, "./"))
		}
	}
	if want := []string{"pgsession/sql/schema.sql", "pgsession/sql/notify.sql", "deploy/demo/role-login.sql",
		"pgsession/sql/role.sql", "deploy/demo/seed.sql"}; !slices.Equal(initSQL, want) {
		t.Errorf("init SQL %v, the README says %v, in that order", initSQL, want)
	}
	if c.Services["app"].DependsOn["postgres"].Condition != "service_healthy" {
		t.Error("the app must wait for Postgres to be healthy")
	}
	for k, want := range map[string]string{"PUBLIC_PATHS": "/login,/_next/static,/favicon.ico", "SESSION_COOKIE": "session",
		"ADMIN_ADDR": "127.0.0.1:9091"} {
		if side.Environment[k] != want {
			t.Errorf("sidecar %s = %q, the README says %q", k, side.Environment[k], want)
		}
	}
	if !slices.Equal(side.Ports, []string{"127.0.0.1:8080:8080"}) || !strings.HasPrefix(side.Environment["DATABASE_URL"], "postgres://authsidecar:") {
		t.Errorf("sidecar published on %v as %q; the README says 127.0.0.1:8080, as the least-privilege role authsidecar",
			side.Ports, strings.SplitN(side.Environment["DATABASE_URL"], "@", 2)[0])
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
