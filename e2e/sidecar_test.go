package e2e

// Helpers for the black-box, fault and load tests: they build the authsidecar binary once per
// test run, start it as a real process on free loopback ports, and stop it with SIGTERM.

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime/debug"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/authsidecar/authsidecar/internal/testenv"
)

// moduleRoot is the repository root as seen from this package's directory, where go test
// runs the tests: the binary is built there and the repository files are read from there.
const moduleRoot = ".."

// repoFile returns the path of name, a path relative to the repository root.
func repoFile(name string) string { return filepath.Join(moduleRoot, name) }

// builtBinary is the authsidecar binary shared by every test of this run.
var builtBinary struct {
	once sync.Once
	dir  string
	path string
	err  error
}

func TestMain(m *testing.M) {
	code := m.Run()
	if builtBinary.dir != "" {
		os.RemoveAll(builtBinary.dir)
	}
	os.Exit(code)
}

// sidecarBinary builds the binary on first use (with -race when the tests run with it, so
// the race detector watches the process too) and returns its path.
func sidecarBinary(tb testing.TB) string {
	tb.Helper()
	b := &builtBinary
	b.once.Do(func() {
		b.dir, b.err = os.MkdirTemp("", "authsidecar-bin-")
		if b.err != nil {
			return
		}
		b.path = filepath.Join(b.dir, "authsidecar")
		args := []string{"build", "-o", b.path, "-tags", "grpcnotrace", "-ldflags", "-X main.version=blackbox-test"}
		if raceEnabled() {
			args = append(args, "-race")
		}
		cmd := exec.Command("go", append(args, ".")...)
		cmd.Dir = moduleRoot
		if out, err := cmd.CombinedOutput(); err != nil {
			b.err = fmt.Errorf("go build: %v\n%s", err, out)
		}
	})
	if b.err != nil {
		tb.Fatalf("build authsidecar: %v", b.err)
	}
	return b.path
}

func raceEnabled() bool {
	info, ok := debug.ReadBuildInfo()
	if !ok {
		return false
	}
	for _, s := range info.Settings {
		if s.Key == "-race" {
			return s.Value == "true"
		}
	}
	return false
}

// syncBuffer is a bytes.Buffer safe for the child's writes and the test's reads.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// Sidecar is a running authsidecar process.
type Sidecar struct {
	URL      string // public listener, http://127.0.0.1:port
	AdminURL string // internal listener
	Client   *http.Client

	cmd      *exec.Cmd
	stderr   *syncBuffer
	exited   chan struct{}
	stopOnce sync.Once
	exitCode int
}

// runSidecar runs the binary with args and env (nothing inherited) to completion and
// returns its exit code, stdout and stderr.
func runSidecar(tb testing.TB, env map[string]string, args ...string) (code int, stdout, stderr string) {
	tb.Helper()
	bin := sidecarBinary(tb) // before the deadline starts: the first call builds it
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Env = envList(env)
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	err := cmd.Run()
	var exit *exec.ExitError
	switch {
	case err == nil:
	case errors.As(err, &exit):
		code = exit.ExitCode()
	default:
		tb.Fatalf("run authsidecar %v: %v", args, err)
	}
	return code, out.String(), errOut.String()
}

func envList(env map[string]string) []string {
	list := []string{"PATH=" + os.Getenv("PATH")}
	for k, v := range env {
		list = append(list, k+"="+v)
	}
	return list
}

// StartSidecar starts the binary with env (nothing else inherited) on free loopback ports,
// waits for /healthz, and stops it with SIGTERM at cleanup, failing the test unless it
// exits 0.
func StartSidecar(tb testing.TB, env map[string]string) *Sidecar {
	tb.Helper()
	var lastErr error
	for range 3 { // a free port can be taken by someone else before the sidecar binds it
		s, err := startSidecar(tb, env)
		if err == nil {
			tb.Cleanup(func() {
				start := time.Now()
				code := s.Stop(tb)
				tb.Logf("authsidecar stopped in %v", time.Since(start).Round(time.Millisecond))
				switch {
				case code != 0:
					tb.Errorf("authsidecar exited %d at cleanup; stderr:\n%s", code, s.Stderr())
				case tb.Failed():
					tb.Logf("authsidecar output:\n%s", s.Stderr())
				}
			})
			return s
		}
		lastErr = err
	}
	tb.Fatalf("start authsidecar: %v", lastErr)
	return nil
}

