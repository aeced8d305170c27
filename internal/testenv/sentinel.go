package testenv

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// SentinelMaster is the master name the Sentinel fixture monitors.
const SentinelMaster = "authsidecar"

// RedisSentinels is a private Sentinel set on loopback ports: a master, one replica and
// three Sentinels that fail over after one second without an answer (quorum 2). Every
// process is killed at cleanup.
type RedisSentinels struct {
	tb        testing.TB
	Master    *RedisServer
	Replica   *RedisServer
	Sentinels []*RedisServer
}

// StartRedisSentinels starts the set, every process with opts (RedisTLS for a set that
// speaks only TLS), and waits until every Sentinel knows the master, the replica and the
// other Sentinels, so that a failover can start at once.
func StartRedisSentinels(tb testing.TB, opts ...RedisOption) *RedisSentinels {
	tb.Helper()
	s := &RedisSentinels{tb: tb, Master: StartRedis(tb, append(opts, RedisArgs("--repl-diskless-sync-delay", "0"))...)}
	s.Replica = StartRedis(tb, append(opts, RedisArgs("--replicaof", "127.0.0.1", strconv.Itoa(s.Master.Port()),
		"--repl-diskless-sync-delay", "0"))...)
	for range 3 {
		dir := tb.TempDir()
		conf := filepath.Join(dir, "sentinel.conf")
		body := fmt.Sprintf("sentinel monitor %[1]s 127.0.0.1 %[2]d 2\n"+
			"sentinel down-after-milliseconds %[1]s 1000\n"+
			"sentinel failover-timeout %[1]s 5000\n"+
			"sentinel parallel-syncs %[1]s 1\n", SentinelMaster, s.Master.Port())
		if err := os.WriteFile(conf, []byte(body), 0o600); err != nil {
			tb.Fatal(err)
		}
		s.Sentinels = append(s.Sentinels, StartRedis(tb, append(opts, func(r *RedisServer) { r.conf = conf })...))
	}
	s.await(30*time.Second, "sentinels see the replica and each other", func(sentinel *RedisServer) bool {
		replicas, err1 := sentinel.command("SENTINEL", "REPLICAS", SentinelMaster)
		peers, err2 := sentinel.command("SENTINEL", "SENTINELS", SentinelMaster)
		return err1 == nil && err2 == nil && strings.Contains(replicas, strconv.Itoa(s.Replica.Port())) &&
			strings.Count(peers, "runid") >= 2 && s.Replica.synced()
	})
	return s
}

// Addrs returns the Sentinels' host:port.
func (s *RedisSentinels) Addrs() []string {
	addrs := make([]string, len(s.Sentinels))
	for i, n := range s.Sentinels {
		addrs[i] = n.Addr()
	}
	return addrs
}

// MasterAddr is the master's host:port as the first Sentinel that answers reports it.
func (s *RedisSentinels) MasterAddr() string {
	for _, n := range s.Sentinels {
		if addr, err := n.command("SENTINEL", "GET-MASTER-ADDR-BY-NAME", SentinelMaster); err == nil {
			return strings.Replace(addr, "\n", ":", 1)
		}
	}
	return ""
}

// AwaitMaster waits until every Sentinel reports the master at addr.
func (s *RedisSentinels) AwaitMaster(addr string, within time.Duration) {
	s.tb.Helper()
	s.await(within, "sentinels agree the master is "+addr, func(sentinel *RedisServer) bool {
		got, err := sentinel.command("SENTINEL", "GET-MASTER-ADDR-BY-NAME", SentinelMaster)
		return err == nil && strings.Replace(got, "\n", ":", 1) == addr
	})
}

func (s *RedisSentinels) await(within time.Duration, what string, ok func(*RedisServer) bool) {
	s.tb.Helper()
	deadline := time.Now().Add(within)
	for {
		all := true
		for _, n := range s.Sentinels {
			all = all && ok(n)
		}
		if all {
			return
		}
		if time.Now().After(deadline) {
			s.tb.Fatalf("%s: not within %v", what, within)
		}
		time.Sleep(100 * time.Millisecond)
	}
}
