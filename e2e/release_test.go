package e2e

import (
	"bufio"
	"crypto/sha256"
	"debug/buildinfo"
	"debug/elf"
	"encoding/hex"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"slices"
	"strings"
	"testing"
)

// TestReleaseScriptBuildsStaticBinariesWithChecksums runs scripts/release.sh into a
// temporary directory and checks what a user downloads: one static ELF executable per
// architecture, stamped with the version, and a SHA256SUMS that matches them.
func TestReleaseScriptBuildsStaticBinariesWithChecksums(t *testing.T) {
	dist := t.TempDir()
	cmd := exec.Command("bash", repoFile("scripts/release.sh"))
	cmd.Env = append(os.Environ(), "VERSION=v9.9.9-release-test", "DIST="+dist)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("scripts/release.sh: %v\n%s", err, out)
	}
	machines := map[string]elf.Machine{"amd64": elf.EM_X86_64, "arm64": elf.EM_AARCH64}
	sums := readSums(t, filepath.Join(dist, "SHA256SUMS"))
	if len(sums) != len(machines) {
		t.Errorf("SHA256SUMS lists %v, want one binary per architecture", sums)
	}
	for arch, machine := range machines {
		name := "authsidecar-v9.9.9-release-test-linux-" + arch
		path := filepath.Join(dist, name)
		f, err := elf.Open(path)
		if err != nil {
			t.Errorf("%s: %v", name, err)
			continue
		}
		if f.Machine != machine || f.Type != elf.ET_EXEC {
			t.Errorf("%s: machine %v, type %v; want %v executable", name, f.Machine, f.Type, machine)
		}
		for _, p := range f.Progs {
			if p.Type == elf.PT_INTERP || p.Type == elf.PT_DYNAMIC {
				t.Errorf("%s is dynamically linked", name)
			}
		}
		if f.Section(".symtab") != nil {
			t.Errorf("%s keeps its symbol table (-s not applied)", name)
		}
		f.Close()
		raw, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		sum := sha256.Sum256(raw)
		if sums[name] != hex.EncodeToString(sum[:]) {
			t.Errorf("SHA256SUMS says %s for %s, the file hashes to %x", sums[name], name, sum)
		}
		if info, err := buildinfo.ReadFile(path); err != nil || !slices.Contains(info.Settings, debug.BuildSetting{Key: "-tags", Value: "grpcnotrace"}) {
			t.Errorf("%s: not built with -tags grpcnotrace (9 MB more): %v", name, err)
		}
		if arch == runtime.GOARCH && runtime.GOOS == "linux" {
			out, err := exec.Command(path, "version").Output()
			if err != nil || !strings.HasPrefix(string(out), "authsidecar v9.9.9-release-test (") {
				t.Errorf("%s version = %q, %v; want the stamped version", name, out, err)
			}
		}
	}
}

// readSums parses a sha256sum file: "<hex>  <name>" per line.
func readSums(tb testing.TB, path string) map[string]string {
	tb.Helper()
	f, err := os.Open(path)
	if err != nil {
		tb.Fatal(err)
	}
	defer f.Close()
	sums := map[string]string{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		sum, name, ok := strings.Cut(sc.Text(), "  ")
		if !ok || len(sum) != 64 {
			tb.Fatalf("%s: malformed line %q", path, sc.Text())
		}
		sums[name] = sum
	}
	return sums
}

// TestEveryBuildOfTheBinaryDropsGRPCTrace: each place that builds the sidecar builds it with
// -tags grpcnotrace, as the image does; without it gRPC links golang.org/x/net/trace and its
// templates, which cost the binary 9 MB.
func TestEveryBuildOfTheBinaryDropsGRPCTrace(t *testing.T) {
	for _, name := range []string{"Dockerfile", "scripts/release.sh", "scripts/demo.sh", "scripts/e2e.sh"} {
		raw, err := os.ReadFile(repoFile(name))
		if err != nil {
			t.Fatal(err)
		}
		builds := 0
		for _, line := range strings.Split(string(raw), "\n") {
			if !strings.Contains(line, "go build -") || strings.HasPrefix(strings.TrimSpace(line), "#") {
				continue
			}
			builds++
			if !strings.Contains(line, "-tags grpcnotrace") {
				t.Errorf("%s: %q builds without -tags grpcnotrace", name, strings.TrimSpace(line))
			}
		}
		if builds == 0 {
			t.Errorf("%s: no go build line found", name)
		}
	}
}
