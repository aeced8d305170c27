package e2e

import (
	"os"
	"strings"
	"testing"
)

// TestReadmeConfigurationTableIsExactlyTheHelp: the README's configuration table lists the
// variables `authsidecar -h` prints, in its order, each with the same default and meaning.
func TestReadmeConfigurationTableIsExactlyTheHelp(t *testing.T) {
	t.Parallel()
	code, stdout, _ := runSidecar(t, nil, "-h")
	if code != 0 {
		t.Fatalf("-h exited %d", code)
	}
	_, table, ok := strings.Cut(stdout, "  VARIABLE")
	if !ok {
		t.Fatalf("-h prints no table:\n%s", stdout)
	}
	lines := strings.Split("  VARIABLE"+table, "\n")
	def, meaning := strings.Index(lines[0], "DEFAULT"), strings.Index(lines[0], "MEANING")
	var want []string
	for _, l := range lines[1:] {
		if strings.TrimSpace(l) == "" {
			continue
		}
		d := strings.TrimSpace(l[def:meaning])
		if d == "(empty)" {
			d = ""
		} else {
			d = "`" + d + "`"
		}
		want = append(want, "| `"+strings.TrimSpace(l[:def])+"` | "+d+" | "+strings.TrimSpace(l[meaning:])+" |")
	}
	readme, err := os.ReadFile(repoFile("README.md"))
	if err != nil {
		t.Fatal(err)
	}
	_, rest, _ := strings.Cut(string(readme), "| variable | default | meaning |\n|---|---|---|\n")
	rows, _, _ := strings.Cut(rest, "\n\n")
	got := strings.Split(rows, "\n")
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("README table differs from -h.\nREADME:\n%s\n-h as rows:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}
