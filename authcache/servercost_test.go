package authcache

import (
	"context"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/authsidecar/authsidecar/internal/testenv"
	"github.com/authsidecar/authsidecar/pgsession"
)

// serverCPU is the redis-server process's CPU time so far (INFO cpu: user + sys).
func serverCPU(b *testing.B, rdb *redis.Client) time.Duration {
	b.Helper()
	info := rdb.InfoMap(context.Background(), "cpu")
	user, _ := strconv.ParseFloat(info.Item("CPU", "used_cpu_user"), 64)
	sys, _ := strconv.ParseFloat(info.Item("CPU", "used_cpu_sys"), 64)
	return time.Duration((user + sys) * float64(time.Second))
}

// BenchmarkRedisServerCost measures what each operation of the cache costs the Redis server
// itself, in CPU per operation (metric server-µs/op), on a private redis-server: the figures
// docs/scaling.md scales. Run with -benchtime 20000x or more: INFO cpu has 1 ms resolution.
//
//	go test -run '^$' -bench RedisServerCost -benchtime 20000x ./authcache/
func BenchmarkRedisServerCost(b *testing.B) {
	srv := testenv.StartRedis(b)
	rdb := testenv.RedisClient(b, srv.URL(), nil)
	s := evStore(rdb, "session:")
	now := time.Now()
	sess := pgsession.Session{TokenHash: HashToken("bench"), ID: "2f0b7c9e-8d4a-4e1b-b6f3-5a9d0c1e2b01",
		UserID: "7c1e5a52-3f1b-4d7e-9a51-0d6c2f1f6a01", Email: "jose.muller@example.com", FirstName: "José",
		UserAgent: string(make([]byte, 111)), ExpiresAt: now.Add(time.Hour), CreatedAt: now}
	if err := s.fill(sess, time.Hour, lookup{}); err != nil {
		b.Fatal(err)
	}
	run := func(name string, op func(i int) error) {
		b.Run(name, func(b *testing.B) {
			start := serverCPU(b, rdb)
			i := 0
			for b.Loop() {
				if err := op(i); err != nil {
					b.Fatal(err)
				}
				i++
			}
			b.ReportMetric(float64((serverCPU(b, rdb)-start).Microseconds())/float64(b.N), "server-µs/op")
		})
	}
	run("LookupMGET", func(int) error { _, err := s.get(sess.TokenHash); return err })
	run("FillIndexAndSession", func(i int) error {
		one := sess
		one.TokenHash = HashToken("fill-" + strconv.Itoa(i))
		return s.fill(one, time.Minute, lookup{})
	})
	run("EvictToken", func(i int) error {
		_, err := s.evictHash(HashToken("fill-"+strconv.Itoa(i)), []byte(`{"tokenHash":"x"}`))
		return err
	})
	for _, subscribers := range []int{10, 100} {
		run("PublishTo"+strconv.Itoa(subscribers), func() func(int) error {
			var subs []*redis.PubSub
			for range subscribers {
				ps := rdb.Subscribe(context.Background(), s.evictChannel())
				if _, err := ps.Receive(context.Background()); err != nil {
					b.Fatal(err)
				}
				go func() {
					for range ps.Channel() { // drain, as a replica does
					}
				}()
				subs = append(subs, ps)
			}
			b.Cleanup(func() {
				for _, ps := range subs {
					ps.Close()
				}
			})
			return func(int) error { return s.publish([]byte(`{"tokenHash":"` + sess.TokenHash + `"}`)) }
		}())
	}
}

// BenchmarkClusterPublishCost compares what one eviction message costs a Redis Cluster
// (three masters, three replicas) as a plain PUBLISH, which every node relays over the
// cluster bus, and as a sharded SPUBLISH, which stays in the channel's shard: CPU summed over
// every node, and cluster-bus messages sent, per message, with 10 subscribers.
//
//	go test -run '^$' -bench ClusterPublishCost -benchtime 5000x ./authcache/
func BenchmarkClusterPublishCost(b *testing.B) {
	cluster := testenv.StartRedisCluster(b)
	rdb := cluster.Client(b, nil)
	nodes := make([]*redis.Client, len(cluster.Nodes))
	for i, n := range cluster.Nodes {
		nodes[i] = testenv.RedisClient(b, n.URL(), nil)
	}
	total := func() (cpu time.Duration, bus int) {
		for _, n := range nodes {
			cpu += serverCPU(b, n)
			info := n.ClusterInfo(context.Background()).Val()
			for _, line := range strings.Split(info, "\n") {
				if v, ok := strings.CutPrefix(strings.TrimSpace(line), "cluster_stats_messages_sent:"); ok {
					k, _ := strconv.Atoi(v)
					bus += k
				}
			}
		}
		return cpu, bus
	}
	const channel = "session:evict"
	for _, mode := range []string{"PUBLISH", "SPUBLISH"} {
		b.Run(mode, func(b *testing.B) {
			var subs []*redis.PubSub
			for range 10 {
				var ps *redis.PubSub
				if mode == "PUBLISH" {
					ps = rdb.Subscribe(context.Background(), channel)
				} else {
					ps = rdb.SSubscribe(context.Background(), channel)
				}
				if _, err := ps.Receive(context.Background()); err != nil {
					b.Fatal(err)
				}
				go func() {
					for range ps.Channel() {
					}
				}()
				subs = append(subs, ps)
			}
			defer func() {
				for _, ps := range subs {
					ps.Close()
				}
			}()
			cpu0, bus0 := total()
			for b.Loop() {
				var err error
				if mode == "PUBLISH" {
					err = rdb.Publish(context.Background(), channel, `{"tokenHash":"x"}`).Err()
				} else {
					err = rdb.SPublish(context.Background(), channel, `{"tokenHash":"x"}`).Err()
				}
				if err != nil {
					b.Fatal(err)
				}
			}
			cpu1, bus1 := total()
			b.ReportMetric(float64((cpu1-cpu0).Microseconds())/float64(b.N), "cluster-µs/op")
			b.ReportMetric(float64(bus1-bus0)/float64(b.N), "bus-msgs/op")
		})
	}
}
