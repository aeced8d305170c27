package testenv

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// RedisURL returns the shared test Redis URL from AUTHSIDECAR_TEST_REDIS_URL.
func RedisURL(tb testing.TB) string {
	tb.Helper()
	return requireEnv(tb, EnvRedisURL)
}

// NewRedisClient returns a client of the shared test Redis, closed at cleanup.
func NewRedisClient(tb testing.TB) *redis.Client {
	tb.Helper()
	return RedisClient(tb, RedisURL(tb), nil)
}

// RedisClient returns a client of the Redis at rawURL, closed at cleanup; configure, unless
// nil, adjusts the options parsed from the URL first.
func RedisClient(tb testing.TB, rawURL string, configure func(*redis.Options)) *redis.Client {
	tb.Helper()
	opts, err := redis.ParseURL(rawURL)
	if err != nil {
		tb.Fatalf("testenv: parse Redis URL: %v", err)
	}
	if configure != nil {
		configure(opts)
	}
	rdb := redis.NewClient(opts)
	tb.Cleanup(func() { rdb.Close() })
	return rdb
}

// Prefix returns a key prefix unique to the test ("test:<random>:") and deletes every key
// under it at cleanup, so tests can share one Redis.
func Prefix(tb testing.TB, rdb *redis.Client) string {
	tb.Helper()
	prefix := "test:" + randomHex(8) + ":"
	tb.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := deletePrefix(ctx, rdb, prefix); err != nil {
			tb.Logf("testenv: clean up keys %s*: %v", prefix, err)
		}
	})
	return prefix
}

func deletePrefix(ctx context.Context, rdb *redis.Client, prefix string) error {
	iter := rdb.Scan(ctx, 0, prefix+"*", 500).Iterator()
	var keys []string
	for iter.Next(ctx) {
		keys = append(keys, iter.Val())
	}
	if err := iter.Err(); err != nil {
		return err
	}
	for len(keys) > 0 {
		n := min(len(keys), 500)
		if err := rdb.Del(ctx, keys[:n]...).Err(); err != nil {
			return err
		}
		keys = keys[n:]
	}
	return nil
}

// RedisOption configures StartRedis.
type RedisOption func(*RedisServer)

// RedisPassword makes the server require a password (requirepass).
func RedisPassword(password string) RedisOption {
	return func(s *RedisServer) { s.password = password }
}

// RedisArgs passes more arguments to redis-server, e.g. "--replicaof", host, port.
func RedisArgs(args ...string) RedisOption {
	return func(s *RedisServer) { s.args = append(s.args, args...) }
}

// RedisServer is a private redis-server process on a loopback port, killed at cleanup.
// Its methods are not safe for concurrent use.
type RedisServer struct {
	tb       testing.TB
	port     int
	password string
	dir      string
	args     []string // more arguments, after the fixture's own
	conf     string   // a config file to start from (Sentinel mode), "" for none
	tls      *redisTLS

	mu     sync.Mutex
	cmd    *exec.Cmd
	exited chan struct{} // closed when cmd has been waited for
}

// StartRedis starts redis-server (from PATH) on a free 127.0.0.1 port without
// persistence and waits until it answers PING.
func StartRedis(tb testing.TB, opts ...RedisOption) *RedisServer {
	tb.Helper()
	requireBinary(tb, "redis-server")
	s := &RedisServer{tb: tb, dir: tb.TempDir()}
	for _, o := range opts {
		o(s)
	}
	tb.Cleanup(s.Kill)
	var err error
	for range 3 { // the free port can be taken before redis-server binds it
		s.port = FreePort(tb)
		if err = s.start(); err == nil {
			return s
		}
	}
	tb.Fatalf("start redis-server: %v", err)
	return nil
}

// Addr returns host:port.
func (s *RedisServer) Addr() string { return net.JoinHostPort("127.0.0.1", strconv.Itoa(s.port)) }

// Port returns the server's port.
func (s *RedisServer) Port() int { return s.port }

// Password returns the server's password ("" when none).
func (s *RedisServer) Password() string { return s.password }

// URL returns a redis:// URL for database 0 (rediss:// with RedisTLS), with the password
// if any.
func (s *RedisServer) URL() string {
	u := url.URL{Scheme: "redis", Host: s.Addr(), Path: "/0"}
	if s.tls != nil {
		u.Scheme = "rediss"
	}
	if s.password != "" {
		u.User = url.UserPassword("", s.password)
	}
	return u.String()
}

// Kill sends SIGKILL and waits for the process to exit. Killing a dead server is a no-op.
func (s *RedisServer) Kill() {
	s.mu.Lock()
	cmd, exited := s.cmd, s.exited
	s.cmd = nil
	s.mu.Unlock()
	if cmd == nil {
		return
	}
	_ = cmd.Process.Kill() // fails only if it already exited
	<-exited
}

// Pause stops the process (SIGSTOP): connections stay open but nothing is answered.
func (s *RedisServer) Pause() { s.signal(syscall.SIGSTOP) }

// Resume continues a paused process (SIGCONT).
func (s *RedisServer) Resume() { s.signal(syscall.SIGCONT) }

