package e2e

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"maps"
	"net/url"
	"os/exec"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/IBM/sarama"
	"github.com/redis/go-redis/v9"
)

// redisCluster is the Redis Cluster of scripts/stack.sh cluster, comma-separated.
var redisCluster = envOr("FD_E2E_REDIS_CLUSTER", "127.0.0.1:7001,127.0.0.1:7002,127.0.0.1:7003")

// TestClusterThreeInstancesKillOne runs three instances in one group against a three-node Redis
// Cluster, kills one with SIGKILL while it decides its share of a day of payments, and lets the
// other two finish. One instance against the single Redis decides the same payments as the
// reference. Every payment must be decided as the reference decides it (its flag, reasons, window
// count and score), a redelivered decision must equal the first, every card's window counts must
// be exact (equal to the payments sent, so none counted twice) and the reviews opened must be the
// reference's.
//
// The model's merchant features count the whole days before a payment's own: a one-day stream
// under fresh keys has none, on the cluster as on the single Redis, so they are 0 on both and the
// scores must be equal. (Before the cluster kept merchant counts they were -1 there; the shipped
// model splits on them only at thresholds above 0, so -1 and 0 scored alike.) The model's share of
// the comparison (score, model_score) is apart from the rules' so that a failure says which it is.
func TestClusterThreeInstancesKillOne(t *testing.T) {
	began := time.Now()
	nodes := requireRedisCluster(t)

	// One simulated day (a fixed Sunday, moved to yesterday: see worldStream) of 2,500 cards with
	// the fraud scenarios 30 times as likely: about 3,000 payments, of which card testing puts
	// more than 10 on a card in an hour several times.
	lines, _ := worldStream(t, 1, 2500, 2)
	sent := sentPayments(t, lines)
	busy := 0
	for _, ws := range sent.windows {
		for _, n := range ws {
			if n > 10 {
				busy++
			}
		}
	}
	if busy < 3 {
		t.Fatalf("the stream has %d windows of a card with more than 10 payments, want at least 3", busy)
	}
	t.Logf("%d payments of %d cards, %d windows of a card with more than 10 payments", len(lines), len(sent.windows), busy)

	const token = "e2e-cluster-viewer-token-0123456789"
	recordSecret(token, "the cluster test's API token")
	sum := sha256.Sum256([]byte(token))
	common := []string{
		"FRAUD_MODEL_PATH=" + shippedModel,
		"FRAUD_WINDOW_ALLOWED_LATENESS=168h", // yesterday's payments count in their windows
		// A slow Redis holds the batch rather than deciding it without the card's state: the
		// comparison is of the card state on a cluster, not of degraded decisions.
		"FRAUD_STREAM_STATE_FAILURE_POLICY=fail_closed",
		"FRAUD_API_TOKENS=e2e-viewer:viewer:" + hex.EncodeToString(sum[:]),
	}

	// The reference: one instance on the single Redis, with topics, group and key prefixes of its
	// own, run beside the cluster's.
	ref := newTopics(t, 6)
	refSvc := startService(t, ref, common...)
	kcatProduceInOrder(t, ref.payments, lines)

	// The cluster: its own topics, group and key prefixes (the group's name, new every run).
	cl := newTopics(t, 6)
	removeClusterKeys(t, nodes, cl.group)
	clusterEnv := append(slices.Clone(common),
		"FRAUD_REDIS_ADDRS="+strings.Join(nodes, ","),
		"FRAUD_REDIS_CLUSTER=true",
		"FRAUD_WINDOW_KEY_PREFIX="+cl.group,
		"FRAUD_REVIEW_KEY_PREFIX="+cl.group,
		"FRAUD_LISTS_KEY_PREFIX="+cl.group,
		// Small batches, one in flight: the kill lands with the victim's share part done.
		"FRAUD_STREAM_BATCH_SIZE=20", "FRAUD_STREAM_MAX_IN_FLIGHT_BATCHES=1",
		// The group notices the killed member after 6 s (the broker's least), not 10.
		"FRAUD_KAFKA_SESSION_TIMEOUT=6s",
	)
	var insts [3]*service
	for i := range insts {
		insts[i] = startService(t, cl, clusterEnv...)
	}
	victimParts := awaitSpread(t, cl.payments, insts[:])
	kcatProduceInOrder(t, cl.payments, lines)

	// Kill the victim once it has done some batches of its partitions and not yet committed all
	// of them: they are decided, counted in Redis and acknowledged, and will be decided again.
	client, admin := newClient(t), newAdmin(t)
	victim := insts[0]
	consumed, committed := awaitDoneNotCommitted(t, victim, client, admin, cl, victimParts, 100)
	victim.kill(t)
	left, _ := partitionLag(t, client, admin, cl.group, cl.payments, victimParts)
	if left == 0 {
		t.Fatalf("the victim had done all of its partitions %v when killed: the kill did not land mid-stream", victimParts)
	}
	t.Logf("killed the instance holding partitions %v after %d of its payments were done, %d of them committed; %d of its payments left",
		victimParts, consumed, committed, left)

	waitCaughtUp(t, insts[1], cl, 60*time.Second)
	waitCaughtUp(t, refSvc, ref, 60*time.Second)
	if !insts[2].running() {
		t.Fatalf("the third instance exited: %v", insts[2].err)
	}
	awaitGroupCaughtUp(t, client, admin, cl.group+"-reviews", cl.highRisk, insts[1:])
	awaitGroupCaughtUp(t, client, admin, ref.group+"-reviews", ref.highRisk, []*service{refSvc})
	requireInOrder(t, client, ref.payments, lines)
	requireInOrder(t, client, cl.payments, lines)

	// Nothing was dead-lettered; every decision the cluster wrote again equals its first.
	for _, tp := range []topics{ref, cl} {
		if dlq := readAll(t, client, tp.dlq); len(dlq) != 0 {
			t.Errorf("%s: %d dead letters from valid payments, first: %s", tp.dlq, len(dlq), header(dlq[0], "error.message"))
		}
	}
	refDecisions, refAgain := firstDecisions(t, client, ref.highRisk)
	clDecisions, clAgain := firstDecisions(t, client, cl.highRisk)
	if refAgain != 0 {
		t.Errorf("the reference, never killed, wrote %d decisions twice", refAgain)
	}
	for id := range clDecisions {
		if !sent.ids[id] {
			t.Errorf("%s decided on the cluster and never sent", id)
		}
	}

	// Every payment flagged for the same reasons, with the same window count, as by the reference
	// (model_score aside: the model's comparison follows).
	ruleDiffs, modelDiffs := 0, 0
	for _, id := range slices.Sorted(maps.Keys(sent.ids)) {
		c, r := clDecisions[id], refDecisions[id]
		cr, rr := c.ruleReasons(), r.ruleReasons()
		switch {
		case !slices.Equal(cr, rr):
			ruleDiffs++
			if ruleDiffs <= 5 {
				t.Errorf("%s: reasons on the cluster %q, by the reference %q", id, cr, rr)
			}
		case c != nil && r != nil && !equalCount(c.WindowCount, r.WindowCount):
			ruleDiffs++
			if ruleDiffs <= 5 {
				t.Errorf("%s: window count on the cluster %s, by the reference %s", id, c.count(), r.count())
			}
		case !bytes.Equal(c.canonical(), r.canonical()):
			// The same rules' reasons and count: what differs is the model's (score, model_score,
			// and so whether it is flagged, by which rule), or a field no rule explains.
			modelDiffs++
			if modelDiffs <= 5 {
				t.Errorf("%s: decided by the model differently on the cluster:\ncluster   %s\nreference %s", id, c.canonical(), r.canonical())
			}
		}
	}
	if ruleDiffs > 0 {
		t.Errorf("%d of %d payments' reasons (model_score aside) or window counts differ on the cluster", ruleDiffs, len(sent.ids))
	}
	if modelDiffs > 0 {
		t.Errorf("%d of %d payments' decisions differ on the cluster in the model's share alone (score, model_score): "+
			"the model saw other features there (the card's aggregates or the merchant's counts)", modelDiffs, len(sent.ids))
	}

	// Every card's window counts through the API: the cluster's equal the reference's and the
	// payments sent, so no payment counted twice and none lost.
	clAPI := "http://" + insts[1].apiAddr(t) + "/v1"
	refAPI := "http://" + refSvc.apiAddr(t) + "/v1"
	cards := slices.Sorted(maps.Keys(sent.windows))
	clWindows, refWindows := cardWindows(t, clAPI, token, cards), cardWindows(t, refAPI, token, cards)
	countDiffs := 0
	for i, card := range cards {
		want := sent.windows[card]
		if !maps.Equal(clWindows[i], want) || !maps.Equal(refWindows[i], want) {
			countDiffs++
			if countDiffs <= 5 {
				t.Errorf("card %s: windows on the cluster %v, by the reference %v, sent %v", card, clWindows[i], refWindows[i], want)
			}
		}
	}
	if countDiffs > 0 {
		t.Errorf("%d of %d cards' window counts differ", countDiffs, len(cards))
	}

	// One open review per flagged payment, however often its decision was written: the
	// reference's reviews.
	clReviews, refReviews := openReviews(t, clAPI, token), openReviews(t, refAPI, token)
	if !maps.Equal(refReviews, keysOf(refDecisions)) {
		t.Errorf("the reference: %d open reviews for %d flagged payments", len(refReviews), len(refDecisions))
	}
	if !maps.Equal(clReviews, refReviews) {
		t.Errorf("%d open reviews on the cluster, %d by the reference (%d flagged payments on the cluster)", len(clReviews), len(refReviews), len(clDecisions))
	}

	for _, s := range append(insts[1:], refSvc) {
		s.stop(t)
	}
	t.Logf("%d payments, %d flagged and reviewed by the reference; on the cluster %d flagged, %d decisions written again, %d reviews; %d cards' windows compared; took %s",
		len(sent.ids), len(refDecisions), len(clDecisions), clAgain, len(clReviews), len(cards), time.Since(began).Round(100*time.Millisecond))
}

