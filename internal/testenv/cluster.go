package testenv

import (
	"context"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// RedisCluster is a private Redis Cluster of three masters and three replicas on loopback
// ports, with a one-second node timeout so a failover takes about two seconds. Its nodes
// are killed at cleanup.
type RedisCluster struct {
	tb    testing.TB
	Nodes []*RedisServer
}

// clusterNodeTimeout is cluster-node-timeout: how long a master may not answer before its
// replica is promoted.
const clusterNodeTimeout = 1000 * time.Millisecond

// StartRedisCluster starts six cluster-enabled redis-servers, each with opts (RedisTLS for a
// cluster that speaks only TLS), joins them with `redis-cli --cluster create` (one replica
// per master) and waits until every node reports cluster_state:ok.
func StartRedisCluster(tb testing.TB, opts ...RedisOption) *RedisCluster {
	tb.Helper()
	requireBinary(tb, "redis-cli")
	c := &RedisCluster{tb: tb}
	for range 6 {
		s := StartRedis(tb, append(opts, RedisArgs("--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf",
			"--cluster-node-timeout", strconv.Itoa(int(clusterNodeTimeout.Milliseconds())),
			"--repl-diskless-sync-delay", "0"))...)
		c.Nodes = append(c.Nodes, s)
	}
	args := []string{"--cluster", "create"}
	if f := c.Nodes[0].TLS(); f != nil {
		args = append(args, "--tls", "--cacert", f.CAFile, "--cert", f.ClientCert, "--key", f.ClientKey)
	}
	args = append(args, c.Addrs()...)
	args = append(args, "--cluster-replicas", "1", "--cluster-yes")
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if out, err := exec.CommandContext(ctx, "redis-cli", args...).CombinedOutput(); err != nil {
		tb.Fatalf("redis-cli --cluster create: %v\n%s", err, out)
	}
	c.AwaitOK(30 * time.Second)
	return c
}

// Addrs returns every node's host:port, the seeds a client starts from.
func (c *RedisCluster) Addrs() []string {
	addrs := make([]string, len(c.Nodes))
	for i, n := range c.Nodes {
		addrs[i] = n.Addr()
	}
	return addrs
}

// Client returns a cluster client (over TLS, with the client certificate, for a cluster
// that speaks TLS), closed at cleanup; configure, unless nil, adjusts its options first.
func (c *RedisCluster) Client(tb testing.TB, configure func(*redis.ClusterOptions)) *redis.ClusterClient {
	tb.Helper()
	o := &redis.ClusterOptions{Addrs: c.Addrs(), TLSConfig: c.Nodes[0].clientTLS()}
	if configure != nil {
		configure(o)
	}
	rdb := redis.NewClusterClient(o)
	tb.Cleanup(func() { rdb.Close() })
	return rdb
}

// AwaitOK waits until every running node reports cluster_state:ok with every slot served,
// and every replica has synced with its master (a replica that never synced refuses to
// take over), failing the test after within.
func (c *RedisCluster) AwaitOK(within time.Duration) {
	c.tb.Helper()
	deadline := time.Now().Add(within)
	for {
		if c.ok() {
			return
		}
		if time.Now().After(deadline) {
			c.tb.Fatalf("redis cluster not ok within %v", within)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func (c *RedisCluster) ok() bool {
	for _, n := range c.Nodes {
		if !n.Running() {
			continue
		}
		info, err := n.command("CLUSTER", "INFO")
		if err != nil || !strings.Contains(info, "cluster_state:ok") || !strings.Contains(info, "cluster_slots_ok:16384") {
			return false
		}
		if !n.synced() {
			return false
		}
	}
	return true
}

// MasterOf returns the node that serves key's slot as master.
func (c *RedisCluster) MasterOf(key string) *RedisServer {
	c.tb.Helper()
	for _, n := range c.Nodes {
		if !n.Running() {
			continue
		}
		// Any node knows the slot map; the slot's master answers the key itself.
		role, err := n.command("ROLE")
		if err != nil || !strings.HasPrefix(role, "master") {
			continue
		}
		if _, err := n.command("EXISTS", key); err == nil {
			return n
		}
	}
	c.tb.Fatalf("no running master serves %q", key)
	return nil
}

// KeySlot is the cluster slot of key, as the nodes compute it.
func (c *RedisCluster) KeySlot(key string) int {
	c.tb.Helper()
	for _, n := range c.Nodes {
		if out, err := n.command("CLUSTER", "KEYSLOT", key); err == nil {
			slot, _ := strconv.Atoi(out)
			return slot
		}
	}
	c.tb.Fatal("no running node answers CLUSTER KEYSLOT")
	return -1
}

// Serves reports whether node served slot as a master when last asked (CLUSTER NODES of
// another running node), so a test can tell the slots a killed master held.
func (c *RedisCluster) Serves(node *RedisServer, slot int) bool {
	c.tb.Helper()
	for _, n := range c.Nodes {
		if n == node || !n.Running() {
			continue
		}
		out, err := n.command("CLUSTER", "NODES")
		if err != nil {
			continue
		}
		for _, line := range strings.Split(out, "\n") {
			f := strings.Fields(line)
			if len(f) < 9 || !strings.HasPrefix(f[1], node.Addr()+"@") {
				continue
			}
			for _, r := range f[8:] {
				lo, hi, ok := strings.Cut(r, "-")
				if !ok {
					hi = lo
				}
				l, err1 := strconv.Atoi(lo)
				h, err2 := strconv.Atoi(hi)
				if err1 == nil && err2 == nil && slot >= l && slot <= h {
					return true
				}
			}
			return false
		}
	}
	return false
}
