package pgsession

import "github.com/prometheus/client_golang/prometheus"

var (
	descPool = prometheus.NewDesc("authsidecar_postgres_pool_connections",
		"Postgres connections of the lookup pool (DATABASE_URL) by state.", []string{"state"}, nil)
	descPrimaryPool = prometheus.NewDesc("authsidecar_postgres_primary_pool_connections",
		"Postgres connections of the primary pool (DB_NOTIFY_URL), when lookups go elsewhere, by state.", []string{"state"}, nil)
	descFeedRole = prometheus.NewDesc("authsidecar_feed_role",
		"1 for what this replica's change feed does: off, disconnected, solo, holder, standby or idle.", []string{"role"}, nil)
)

var feedRoles = [...]FeedRole{FeedOff, FeedDisconnected, FeedSolo, FeedHolder, FeedStandby, FeedIdle}

// Describe implements prometheus.Collector.
func (s *Store) Describe(ch chan<- *prometheus.Desc) {
	ch <- descPool
	ch <- descPrimaryPool
	ch <- descFeedRole
}

// Collect implements prometheus.Collector: the pools' connections and the feed's role.
func (s *Store) Collect(ch chan<- prometheus.Metric) {
	gauge := func(d *prometheus.Desc, v float64, label string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, label)
	}
	pools := map[*prometheus.Desc]interface {
		TotalConns() int32
		IdleConns() int32
		AcquiredConns() int32
	}{descPool: s.pool.Stat()}
	if s.primary != s.pool {
		pools[descPrimaryPool] = s.primary.Stat()
	}
	for d, st := range pools {
		gauge(d, float64(st.TotalConns()), "total")
		gauge(d, float64(st.IdleConns()), "idle")
		gauge(d, float64(st.AcquiredConns()), "acquired")
	}
	current := s.FeedRole()
	for _, r := range feedRoles {
		v := 0.0
		if r == current {
			v = 1
		}
		gauge(descFeedRole, v, string(r))
	}
}