// kcatProduceInOrder writes KEY<TAB>VALUE lines to topic with kcat's idempotent producer, which
// keeps each partition's records in the order written. A plain one (kcatProduce) may not: a topic
// created a moment before refuses records until the broker has loaded its partitions, and the
// retry of a refused request lands after the requests sent behind it (librdkafka: "retrying may
// cause reordering unless enable.idempotence is set"). With two cores kept busy, 5 of 20 topics
// written by kcatProduce right after they were created held some card's payments out of order
// (0 of 20 with this); once, the reference here decided a card's first payment of an hour as its
// fifth.
func kcatProduceInOrder(t *testing.T, topic string, lines []string) {
	t.Helper()
	cmd := exec.Command("kcat", "-P", "-b", brokers, "-t", topic, "-K", "\t", "-X", "enable.idempotence=true")
	in := strings.Join(lines, "\n") + "\n"
	recordPANs([]byte(in))
	cmd.Stdin = strings.NewReader(in)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("kcat produce to %s: %v\n%s", topic, err, out)
	}
}

// requireInOrder reads topic and requires every card's payments in it in the order of lines: the
// comparison of two runs needs both to read the same stream.
func requireInOrder(t *testing.T, client sarama.Client, topic string, lines []string) {
	t.Helper()
	want, got := map[string][]string{}, map[string][]string{}
	for _, l := range lines {
		key, v, _ := strings.Cut(l, "\t")
		want[key] = append(want[key], paymentID(t, []byte(v)))
	}
	for _, m := range readAll(t, client, topic) {
		got[string(m.Key)] = append(got[string(m.Key)], paymentID(t, m.Value))
	}
	bad := 0
	for key, ids := range want {
		if !slices.Equal(ids, got[key]) {
			bad++
			if bad <= 3 {
				t.Errorf("%s: card %s's payments in the order %v, sent %v", topic, key, got[key], ids)
			}
		}
	}
	if bad > 0 {
		t.Fatalf("%s: %d of %d cards' payments are not in the order sent", topic, bad, len(want))
	}
}

