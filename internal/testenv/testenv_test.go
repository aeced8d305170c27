package testenv_test

import (
	"context"
	"io"
	"net"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"go.uber.org/goleak"

	"github.com/authsidecar/authsidecar/internal/testenv"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// echoServer answers every connection by echoing; it stops at cleanup.
func echoServer(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() { defer c.Close(); _, _ = io.Copy(c, c) }()
		}
	}()
	t.Cleanup(func() { ln.Close(); <-done })
	return ln.Addr().String()
}

func roundTrip(conn net.Conn, timeout time.Duration) error {
	_ = conn.SetDeadline(time.Now().Add(timeout))
	if _, err := conn.Write([]byte("ping")); err != nil {
		return err
	}
	buf := make([]byte, 4)
	_, err := io.ReadFull(conn, buf)
	return err
}

func dial(t *testing.T, addr string) net.Conn {
	t.Helper()
	conn, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return conn
}

func TestForwarderCutClosesConnectionsUntilRestore(t *testing.T) {
	fwd := testenv.NewForwarder(t, echoServer(t))
	live := dial(t, fwd.Addr())
	if err := roundTrip(live, time.Second); err != nil {
		t.Fatalf("before cut: %v", err)
	}

	fwd.Cut()
	if err := roundTrip(live, time.Second); err == nil {
		t.Fatal("live connection survived Cut")
	}
	if err := roundTrip(dial(t, fwd.Addr()), time.Second); err == nil {
		t.Fatal("new connection forwarded while cut")
	}

	fwd.Restore()
	if err := roundTrip(dial(t, fwd.Addr()), time.Second); err != nil {
		t.Fatalf("after restore: %v", err)
	}
}

func TestForwarderPauseStallsWithoutClosing(t *testing.T) {
	fwd := testenv.NewForwarder(t, echoServer(t))
	conn := dial(t, fwd.Addr())
	fwd.Pause()
	err := roundTrip(conn, 200*time.Millisecond)
	if ne, ok := err.(net.Error); !ok || !ne.Timeout() {
		t.Fatalf("paused round trip: got %v, want a timeout", err)
	}
	fwd.Resume()
	// The stalled "ping" arrives now, followed by the echo of a second one.
	if err := roundTrip(conn, time.Second); err != nil {
		t.Fatalf("after resume: %v", err)
	}
}

func TestStartRedisKillRestart(t *testing.T) {
	srv := testenv.StartRedis(t, testenv.RedisPassword("s3cret"))
	rdb := testenv.RedisClient(t, srv.URL(), func(o *redis.Options) {
		o.MaxRetries, o.DialTimeout, o.ReadTimeout = -1, 200*time.Millisecond, 200*time.Millisecond
	})
	ctx := context.Background()

	if err := rdb.Set(ctx, "k", "v", 0).Err(); err != nil {
		t.Fatalf("set: %v", err)
	}
	srv.Pause()
	if err := rdb.Ping(ctx).Err(); err == nil {
		t.Fatal("ping answered while paused")
	}
	srv.Resume()
	srv.Kill()
	if err := rdb.Ping(ctx).Err(); err == nil {
		t.Fatal("ping answered after kill")
	}
	srv.Restart()
	if err := rdb.Get(ctx, "k").Err(); err != redis.Nil {
		t.Fatalf("get after restart: got %v, want redis.Nil (fresh, empty server)", err)
	}
}

func TestPrefixDeletesItsKeys(t *testing.T) {
	srv := testenv.StartRedis(t)
	rdb := redis.NewClient(&redis.Options{Addr: srv.Addr()})
	t.Cleanup(func() { rdb.Close() })
	ctx := context.Background()
	var prefix string
	t.Run("use", func(t *testing.T) {
		prefix = testenv.Prefix(t, rdb)
		for _, k := range []string{"a", "b", "c"} {
			if err := rdb.Set(ctx, prefix+k, "1", 0).Err(); err != nil {
				t.Fatal(err)
			}
		}
	})
	if err := rdb.Set(ctx, "other", "1", 0).Err(); err != nil {
		t.Fatal(err)
	}
	keys, err := rdb.Keys(ctx, "*").Result()
	if err != nil {
		t.Fatal(err)
	}
	if len(keys) != 1 || keys[0] != "other" {
		t.Fatalf("keys after cleanup: %v, want [other]", keys)
	}
}

func TestHashIsLowercaseHexSHA256(t *testing.T) {
	const want = "2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824"
	if got := testenv.Hash("hello"); got != want {
		t.Fatalf("Hash(hello) = %s, want %s", got, want)
	}
}

func TestNewDBSeedsSessions(t *testing.T) {
	db := testenv.NewDB(t)
	user := db.User(t, testenv.UserSpec{})
	token, hash := db.Session(t, user, testenv.SessionSpec{})
	if testenv.Hash(token) != hash || len(hash) != 64 {
		t.Fatalf("hash %q does not match token", hash)
	}
	db.Revoke(t, hash)
	var revoked bool
	err := db.Pool.QueryRow(context.Background(),
		`SELECT revoked_at IS NOT NULL FROM platform.user_sessions WHERE token_hash = $1`, hash).Scan(&revoked)
	if err != nil || !revoked {
		t.Fatalf("revoked = %v, err = %v", revoked, err)
	}
}
