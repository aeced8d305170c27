package testenv

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"sort"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// PostgresPair is a private Postgres primary with a streaming standby that replays every
// change only after ApplyDelay, like a replica that lags. Both run on loopback ports as
// the postgres OS user (initdb refuses root) and are stopped by PID at cleanup.
type PostgresPair struct {
	Primary, Standby *PostgresServer
	ApplyDelay       time.Duration
}

// PostgresServer is one private postgres process.
type PostgresServer struct {
	tb      testing.TB
	bin     string
	dataDir string
	port    int
	cred    *syscall.Credential
	caFile  string // the CA that verifies the server (StartPostgresTLS), "" without TLS

	mu     sync.Mutex
	cmd    *exec.Cmd
	exited chan struct{}
}

// StartPostgresPair runs initdb, starts the primary, makes the standby with
// pg_basebackup -R, sets its recovery_min_apply_delay, starts it, and waits for both.
func StartPostgresPair(tb testing.TB, applyDelay time.Duration) *PostgresPair {
	tb.Helper()
	bin := postgresBinDir(tb)
	// Not tb.TempDir: its parent is private to this user, and the servers may run as another.
	dir, err := os.MkdirTemp("", "authsidecar-pg-")
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { os.RemoveAll(dir) }) // runs after the servers' Stop (cleanups are LIFO)
	cred := postgresCredential(tb, dir)
	primary := &PostgresServer{tb: tb, bin: bin, dataDir: filepath.Join(dir, "primary"), cred: cred}
	primary.run(tb, "initdb", "-D", primary.dataDir, "-U", "postgres", "--auth=trust", "-E", "UTF8", "--no-sync")
	primary.start(tb, "-c", "wal_level=replica", "-c", "max_wal_senders=4")
	standby := &PostgresServer{tb: tb, bin: bin, dataDir: filepath.Join(dir, "standby"), cred: cred}
	primary.run(tb, "pg_basebackup", "-h", "127.0.0.1", "-p", strconv.Itoa(primary.port), "-U", "postgres",
		"-D", standby.dataDir, "-R", "-X", "stream", "--no-sync")
	standby.start(tb, "-c", "recovery_min_apply_delay="+strconv.Itoa(int(applyDelay.Milliseconds()))+"ms",
		"-c", "hot_standby_feedback=on")
	return &PostgresPair{Primary: primary, Standby: standby, ApplyDelay: applyDelay}
}

// postgresBinDir finds the newest installed server's binaries (Debian keeps them off PATH).
func postgresBinDir(tb testing.TB) string {
	tb.Helper()
	if out, err := exec.Command("pg_config", "--bindir").Output(); err == nil {
		if dir := string(out[:len(out)-1]); fileExists(filepath.Join(dir, "initdb")) {
			return dir
		}
	}
	dirs, _ := filepath.Glob("/usr/lib/postgresql/*/bin")
	sort.Slice(dirs, func(i, j int) bool { return versionOf(dirs[i]) < versionOf(dirs[j]) })
	for i := len(dirs) - 1; i >= 0; i-- {
		if fileExists(filepath.Join(dirs[i], "initdb")) {
			return dirs[i]
		}
	}
	requireBinary(tb, "initdb") // fails under CI, skips elsewhere
	path, _ := exec.LookPath("initdb")
	return filepath.Dir(path)
}

func versionOf(binDir string) int {
	v, _ := strconv.Atoi(filepath.Base(filepath.Dir(binDir)))
	return v
}

func fileExists(path string) bool {
	_, err := os.Stat(path)
	return err == nil
}

// postgresCredential is the identity the servers run as: the postgres OS user when the
// tests run as root, which owns dir then; nil (this process's user) otherwise.
func postgresCredential(tb testing.TB, dir string) *syscall.Credential {
	tb.Helper()
	if os.Geteuid() != 0 {
		return nil
	}
	u, err := user.Lookup("postgres")
	if err != nil {
		tb.Fatalf("running as root needs the postgres OS user (apt-get install postgresql): %v", err)
	}
	uid, _ := strconv.Atoi(u.Uid)
	gid, _ := strconv.Atoi(u.Gid)
	if err := os.Chown(dir, uid, gid); err != nil {
		tb.Fatal(err)
	}
	return &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}
}