func startSidecar(tb testing.TB, env map[string]string) (*Sidecar, error) {
	tb.Helper()
	full := map[string]string{"LOG_LEVEL": "warn"}
	for k, v := range env {
		full[k] = v
	}
	publicPort, adminPort := testenv.FreePort(tb), testenv.FreePort(tb)
	public := "127.0.0.1:" + strconv.Itoa(publicPort)
	admin := "127.0.0.1:" + strconv.Itoa(adminPort)
	full["LISTEN_ADDR"], full["ADMIN_ADDR"] = public, admin

	s := &Sidecar{
		URL: "http://" + public, AdminURL: "http://" + admin,
		stderr: &syncBuffer{}, exited: make(chan struct{}), exitCode: -1,
	}
	s.cmd = exec.Command(sidecarBinary(tb))
	s.cmd.Env = envList(full)
	s.cmd.Stdout, s.cmd.Stderr = s.stderr, s.stderr
	if err := s.cmd.Start(); err != nil {
		return nil, err
	}
	go func() {
		_ = s.cmd.Wait() // the exit code is read from ProcessState
		close(s.exited)
	}()
	tr := &http.Transport{MaxIdleConnsPerHost: 256, DisableCompression: true}
	s.Client = &http.Client{
		Transport:     tr,
		Timeout:       15 * time.Second,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
	tb.Cleanup(tr.CloseIdleConnections)
	if err := s.awaitHealthz(publicPort, adminPort); err != nil {
		s.Stop(tb)
		return nil, fmt.Errorf("%w; stderr:\n%s", err, s.Stderr())
	}
	return s, nil
}

// awaitHealthz waits until this process (not another one that took a port first) listens
// on both ports and /healthz answers 200.
func (s *Sidecar) awaitHealthz(ports ...int) error {
	deadline := time.Now().Add(15 * time.Second)
	for time.Now().Before(deadline) {
		select {
		case <-s.exited:
			return errors.New("authsidecar exited before /healthz answered")
		default:
		}
		if listensOn(s.cmd.Process.Pid, ports...) {
			resp, err := http.Get(s.AdminURL + "/healthz")
			if err == nil {
				resp.Body.Close()
				if resp.StatusCode == http.StatusOK {
					return nil
				}
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	return errors.New("/healthz did not answer 200 within 15s")
}

// listensOn reports whether process pid holds a listening IPv4 TCP socket on every port
// (Linux: the socket inodes of /proc/pid/fd matched against /proc/net/tcp).
func listensOn(pid int, ports ...int) bool {
	fds, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
	if err != nil {
		return false
	}
	inodes := map[string]bool{}
	for _, fd := range fds {
		link, err := os.Readlink(fmt.Sprintf("/proc/%d/fd/%s", pid, fd.Name()))
		if inode, ok := strings.CutPrefix(link, "socket:["); ok && err == nil {
			inodes[strings.TrimSuffix(inode, "]")] = true
		}
	}
	table, err := os.ReadFile("/proc/net/tcp")
	if err != nil {
		return false
	}
	listening := map[int]bool{}
	for _, line := range strings.Split(string(table), "\n")[1:] {
		f := strings.Fields(line)
		if len(f) < 10 || f[3] != "0A" || !inodes[f[9]] { // 0A: LISTEN
			continue
		}
		_, portHex, _ := strings.Cut(f[1], ":")
		if port, err := strconv.ParseInt(portHex, 16, 32); err == nil {
			listening[int(port)] = true
		}
	}
	for _, p := range ports {
		if !listening[p] {
			return false
		}
	}
	return true
}

// Stop sends SIGTERM, waits up to 30 s (then SIGKILL) and returns the exit code. Calling it
// again returns the same code.
func (s *Sidecar) Stop(tb testing.TB) int {
	tb.Helper()
	s.stopOnce.Do(func() {
		_ = s.cmd.Process.Signal(syscall.SIGTERM) // fails only if it already exited
		select {
		case <-s.exited:
		case <-time.After(30 * time.Second):
			tb.Errorf("authsidecar did not exit within 30s of SIGTERM; killing it")
			_ = s.cmd.Process.Kill()
			<-s.exited
		}
		s.exitCode = s.cmd.ProcessState.ExitCode()
	})
	return s.exitCode
}

// Kill ends the process with SIGKILL, as a crash would, and waits for it; its cleanup then
// expects no clean exit.
func (s *Sidecar) Kill(tb testing.TB) {
	tb.Helper()
	s.stopOnce.Do(func() {
		if err := s.cmd.Process.Kill(); err != nil {
			tb.Fatalf("SIGKILL: %v", err)
		}
		<-s.exited
		s.exitCode = 0 // killed on purpose
	})
}

// Terminate sends SIGTERM without waiting; Stop then collects the exit code.
func (s *Sidecar) Terminate(tb testing.TB) {
	tb.Helper()
	if err := s.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		tb.Fatalf("SIGTERM: %v", err)
	}
}

// Exited is closed once the process has exited.
func (s *Sidecar) Exited() <-chan struct{} { return s.exited }

// Stderr returns everything the process wrote so far (stdout included).
func (s *Sidecar) Stderr() string { return s.stderr.String() }

// Response is a fully read response.
type Response struct {
	Status   int
	Header   http.Header
	Trailer  http.Header
	Body     string
	Duration time.Duration
}

// Do sends req and reads the whole response.
func (s *Sidecar) Do(tb testing.TB, req *http.Request) Response {
	tb.Helper()
	start := time.Now()
	resp, err := s.Client.Do(req)
	if err != nil {
		tb.Fatalf("%s %s: %v", req.Method, req.URL, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		tb.Fatalf("read %s %s: %v", req.Method, req.URL, err)
	}
	return Response{Status: resp.StatusCode, Header: resp.Header, Trailer: resp.Trailer,
		Body: string(body), Duration: time.Since(start)}
}

// Get sends GET path on the public listener, with the token as a Bearer token unless empty.
func (s *Sidecar) Get(tb testing.TB, path, token string) Response {
	tb.Helper()
	return s.Do(tb, newRequest(tb, http.MethodGet, s.URL+path, token, nil))
}

// Admin sends GET path on the internal listener.
func (s *Sidecar) Admin(tb testing.TB, path string) Response {
	tb.Helper()
	return s.Do(tb, newRequest(tb, http.MethodGet, s.AdminURL+path, "", nil))
}

// Invalidate posts body to /admin/invalidate on the internal listener, with the bearer
// token unless empty.
func (s *Sidecar) Invalidate(tb testing.TB, bearer, body string) Response {
	tb.Helper()
	req := newRequest(tb, http.MethodPost, s.AdminURL+"/admin/invalidate", bearer, strings.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	return s.Do(tb, req)
}

func newRequest(tb testing.TB, method, url, token string, body io.Reader) *http.Request {
	tb.Helper()
	req, err := http.NewRequest(method, url, body)
	if err != nil {
		tb.Fatalf("new request: %v", err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	return req
}