func paymentID(t *testing.T, value []byte) string {
	t.Helper()
	var p struct {
		ID string `json:"payment_id"`
	}
	if err := json.Unmarshal(value, &p); err != nil {
		t.Fatalf("payment %s: %v", value, err)
	}
	return p.ID
}

// requireRedisCluster returns the addresses of the Redis Cluster, or fails the test saying how to
// start one: every node must answer and say cluster_state:ok.
func requireRedisCluster(t *testing.T) []string {
	t.Helper()
	nodes := strings.Split(redisCluster, ",")
	for _, addr := range nodes {
		rdb := redis.NewClient(&redis.Options{Addr: addr, DialTimeout: 2 * time.Second})
		info, err := rdb.ClusterInfo(context.Background()).Result()
		rdb.Close()
		if err == nil && !strings.Contains(info, "cluster_state:ok") {
			err = fmt.Errorf("cluster_state is not ok")
		}
		if err != nil {
			t.Fatalf("the Redis Cluster is not reachable at %s (%v): start it with scripts/stack.sh cluster, or set FD_E2E_REDIS_CLUSTER", addr, err)
		}
	}
	return nodes
}

// removeClusterKeys deletes, when the test ends, every key under prefix on every master of the
// cluster (newTopics does it on the single Redis).
func removeClusterKeys(t *testing.T, nodes []string, prefix string) {
	t.Cleanup(func() {
		rdb := redis.NewClusterClient(&redis.ClusterOptions{Addrs: nodes})
		defer rdb.Close()
		err := rdb.ForEachMaster(context.Background(), func(ctx context.Context, c *redis.Client) error {
			iter := c.Scan(ctx, 0, prefix+":*", 1000).Iterator()
			for iter.Next(ctx) {
				c.Unlink(ctx, iter.Val())
			}
			return iter.Err()
		})
		if err != nil {
			t.Logf("remove the test's keys from the Redis Cluster: %v", err)
		}
	})
}