// run runs one of the server's programs to completion as the server's user.
func (s *PostgresServer) run(tb testing.TB, program string, args ...string) {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, filepath.Join(s.bin, program), args...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: s.cred}
	cmd.Dir = filepath.Dir(s.dataDir)
	if out, err := cmd.CombinedOutput(); err != nil {
		tb.Fatalf("%s: %v\n%s", program, err, out)
	}
}

// start starts postgres on a free port, stopped at cleanup, and waits until it answers.
func (s *PostgresServer) start(tb testing.TB, settings ...string) {
	tb.Helper()
	var err error
	for range 3 { // the free port can be taken before postgres binds it
		s.port = FreePort(tb)
		if err = s.startOnce(settings); err == nil {
			tb.Cleanup(s.Stop)
			return
		}
	}
	tb.Fatalf("start postgres in %s: %v", s.dataDir, err)
}

func (s *PostgresServer) startOnce(settings []string) error {
	args := append([]string{"-D", s.dataDir, "-p", strconv.Itoa(s.port), "-c", "listen_addresses=127.0.0.1",
		"-c", "unix_socket_directories=" + filepath.Dir(s.dataDir), "-c", "fsync=off", "-c", "max_connections=60"}, settings...)
	logPath := s.dataDir + ".log"
	logFile, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	defer logFile.Close()
	cmd := exec.Command(filepath.Join(s.bin, "postgres"), args...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: s.cred}
	cmd.Stdout, cmd.Stderr = logFile, logFile
	if err := cmd.Start(); err != nil {
		return err
	}
	exited := make(chan struct{})
	go func() {
		_ = cmd.Wait() // stopped on purpose; the exit status says nothing
		close(exited)
	}()
	s.mu.Lock()
	s.cmd, s.exited = cmd, exited
	s.mu.Unlock()
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		select {
		case <-exited:
			out, _ := os.ReadFile(logPath)
			return fmt.Errorf("postgres exited during start; log:\n%s", out)
		default:
		}
		if s.ping() == nil {
			return nil
		}
		time.Sleep(100 * time.Millisecond)
	}
	s.Stop()
	return errors.New("postgres did not accept connections within 30s")
}

func (s *PostgresServer) ping() error {
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, s.URL("postgres"))
	if err != nil {
		return err
	}
	return conn.Close(ctx)
}

// URL is the DSN of database on this server, as the postgres superuser: without TLS, or for
// a server of StartPostgresTLS with sslmode=verify-full and its CA as sslrootcert.
func (s *PostgresServer) URL(database string) string {
	query := "?sslmode=disable"
	if s.caFile != "" {
		query = "?sslmode=verify-full&sslrootcert=" + url.QueryEscape(s.caFile)
	}
	return "postgres://postgres@127.0.0.1:" + strconv.Itoa(s.port) + "/" + database + query
}

// Addr is the server's host:port.
func (s *PostgresServer) Addr() string { return "127.0.0.1:" + strconv.Itoa(s.port) }

// Stop shuts the server down at once (SIGQUIT: immediate shutdown) and waits for it.
func (s *PostgresServer) Stop() {
	s.mu.Lock()
	cmd, exited := s.cmd, s.exited
	s.cmd = nil
	s.mu.Unlock()
	if cmd == nil {
		return
	}
	_ = cmd.Process.Signal(syscall.SIGQUIT)
	select {
	case <-exited:
	case <-time.After(10 * time.Second):
		_ = cmd.Process.Kill()
		<-exited
	}
}

// NewDB creates and migrates a database on the primary, and waits until the standby has
// replayed it (ApplyDelay and then some).
func (p *PostgresPair) NewDB(tb testing.TB) *DB {
	tb.Helper()
	db := NewDBOn(tb, p.Primary.URL("postgres"))
	name := filepath.Base(db.Pool.Config().ConnConfig.Database)
	deadline := time.Now().Add(p.ApplyDelay + 30*time.Second)
	for {
		if conn, err := pgx.Connect(context.Background(), p.Standby.URL(name)); err == nil {
			var n int
			err = conn.QueryRow(context.Background(), `SELECT count(*) FROM pg_trigger WHERE tgname LIKE 'authsidecar_%'`).Scan(&n)
			_ = conn.Close(context.Background())
			if err == nil && n == 4 {
				return db
			}
		}
		if time.Now().After(deadline) {
			tb.Fatalf("the standby did not replay database %s", name)
		}
		time.Sleep(200 * time.Millisecond)
	}
}
