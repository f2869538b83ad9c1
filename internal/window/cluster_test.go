package window

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/paysentry/fraud-detector/internal/redistest"
)

// startCluster starts a one-node Redis Cluster: a redis-server of its own, in cluster mode, that
// holds every slot. scripts/stack.sh installs redis-server.
func startCluster(t *testing.T) string {
	t.Helper()
	addr := redistest.Start(t, "--port", "--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf")
	node := redis.NewClient(&redis.Options{Addr: addr})
	defer node.Close()
	ctx := context.Background()
	deadline := time.Now().Add(10 * time.Second)
	for node.Ping(ctx).Err() != nil {
		if time.Now().After(deadline) {
			t.Fatal("cluster node did not start")
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err := node.Do(ctx, "CLUSTER", "ADDSLOTSRANGE", 0, 16383).Err(); err != nil {
		t.Fatal(err)
	}
	for {
		info, _ := node.ClusterInfo(ctx).Result()
		if strings.Contains(info, "cluster_state:ok") {
			return addr
		}
		if time.Now().After(deadline) {
			t.Fatalf("cluster not ok: %s", info)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// On a Redis Cluster the same code counts, one script call per bucket, and keeps no merchant
// counts.
func TestCluster(t *testing.T) {
	rdb := redis.NewClusterClient(&redis.ClusterOptions{Addrs: []string{startCluster(t)}})
	defer rdb.Close()
	c := &clock{at("2026-03-01T10:30:00Z")}
	s := NewStore(rdb, Config{Length: time.Hour, AllowedLateness: time.Hour, KeyPrefix: "fd", Buckets: 65536, MaxPaymentsPerCard: 4096}, c.now)
	var events []Event
	for i := range 40 {
		events = append(events, Event{PaymentID: fmt.Sprintf("p%d", i), Card: fmt.Sprintf("c%d", i%4), Time: at("2026-03-01T10:00:00Z").Add(time.Duration(i) * time.Minute), Merchant: "m1"})
	}
	for round := range 2 { // the second is a replay: the same counts
		res := observe(t, s, events...)
		for i, r := range res {
			if want := int64(i/4 + 1); r.Count != want || r.MerchantCount30d != 0 || !r.NoMerchants {
				t.Fatalf("round %d, payment %d: %+v, want count %d", round, i, r, want)
			}
		}
	}
	if n, err := s.Fold(context.Background()); n != 0 || err != nil {
		t.Errorf("fold on a cluster: %d, %v", n, err)
	}
	counts, err := s.Counts(context.Background(), "c1")
	if err != nil || counts[at("2026-03-01T10:00:00Z")] != 10 {
		t.Errorf("counts %v, %v", counts, err)
	}
}