// sentStream is what the test sent: every payment id, and every card's payments by window.
type sentStream struct {
	ids     map[string]bool
	windows map[string]map[time.Time]int64
}

func sentPayments(t *testing.T, lines []string) sentStream {
	t.Helper()
	s := sentStream{ids: map[string]bool{}, windows: map[string]map[time.Time]int64{}}
	for _, l := range lines {
		_, v, _ := strings.Cut(l, "\t")
		var p struct {
			ID        string    `json:"payment_id"`
			Card      string    `json:"card_id"`
			Timestamp time.Time `json:"timestamp"`
		}
		if err := json.Unmarshal([]byte(v), &p); err != nil || p.ID == "" || p.Card == "" {
			t.Fatalf("payment line %q: %v", l, err)
		}
		if s.ids[p.ID] {
			t.Fatalf("payment %s sent twice", p.ID)
		}
		s.ids[p.ID] = true
		if s.windows[p.Card] == nil {
			s.windows[p.Card] = map[time.Time]int64{}
		}
		s.windows[p.Card][p.Timestamp.UTC().Truncate(time.Hour)]++
	}
	return s
}

// awaitSpread waits until each of the instances was last assigned partitions of topic in the same
// generation of the group, every partition to one of them, and returns the first one's.
func awaitSpread(t *testing.T, topic string, insts []*service) []int32 {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for {
		var gens []int
		var all, first []int32
		for i, s := range insts {
			if !s.running() {
				t.Fatalf("instance %d exited: %v", i, s.err)
			}
			gen, parts := claimed(s, topic)
			gens = append(gens, gen)
			all = append(all, parts...)
			if i == 0 {
				first = parts
			}
		}
		slices.Sort(all)
		spread := len(first) > 0 && len(all) == 6 && len(slices.Compact(all)) == 6 &&
			!slices.Contains(gens, 0) && len(slices.Compact(gens)) == 1
		if spread {
			return first
		}
		if time.Now().After(deadline) {
			t.Fatalf("the group did not spread the 6 partitions over %d instances within 60 s: generations %v, partitions %v", len(insts), gens, all)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// claimed is the generation and the partitions of topic of the service's last assignment.
func claimed(s *service, topic string) (int, []int32) {
	gen, parts := 0, []int32(nil)
	for _, l := range s.logged("partitions assigned") {
		claims, _ := l["claims"].(map[string]any)
		ps, ok := claims[topic].([]any)
		if !ok {
			continue // another group's
		}
		g, _ := l["generation"].(float64)
		gen, parts = int(g), nil
		for _, p := range ps {
			f, _ := p.(float64)
			parts = append(parts, int32(f))
		}
	}
	return gen, parts
}

// awaitDoneNotCommitted waits until the service has done at least n payments (its batches'
// outputs acknowledged and offsets marked) and the group has committed fewer of parts than it has
// done, and returns both numbers.
func awaitDoneNotCommitted(t *testing.T, s *service, client sarama.Client, admin sarama.ClusterAdmin, tp topics, parts []int32, n int64) (int64, int64) {
	t.Helper()
	addr := s.apiAddr(t)
	deadline := time.Now().Add(60 * time.Second)
	for {
		if !s.running() {
			t.Fatalf("the service exited: %v", s.err)
		}
		done := int64(scrape(t, addr)["fraud_payments_consumed_total"])
		if done >= n {
			left, end := partitionLag(t, client, admin, tp.group, tp.payments, parts)
			if committed := end - left; committed < done {
				return done, committed
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("the service did %d payments in 60 s, want %d of them done and not all committed", done, n)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// awaitGroupCaughtUp waits until group has committed every record of topic.
func awaitGroupCaughtUp(t *testing.T, client sarama.Client, admin sarama.ClusterAdmin, group, topic string, running []*service) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for {
		l, end := lag(t, client, admin, group, topic)
		if l == 0 {
			return
		}
		for _, s := range running {
			if !s.running() {
				t.Fatalf("a service exited (%v) with group %s %d behind on %s", s.err, group, l, topic)
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("group %s did not catch up on %s within 60 s: lag %d of %d", group, topic, l, end)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// clusterDecision is a decision on high-risk-payments, with what the comparisons read.
type clusterDecision struct {
	PaymentID   string `json:"payment_id"`
	CardID      string `json:"card_id"`
	WindowCount *int64 `json:"window_count"`
	Reasons     []struct {
		Code   string `json:"code"`
		Detail string `json:"detail"`
	} `json:"reasons"`
	// fields is the record as written, field by field, decided_at aside.
	fields map[string]json.RawMessage
}

// firstDecisions reads topic and returns the first decision of each payment, after requiring
// every later one equal to it, decided_at aside, byte for byte; and how many were written again.
func firstDecisions(t *testing.T, client sarama.Client, topic string) (map[string]*clusterDecision, int) {
	t.Helper()
	first := map[string]*clusterDecision{}
	again, differ := 0, 0
	for _, m := range readAll(t, client, topic) {
		d := &clusterDecision{}
		if err := json.Unmarshal(m.Value, d); err != nil {
			t.Fatalf("%s: decision is not JSON: %v: %s", topic, err, m.Value)
		}
		if err := json.Unmarshal(m.Value, &d.fields); err != nil {
			t.Fatal(err)
		}
		delete(d.fields, "decided_at")
		if string(m.Key) != d.CardID || d.CardID == "" {
			t.Errorf("%s: %s keyed %q, card %q", topic, d.PaymentID, m.Key, d.CardID)
		}
		for _, r := range d.Reasons {
			if r.Code == "degraded_state" || r.Code == "late_event" {
				t.Errorf("%s: %s decided with %s: %s", topic, d.PaymentID, r.Code, r.Detail)
			}
		}
		prev, seen := first[d.PaymentID]
		if !seen {
			first[d.PaymentID] = d
			continue
		}
		again++
		if !bytes.Equal(prev.canonical(), d.canonical()) {
			differ++
			if differ <= 5 {
				t.Errorf("%s: %s decided differently when redelivered:\nfirst %s\nagain %s", topic, d.PaymentID, prev.canonical(), d.canonical())
			}
		}
	}
	if differ > 0 {
		t.Errorf("%s: %d of %d decisions written again differ from the first", topic, differ, again)
	}
	return first, again
}

// canonical is the decision as written, decided_at aside, its fields in order; "none" for nil.
func (d *clusterDecision) canonical() []byte {
	if d == nil {
		return []byte("none")
	}
	b, _ := json.Marshal(d.fields) // keys sorted, values as written
	return b
}

// ruleReasons are the decision's reasons but model_score, as code: detail; none for nil.
func (d *clusterDecision) ruleReasons() []string {
	var rs []string
	if d == nil {
		return rs
	}
	for _, r := range d.Reasons {
		if r.Code != "model_score" {
			rs = append(rs, r.Code+": "+r.Detail)
		}
	}
	return rs
}

func (d *clusterDecision) count() string {
	if d.WindowCount == nil {
		return "null"
	}
	return fmt.Sprint(*d.WindowCount)
}

func equalCount(a, b *int64) bool {
	return (a == nil) == (b == nil) && (a == nil || *a == *b)
}

func keysOf[V any](m map[string]V) map[string]bool {
	keys := map[string]bool{}
	for k := range m {
		keys[k] = true
	}
	return keys
}

// cardWindows reads each card's window counts through the API (GET /v1/cards/{card_id}), a few
// cards at a time.
func cardWindows(t *testing.T, base, token string, cards []string) []map[time.Time]int64 {
	t.Helper()
	out := make([]map[time.Time]int64, len(cards))
	failed := make([]int, len(cards))
	var wg sync.WaitGroup
	next := make(chan int)
	for range 8 {
		wg.Go(func() {
			for i := range next {
				var v struct {
					Windows []struct {
						Start time.Time `json:"start"`
						Count int64     `json:"count"`
					} `json:"windows"`
				}
				if failed[i] = apiGet(t, base+"/cards/"+url.PathEscape(cards[i]), token, &v); failed[i] == 200 {
					failed[i] = 0
				}
				out[i] = map[time.Time]int64{}
				for _, w := range v.Windows {
					out[i][w.Start.UTC()] = w.Count
				}
			}
		})
	}
	for i := range cards {
		next <- i
	}
	close(next)
	wg.Wait()
	for i, code := range failed {
		if code != 0 {
			t.Fatalf("GET %s/cards/%s: status %d", base, cards[i], code)
		}
	}
	return out
}

// openReviews lists the open reviews through the API, page by page, by payment id.
func openReviews(t *testing.T, base, token string) map[string]bool {
	t.Helper()
	ids := map[string]bool{}
	cursor := ""
	for {
		var page struct {
			Reviews []struct {
				PaymentID string `json:"payment_id"`
			} `json:"reviews"`
			Next string `json:"next_cursor"`
		}
		u := base + "/reviews?status=open&limit=500"
		if cursor != "" {
			u += "&cursor=" + url.QueryEscape(cursor)
		}
		if code := apiGet(t, u, token, &page); code != 200 {
			t.Fatalf("GET %s: status %d", u, code)
		}
		for _, r := range page.Reviews {
			if ids[r.PaymentID] {
				t.Errorf("%s: review of %s listed twice", base, r.PaymentID)
			}
			ids[r.PaymentID] = true
		}
		if page.Next == "" {
			return ids
		}
		cursor = page.Next
	}
}