// Restart kills the server if it runs and starts a fresh, empty one on the same port.
func (s *RedisServer) Restart() {
	s.tb.Helper()
	s.Kill()
	var err error
	for range 50 { // the old socket may linger briefly
		if err = s.start(); err == nil {
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
	s.tb.Fatalf("restart redis-server on port %d: %v", s.port, err)
}

func (s *RedisServer) signal(sig os.Signal) {
	s.tb.Helper()
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cmd == nil {
		s.tb.Fatalf("redis-server is not running")
	}
	if err := s.cmd.Process.Signal(sig); err != nil {
		s.tb.Fatalf("signal redis-server: %v", err)
	}
}

func (s *RedisServer) start() error {
	listen := append([]string{"--port", strconv.Itoa(s.port), "--bind", "127.0.0.1"}, s.tlsArgs()...)
	args := append(listen, "--save", "", "--appendonly", "no", "--daemonize", "no",
		"--dir", s.dir, "--logfile", "")
	if s.conf != "" {
		args = append(append([]string{s.conf, "--sentinel"}, listen...), "--dir", s.dir) // a Sentinel takes no data options
	}
	if s.password != "" {
		args = append(args, "--requirepass", s.password)
	}
	args = append(args, s.args...)
	logPath := filepath.Join(s.dir, "redis-"+strconv.Itoa(s.port)+".log")
	logFile, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return err
	}
	defer logFile.Close() // the child holds its own descriptor
	cmd := exec.Command("redis-server", args...)
	cmd.Stdout, cmd.Stderr = logFile, logFile
	if err := cmd.Start(); err != nil {
		return err
	}
	exited := make(chan struct{})
	go func() {
		_ = cmd.Wait() // killed on purpose; the exit status says nothing
		close(exited)
	}()
	if err := s.awaitPing(exited); err != nil {
		_ = cmd.Process.Kill()
		<-exited
		out, _ := os.ReadFile(logPath)
		return fmt.Errorf("%w; log:\n%s", err, out)
	}
	s.mu.Lock()
	s.cmd, s.exited = cmd, exited
	s.mu.Unlock()
	return nil
}

// awaitPing polls with raw RESP, so readiness needs no client library state.
func (s *RedisServer) awaitPing(exited <-chan struct{}) error {
	deadline := time.Now().Add(10 * time.Second)
	var err error
	for time.Now().Before(deadline) {
		select {
		case <-exited:
			return errors.New("redis-server exited during start")
		default:
		}
		if err = s.ping(); err == nil {
			return nil
		}
		time.Sleep(20 * time.Millisecond)
	}
	return fmt.Errorf("redis-server did not answer PING: %w", err)
}

func ping(addr, password string) error {
	conn, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		return err
	}
	return pingOn(conn, password)
}

// pingOn sends AUTH (with a password) and PING on conn and closes it.
func pingOn(conn net.Conn, password string) error {
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(time.Second))
	r := bufio.NewReader(conn)
	if password != "" {
		if err := command(conn, r, "+OK", "AUTH", password); err != nil {
			return err
		}
	}
	return command(conn, r, "+PONG", "PING")
}

func command(conn net.Conn, r *bufio.Reader, want string, args ...string) error {
	var b strings.Builder
	fmt.Fprintf(&b, "*%d\r\n", len(args))
	for _, a := range args {
		fmt.Fprintf(&b, "$%d\r\n%s\r\n", len(a), a)
	}
	if _, err := conn.Write([]byte(b.String())); err != nil {
		return err
	}
	line, err := r.ReadString('\n')
	if err != nil {
		return err
	}
	if got := strings.TrimRight(line, "\r\n"); got != want {
		return fmt.Errorf("%s: got %q", args[0], got)
	}
	return nil
}

// Running reports whether the server process runs (it was not killed, or was restarted).
func (s *RedisServer) Running() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.cmd != nil
}

// command sends one command to this node alone (no redirects, no retries) and returns the
// reply as text: a string as it is, an array's elements one per line.
func (s *RedisServer) command(args ...string) (string, error) {
	rdb := redis.NewClient(&redis.Options{Addr: s.Addr(), Password: s.password, MaxRetries: -1,
		DialTimeout: time.Second, ReadTimeout: 2 * time.Second, WriteTimeout: time.Second, TLSConfig: s.clientTLS()})
	defer rdb.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	a := make([]any, len(args))
	for i, v := range args {
		a[i] = v
	}
	v, err := rdb.Do(ctx, a...).Result()
	if err != nil {
		return "", err
	}
	return flatten(v), nil
}

func flatten(v any) string {
	if list, ok := v.([]any); ok {
		parts := make([]string, len(list))
		for i, e := range list {
			parts[i] = flatten(e)
		}
		return strings.Join(parts, "\n")
	}
	return fmt.Sprint(v)
}

// requireBinary fails the test when a program it needs is not on PATH: a missing server
// never turns into a silent skip.
func requireBinary(tb testing.TB, name string) {
	tb.Helper()
	if _, err := exec.LookPath(name); err != nil {
		tb.Fatalf("%s not found on PATH (%v): %s", name, err, HowToRun)
	}
}

// synced reports whether the node is a master, or a replica whose link to its master is up.
func (s *RedisServer) synced() bool {
	info, err := s.command("INFO", "replication")
	return err == nil && (strings.Contains(info, "role:master") || strings.Contains(info, "master_link_status:up"))
}
