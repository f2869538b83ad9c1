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

// On a Redis Cluster the same code counts, one script call per shard, and keeps every merchant
// count: folded in three steps, taken in snapshots, and labelled.
func TestCluster(t *testing.T) {
	rdb := redis.NewClusterClient(&redis.ClusterOptions{Addrs: []string{startCluster(t)}})
	defer rdb.Close()
	ctx := context.Background()
	c := &clock{at("2026-03-01T10:30:00Z")}
	cfg := Config{Length: time.Hour, AllowedLateness: time.Hour, KeyPrefix: "fd", Buckets: 65536, MaxPaymentsPerCard: 4096}
	s := NewStore(rdb, cfg, c.now)
	var events []Event
	for i := range 40 {
		events = append(events, Event{PaymentID: fmt.Sprintf("p%d", i), Card: fmt.Sprintf("c%d", i%4), Time: at("2026-03-01T10:00:00Z").Add(time.Duration(i) * time.Minute), Merchant: "m1"})
	}
	for round := range 2 { // the second is a replay: the same counts
		res := observe(t, s, events...)
		for i, r := range res {
			if want := int64(i/4 + 1); r.Count != want || r.MerchantCount30d != 0 {
				t.Fatalf("round %d, payment %d: %+v, want count %d", round, i, r, want)
			}
		}
	}
	// A second instance, with copies of nothing, counts nothing again either.
	if res := observe(t, NewStore(rdb, cfg, c.now), events[:8]...); res[7].Count != 2 {
		t.Fatalf("another instance: %+v", res[7])
	}
	if known, err := s.Label(ctx, "c1", "p1", true); !known || err != nil {
		t.Fatalf("label: %v, %v", known, err)
	}
	if n, err := s.Fold(ctx); n != 40 || err != nil {
		t.Errorf("fold on a cluster: %d, %v; want the 40 payments", n, err)
	}
	if n, err := s.Fold(ctx); n != 0 || err != nil {
		t.Errorf("fold again: %d, %v; want nothing", n, err)
	}
	// A fold interrupted after it took a shard's items and added them: the next one ends it and
	// adds nothing twice.
	c.t = at("2026-03-01T11:30:00Z")
	observe(t, s, Event{PaymentID: "q", Card: "c9", Time: at("2026-03-01T11:20:00Z"), Merchant: "m1"})
	var shard int
	for sh := range clusterShards {
		if rdb.LLen(ctx, s.shardKey(sh, "p")).Val() == 1 {
			shard = sh
		}
	}
	list, err := s.take.Run(ctx, rdb, []string{s.shardKey(shard, "p"), s.shardKey(shard, "f"), s.shardKey(shard, "seq")}, clusterFoldBatch, 60000).StringSlice()
	if err != nil || len(list) != 2 {
		t.Fatalf("take: %v, %v", list, err)
	}
	tag := list[1][4:]
	if err := s.apply.Run(ctx, rdb, []string{"fd:m:{" + tag + "}", "fd:ma:{" + tag + "}"}, shard, list[0], 60000, merchantDays, 20513, 1).Err(); err != nil {
		t.Fatal(err)
	}
	if n, err := s.Fold(ctx); n != 1 || err != nil {
		t.Errorf("fold after an interrupted one: %d, %v; want its one payment, ended", n, err)
	}
	c.t = at("2026-03-02T10:30:00Z")
	res := observe(t, s, Event{PaymentID: "next", Card: "c1", Time: at("2026-03-02T10:00:00Z"), Merchant: "m1"})
	if r := res[0]; r.MerchantCount1d != 41 || r.MerchantFraud30d != 1 {
		t.Errorf("the next day: %d payments at the merchant, %d fraud; want 41 and 1", r.MerchantCount1d, r.MerchantFraud30d)
	}
	counts, err := s.Counts(ctx, "c1")
	if err != nil || counts[at("2026-03-01T10:00:00Z")] != 10 {
		t.Errorf("counts %v, %v", counts, err)
	}
}

// A shard's fold counter begun again (expired with its shard idle, or lost) numbers its folds past
// every number it gave before: a merchant that other shards kept active takes them.
func TestClusterFoldCounterBegunAgain(t *testing.T) {
	rdb := redis.NewClusterClient(&redis.ClusterOptions{Addrs: []string{startCluster(t)}})
	defer rdb.Close()
	ctx := context.Background()
	c := &clock{at("2026-03-01T10:30:00Z")}
	s := NewStore(rdb, Config{Length: time.Hour, AllowedLateness: time.Hour, KeyPrefix: "fd", Buckets: 65536, MaxPaymentsPerCard: 4096}, c.now)
	send := func(prefix string) {
		var events []Event
		for i := range 50 {
			events = append(events, Event{PaymentID: fmt.Sprintf("%s%d", prefix, i), Card: fmt.Sprintf("c%d", i), Time: at("2026-03-01T10:05:00Z"), Merchant: "m1"})
		}
		observe(t, s, events...)
		if n, err := s.Fold(ctx); n != 50 || err != nil {
			t.Fatalf("fold: %d, %v; want 50", n, err)
		}
	}
	for r := range 5 {
		send(fmt.Sprintf("a%d-", r))
	}
	for sh := range clusterShards {
		rdb.Del(ctx, s.shardKey(sh, "seq"))
	}
	send("b")
	c.t = at("2026-03-02T10:30:00Z")
	if r := observe(t, s, Event{PaymentID: "next", Card: "z", Time: at("2026-03-02T10:00:00Z"), Merchant: "m1"})[0]; r.MerchantCount1d != 300 {
		t.Errorf("the merchant's count of the day: %d, want 300", r.MerchantCount1d)
	}
}
