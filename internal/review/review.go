// Package review keeps the analysts' queue in Redis: one review per flagged payment, found by
// status, card, reason and time and sorted by time or by risk, with a verdict recorded once and
// an audit trail.
//
// Layout. Every key carries the hash tag {rv}, so that a review and its indexes share a Redis
// Cluster slot and one script can change them together:
//
//	<prefix>:{rv}:r:<payment_id>   hash: the decision (JSON), status, created (Unix ms), score,
//	                               card, reasons, and once decided: analyst, note, decided_at
//	<prefix>:{rv}:a:<payment_id>   list: the audit trail after opening, one JSON entry per event
//	<prefix>:{rv}:s:<status>       sorted set of the reviews of one status, by created
//	<prefix>:{rv}:ks:<status>      ... by score (riskiest first)
//	<prefix>:{rv}:c:<card>         ... of one card, by created
//	<prefix>:{rv}:x:<reason code>  ... with one reason, by created
//
// A list of every status walks the three status indexes at once. (Versions before kept an index
// of every review by created, :t, and by score, :k: two more entries a review, a sixth of its
// Redis CPU. The first maintenance pass removes them.)
//
// Retention: a review and its audit trail expire Config.Retention after it was opened; index
// entries older than that are dropped by one opening in 64, and every index written gets a TTL of
// the retention and a day.
package review

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/go-json-experiment/json"
	"github.com/go-json-experiment/json/jsontext"
	"github.com/redis/go-redis/v9"

	"github.com/paysentry/fraud-detector/internal/decision"
)

// Sentinel errors; the API maps them to statuses.
var (
	ErrNotFound        = errors.New("review not found")
	ErrAlreadyDecided  = errors.New("review already decided")
	ErrInvalidCursor   = errors.New("invalid cursor")
	ErrInvalidArgument = errors.New("invalid argument")
	// ErrNotPublished: a verdict is recorded, but a label could not be published; the same
	// verdict sent again publishes it.
	ErrNotPublished = errors.New("the verdict is recorded but a label could not be published; send the same verdict again")
)

// Statuses and verdicts.
const (
	StatusOpen       = "open"
	StatusFraud      = "fraud"
	StatusLegitimate = "legitimate"
)

// Config sets the store.
type Config struct {
	KeyPrefix string        `yaml:"key_prefix" env:"KEY_PREFIX"`
	Retention time.Duration `yaml:"retention" env:"RETENTION"`
	// CaseWindow is how long after a card's case opened its flagged payments join it (24h when 0).
	CaseWindow time.Duration `yaml:"case_window" env:"CASE_WINDOW"`
}

// Validate reports the first setting that is out of range.
func (c Config) Validate() error {
	switch {
	case c.KeyPrefix == "":
		return errors.New("review.key_prefix: must not be empty")
	case c.Retention < time.Hour:
		return fmt.Errorf("review.retention: must be at least 1h, got %s", c.Retention)
	case c.CaseWindow < 0 || c.CaseWindow > c.Retention:
		return fmt.Errorf("review.case_window: must be from 0 (24h) to review.retention, got %s", c.CaseWindow)
	}
	return nil
}

// Review is one flagged payment under review.
type Review struct {
	PaymentID string            `json:"payment_id"`
	CardID    string            `json:"card_id"`
	Status    string            `json:"status"`
	Score     *float64          `json:"score"`
	Reasons   []string          `json:"reasons"` // reason codes
	CreatedAt time.Time         `json:"created_at"`
	Decision  decision.Decision `json:"decision"`
	Verdict   *Verdict          `json:"verdict,omitempty"`
	CaseID    string            `json:"case_id,omitempty"` // the case it is in (reviews opened before cases have none)
	// Published: the verdict's label is on the labels topic.
	Published bool `json:"-"`
}

// Verdict is an analyst's finding on a review.
type Verdict struct {
	Label     string    `json:"label"` // fraud or legitimate
	Analyst   string    `json:"analyst"`
	Note      string    `json:"note"`
	DecidedAt time.Time `json:"decided_at"`
}

// AuditEntry is one event in a review's life.
type AuditEntry struct {
	Event   string    `json:"event"` // opened, decided
	At      time.Time `json:"at"`
	Analyst string    `json:"analyst,omitempty"`
	Label   string    `json:"label,omitempty"`
	Note    string    `json:"note,omitempty"`
}

// Store keeps the reviews.
type Store struct {
	rdb        redis.UniversalClient
	cfg        Config
	now        func() time.Time
	open       *redis.Script
	decide     *redis.Script
	decideCase *redis.Script
	opened     atomic.Int64 // reviews asked to open, for openScript's maintenance tickets
}

// NewStore returns a store on rdb.
func NewStore(rdb redis.UniversalClient, cfg Config, now func() time.Time) *Store {
	return &Store{rdb: rdb, cfg: cfg, now: now, open: redis.NewScript(openScript), decide: redis.NewScript(decideScript),
		decideCase: redis.NewScript(decideCaseScript)}
}

func (s *Store) key(parts ...string) string {
	return s.cfg.KeyPrefix + ":{rv}:" + strings.Join(parts, ":")
}

// openScript opens the reviews of a batch, each unless its payment has one, each in its card's
// case (caseLua).
//
// KEYS: the indexes of the open reviews by time and by score; the verdicts' indexes (fraud,
// legitimate by time, then by score) and the two indexes versions before kept (every review by
// time, by score), for maintenance; then the records, one a review, each once. ARGV: the
// retention (ms), the indexes' TTL (ms: the retention and a day), the keys' prefix (with the
// tag), the case window (ms); then openFields values a review: created (ms), score, the decision
// JSON, the card, the reasons (comma-separated), the payment id, and "1" if it holds a
// maintenance ticket (one opening in 64).
//
// Every index written gets one ZADD of all its new entries and one PEXPIRE. Then each review it
// opened with a ticket makes a maintenance pass: up to 5000 reviews and 5000 cases of each status
// past the retention as of the holder's created leave their status's indexes, the cases also the
// holder's card's; the old indexes are removed. The passes come after all the batch's entries are
// in, so a backlog review already past the retention leaves the indexes at once. Returns the
// number of reviews it opened.
const openScript = `
local retention, ttl, P, window = ARGV[1], ARGV[2], ARGV[3], ARGV[4]
local first = 9 -- the first record (KEYS 1-8: the statuses' indexes and the old ones)
-- Usually none is open yet, and one EXISTS of them all spares one a review.
local some = redis.call('EXISTS', unpack(KEYS, first)) > 0
local opened = 0
local byTime, byScore, passes = {}, {}, {}
` + caseLua + `
for r = first, #KEYS do
  local a = 4 + (r - first) * 7 -- openFields
  if not some or redis.call('EXISTS', KEYS[r]) == 0 then
    local created, score, card, id = ARGV[a + 1], ARGV[a + 2], ARGV[a + 4], ARGV[a + 6]
    local cid = intoCase(card, created, score, ARGV[a + 5], id)
    redis.call('HSET', KEYS[r], 'decision', ARGV[a + 3], 'status', 'open', 'created', created, 'score', score,
      'card', card, 'reasons', ARGV[a + 5], 'case', cid)
    redis.call('PEXPIRE', KEYS[r], retention) -- relative: Redis's clock need not be the service's
    byTime[2 * opened + 1], byTime[2 * opened + 2] = created, id
    byScore[2 * opened + 1], byScore[2 * opened + 2] = score, id
    opened = opened + 1
    if ARGV[a + 7] == '1' then -- a ticket's pass: its cutoff and card
      passes[#passes + 1] = {tonumber(created) - tonumber(retention), card}
    end
  end
end
if opened == 0 then
  return 0
end
writeCaseIndexes()
redis.call('ZADD', KEYS[1], unpack(byTime))
redis.call('PEXPIRE', KEYS[1], ttl)
redis.call('ZADD', KEYS[2], unpack(byScore))
redis.call('PEXPIRE', KEYS[2], ttl)
for _, pass in ipairs(passes) do
  redis.call('UNLINK', KEYS[7], KEYS[8])
  pruneCases(pass[1], pass[2])
  -- The reviews of each status past the retention, from its index by time, leave its indexes.
  for _, st in ipairs({{1, 2}, {3, 5}, {4, 6}}) do -- open, fraud, legitimate: by time, by score
    local old = redis.call('ZRANGEBYSCORE', KEYS[st[1]], '-inf', '(' .. pass[1], 'LIMIT', 0, 5000)
    if #old > 0 then
      redis.call('ZREM', KEYS[st[2]], unpack(old))
      redis.call('ZREM', KEYS[st[1]], unpack(old))
    end
  end
end
return opened
`

// openFields is the number of openScript's arguments a review; maxPerCall bounds the reviews of
// one call, so that a call holds Redis about 2 ms at most (BenchmarkOpenAll: 15 µs a review).
const (
	openFields = 7
	maxPerCall = 128
)

// Open opens a review for a flagged decision, once: a redelivered decision finds its review and
// changes nothing. It reports whether it opened one.
func (s *Store) Open(ctx context.Context, d decision.Decision) (bool, error) {
	n, err := s.openAll(ctx, []decision.Decision{d})
	if err != nil {
		return false, fmt.Errorf("open review %s: %w", d.PaymentID, err)
	}
	return n == 1, nil
}

// OpenAll opens the reviews of a batch's flagged decisions in one round trip, one openScript
// call for each maxPerCall of them; each is opened once, however often its decision is
// redelivered. It reports how many it opened. A decision's Payment must be valid JSON, as
// decision.Unmarshal leaves it, or empty: it is stored as it is, not checked again.
func (s *Store) OpenAll(ctx context.Context, ds []decision.Decision) (int, error) {
	n, err := s.openAll(ctx, ds)
	if err != nil {
		return 0, fmt.Errorf("open %d reviews: %w", len(ds), err)
	}
	return n, nil
}

func (s *Store) openAll(ctx context.Context, ds []decision.Decision) (opened int, err error) {
	var calls []openCall
	for i := 0; i < len(ds); i += maxPerCall {
		c, err := s.openCall(ds[i:min(i+maxPerCall, len(ds))])
		if err != nil {
			return 0, err
		}
		calls = append(calls, c)
	}
	for loaded := false; len(calls) > 0; loaded = true {
		pipe := s.rdb.Pipeline()
		cmds := make([]*redis.Cmd, len(calls))
		for i, c := range calls {
			cmds[i] = s.open.EvalSha(ctx, pipe, c.keys, c.args...)
		}
		_, _ = pipe.Exec(ctx) // each command has its own error
		// The calls Redis had no script for (restarted, or its scripts flushed) go again.
		var again []openCall
		for i, c := range cmds {
			n, err := c.Int()
			switch {
			case err == nil:
				opened += n
			case redis.HasErrorPrefix(err, "NOSCRIPT") && !loaded:
				again = append(again, calls[i])
			default:
				return 0, err
			}
		}
		if len(again) > 0 {
			if err := s.open.Load(ctx, s.rdb).Err(); err != nil {
				return 0, err
			}
		}
		calls = again
	}
	return opened, nil
}

// openCall is one call of openScript.
type openCall struct {
	keys []string
	args []any
}

// openCall is the call of openScript for some decisions. A decision that comes twice is left out
// the second time: it would find its review open.
func (s *Store) openCall(ds []decision.Decision) (openCall, error) {
	now := s.now()
	keys := []string{s.key("s", StatusOpen), s.key("ks", StatusOpen), s.key("s", StatusFraud), s.key("s", StatusLegitimate),
		s.key("ks", StatusFraud), s.key("ks", StatusLegitimate), s.key("t"), s.key("k")}
	records := make([]string, 0, len(ds))
	seen := make(map[string]bool, len(ds))
	args := make([]any, 4, 4+openFields*len(ds))
	buf := make([]byte, 0, 768*len(ds)) // the decisions' JSON, one after another: each argument is a slice of it
	for _, d := range ds {
		if len(d.Payment) == 0 {
			d.Payment = jsontext.Value("null")
		}
		ticket := "0"
		if s.opened.Add(1)%64 == 1 {
			ticket = "1"
		}
		if seen[d.PaymentID] {
			continue
		}
		seen[d.PaymentID] = true
		from := len(buf)
		buf = d.AppendJSON(buf)
		b := buf[from:len(buf):len(buf)]
		score := -1.0 // no model score: last in riskiest-first
		if d.Score != nil {
			score = *d.Score
		}
		codes := make([]string, len(d.Reasons))
		for i, r := range d.Reasons {
			codes[i] = r.Code
		}
		// A review is as old as its decision: a backlog opened after an outage keeps its order.
		created := d.DecidedAt
		if created.IsZero() || created.After(now) {
			created = now
		}
		records = append(records, s.key("r", d.PaymentID))
		args = append(args, created.UnixMilli(), score, b, d.CardID, strings.Join(codes, ","), d.PaymentID, ticket)
	}
	args[0], args[1] = s.cfg.Retention.Milliseconds(), (s.cfg.Retention + 24*time.Hour).Milliseconds()
	args[2], args[3] = s.cfg.KeyPrefix+":{rv}:", s.caseWindow().Milliseconds()
	return openCall{keys: append(keys, records...), args: args}, nil
}

// Get returns one review with its audit trail.
func (s *Store) Get(ctx context.Context, paymentID string) (Review, []AuditEntry, error) {
	pipe := s.rdb.Pipeline()
	rec := pipe.HGetAll(ctx, s.key("r", paymentID))
	trail := pipe.LRange(ctx, s.key("a", paymentID), 0, -1)
	if _, err := pipe.Exec(ctx); err != nil {
		return Review{}, nil, fmt.Errorf("get review %s: %w", paymentID, err)
	}
	if len(rec.Val()) == 0 {
		return Review{}, nil, ErrNotFound
	}
	r, err := parse(paymentID, rec.Val())
	if err != nil {
		return Review{}, nil, err
	}
	audit := []AuditEntry{{Event: "opened", At: r.CreatedAt}} // not stored: its time is the review's
	for _, e := range trail.Val() {
		var a AuditEntry
		if err := json.Unmarshal([]byte(e), &a); err == nil {
			audit = append(audit, a)
		}
	}
	return r, audit, nil
}

func parse(id string, h map[string]string) (Review, error) {
	r := Review{PaymentID: id, CardID: h["card"], Status: h["status"], CaseID: h["case"]}
	if err := json.Unmarshal([]byte(h["decision"]), &r.Decision); err != nil {
		return Review{}, fmt.Errorf("review %s: stored decision: %w", id, err)
	}
	r.Score = r.Decision.Score
	if h["reasons"] != "" {
		r.Reasons = strings.Split(h["reasons"], ",")
	}
	ms, _ := strconv.ParseInt(h["created"], 10, 64)
	r.CreatedAt = time.UnixMilli(ms).UTC()
	r.Published = h["published"] == "1"
	if r.Status != StatusOpen {
		at, _ := time.Parse(time.RFC3339Nano, h["decided_at"])
		r.Verdict = &Verdict{Label: r.Status, Analyst: h["analyst"], Note: h["note"], DecidedAt: at}
	}
	return r, nil
}

// decideScript records a verdict on an open review. KEYS: record, audit, open by time, open by
// score, <label> by time, <label> by score. ARGV: label, analyst, note, decided_at, audit entry,
// payment id, retention (ms). Returns 1, 0 if there is no review, or the status it already has.
const decideScript = `
local status = redis.call('HGET', KEYS[1], 'status')
if not status then
  return 0
end
if status ~= 'open' then
  return status
end
local created = tonumber(redis.call('HGET', KEYS[1], 'created'))
local score = redis.call('HGET', KEYS[1], 'score')
redis.call('HSET', KEYS[1], 'status', ARGV[1], 'analyst', ARGV[2], 'note', ARGV[3], 'decided_at', ARGV[4])
redis.call('RPUSH', KEYS[2], ARGV[5])
redis.call('PEXPIRE', KEYS[2], redis.call('PTTL', KEYS[1]))
redis.call('ZREM', KEYS[3], ARGV[6])
redis.call('ZREM', KEYS[4], ARGV[6])
redis.call('ZADD', KEYS[5], created, ARGV[6])
redis.call('ZADD', KEYS[6], score, ARGV[6])
redis.call('PEXPIRE', KEYS[5], ARGV[7] + 86400000)
redis.call('PEXPIRE', KEYS[6], ARGV[7] + 86400000)
return 1
`

// Decide records a verdict on an open review, once: a second one gets ErrAlreadyDecided.
func (s *Store) Decide(ctx context.Context, paymentID string, v Verdict) (Review, error) {
	if v.Label != StatusFraud && v.Label != StatusLegitimate {
		return Review{}, fmt.Errorf("%w: label must be fraud or legitimate, got %q", ErrInvalidArgument, v.Label)
	}
	audit, _ := json.Marshal(AuditEntry{Event: "decided", At: v.DecidedAt.UTC(), Analyst: v.Analyst, Label: v.Label, Note: v.Note})
	keys := []string{s.key("r", paymentID), s.key("a", paymentID), s.key("s", StatusOpen), s.key("ks", StatusOpen),
		s.key("s", v.Label), s.key("ks", v.Label)}
	res, err := s.decide.Run(ctx, s.rdb, keys, v.Label, v.Analyst, v.Note, v.DecidedAt.UTC().Format(time.RFC3339Nano),
		string(audit), paymentID, s.cfg.Retention.Milliseconds()).Result()
	if err != nil {
		return Review{}, fmt.Errorf("decide review %s: %w", paymentID, err)
	}
	switch res := res.(type) {
	case int64:
		if res == 0 {
			return Review{}, ErrNotFound
		}
	case string:
		return Review{}, fmt.Errorf("%w: it is %s", ErrAlreadyDecided, res)
	}
	r, _, err := s.Get(ctx, paymentID)
	return r, err
}

// MarkPublished records that a review's verdict is on the labels topic, and ends its claim.
func (s *Store) MarkPublished(ctx context.Context, paymentID string) error {
	// HSET on a key that expired meanwhile would make a record without a TTL: only if it exists.
	if err := s.rdb.Do(ctx, "EVAL", "if redis.call('EXISTS', KEYS[1]) == 1 then redis.call('HSET', KEYS[1], 'published', '1') end "+
		"redis.call('DEL', KEYS[2]) return 1", 2, s.key("r", paymentID), s.key("pc", paymentID)).Err(); err != nil {
		return fmt.Errorf("mark review %s published: %w", paymentID, err)
	}
	return nil
}

// ClaimPublish claims the publishing of the labels of decided reviews, for lease: it returns the
// payment ids whose labels are neither published nor claimed by another, which the caller
// publishes and marks (MarkPublished) or releases (ReleasePublish). Two requests that send the
// same verdict at once publish each label once; a claim whose holder died lapses after lease.
func (s *Store) ClaimPublish(ctx context.Context, paymentIDs []string, lease time.Duration) ([]string, error) {
	var claimed []string
	for from := 0; from < len(paymentIDs); from += chunk {
		part := paymentIDs[from:min(from+chunk, len(paymentIDs))]
		keys := make([]string, 0, 2*len(part))
		for _, id := range part {
			keys = append(keys, s.key("r", id), s.key("pc", id))
		}
		res, err := s.rdb.Eval(ctx, `local out = {}
for i = 1, #KEYS, 2 do
  local st = redis.call('HMGET', KEYS[i], 'status', 'published')
  if st[1] and st[1] ~= 'open' and st[2] ~= '1' and redis.call('SET', KEYS[i + 1], '1', 'NX', 'PX', ARGV[1]) then
    out[#out + 1] = (i + 1) / 2
  end
end
return out`, keys, lease.Milliseconds()).Int64Slice()
		if err != nil {
			return nil, fmt.Errorf("claim labels: %w", err)
		}
		for _, i := range res {
			claimed = append(claimed, part[i-1])
		}
	}
	return claimed, nil
}

// ReleasePublish gives up claims whose labels could not be published, so that the next try
// publishes them at once.
func (s *Store) ReleasePublish(ctx context.Context, paymentIDs []string) error {
	keys := make([]string, len(paymentIDs))
	for i, id := range paymentIDs {
		keys[i] = s.key("pc", id)
	}
	if len(keys) == 0 {
		return nil
	}
	if err := s.rdb.Del(ctx, keys...).Err(); err != nil {
		return fmt.Errorf("release label claims: %w", err)
	}
	return nil
}

// Filter selects reviews; zero fields select everything.
type Filter struct {
	Status, Card, Reason string
	From, To             time.Time // created within [From, To)
	Riskiest             bool      // by score, highest first; else newest first
	Limit                int
	Cursor               string // from the previous page
}

// Page is one page of a list.
type Page struct {
	Reviews []Review
	Next    string // cursor of the next page; empty on the last
}

// chunk is how many index entries a list reads at a time; maxExamined how many one request may
// look at before it returns what it has (perhaps nothing) with a cursor to go on from.
const (
	chunk       = 200
	maxExamined = 5000
)

// List returns a page of reviews in a stable order: newest first (created, then payment id,
// both descending), or riskiest first (score, then payment id). A card's reviews are found
// through its cases; a reason's by walking the statuses' indexes. The cursor carries the last
// entry the page looked at, so reviews opened meanwhile neither repeat nor push others off a
// page: a page goes on strictly after its cursor in that order.
func (s *Store) List(ctx context.Context, f Filter) (Page, error) {
	if f.Limit < 1 || f.Limit > 500 {
		return Page{}, fmt.Errorf("%w: limit must be from 1 to 500, got %d", ErrInvalidArgument, f.Limit)
	}
	if f.Status != "" && f.Status != StatusOpen && f.Status != StatusFraud && f.Status != StatusLegitimate {
		return Page{}, fmt.Errorf("%w: status must be open, fraud or legitimate, got %q", ErrInvalidArgument, f.Status)
	}
	if f.Card != "" {
		return s.listByCard(ctx, f)
	}
	// The statuses' indexes, in the order asked for; without a status, the three at once.
	var indexes []string
	byTime := !f.Riskiest
	statuses := []string{f.Status}
	if f.Status == "" {
		statuses = []string{StatusOpen, StatusFraud, StatusLegitimate}
	}
	for _, st := range statuses {
		if f.Riskiest {
			indexes = append(indexes, s.key("ks", st))
		} else {
			indexes = append(indexes, s.key("s", st))
		}
	}
	load := func(ctx context.Context, ids []string) ([]*Review, error) {
		pipe := s.rdb.Pipeline()
		recs := make([]*redis.MapStringStringCmd, len(ids))
		for i, id := range ids {
			recs[i] = pipe.HGetAll(ctx, s.key("r", id))
		}
		if _, err := pipe.Exec(ctx); err != nil {
			return nil, err
		}
		out := make([]*Review, len(ids))
		for i, id := range ids {
			if len(recs[i].Val()) > 0 {
				r, err := parse(id, recs[i].Val())
				if err != nil {
					return nil, err
				}
				out[i] = &r
			}
		}
		return out, nil
	}
	reviews, next, err := walkPage(ctx, s, indexes, byTime, f.From, f.To, f.Cursor, f.Limit, load, f.match)
	if err != nil {
		return Page{}, fmt.Errorf("list reviews: %w", err)
	}
	return Page{Reviews: reviews, Next: next}, nil
}

// walkPage walks indexes, merged, after the cursor, and returns up to limit of the records load
// finds that match accepts, with the cursor of the next page (empty on the last). With byTime the
// indexes' scores are Unix ms, bounded by from and to. A record load does not find (expired) has
// its entry removed from the index.
func walkPage[T any](ctx context.Context, s *Store, indexes []string, byTime bool, from, to time.Time, after string, limit int,
	load func(context.Context, []string) ([]*T, error), match func(T) bool) ([]T, string, error) {
	w := &walk{s: s, max: "+inf", min: "-inf"}
	for _, index := range indexes {
		w.ways = append(w.ways, &way{index: index})
	}
	if byTime {
		if !to.IsZero() {
			w.max = "(" + strconv.FormatInt(to.UnixMilli(), 10)
		}
		if !from.IsZero() {
			w.min = strconv.FormatInt(from.UnixMilli(), 10)
		}
	}
	var cur *cursor // the last entry seen: the walk goes on after it
	if after != "" {
		c, err := decodeCursor(after)
		if err != nil {
			return nil, "", err
		}
		cur = &c
	}
	var out []T
	examined := 0
	for {
		if examined >= maxExamined && cur != nil {
			return out, cur.encode(), nil // a filter that matches little: the client pages on
		}
		n, err := w.fill(ctx, cur)
		examined += n
		if err != nil {
			return nil, "", err
		}
		entries := w.take()
		if len(entries) == 0 {
			if w.done() {
				return out, "", nil
			}
			continue // a run of ties longer than a chunk
		}
		ids := make([]string, len(entries))
		for i, e := range entries {
			ids[i] = e.Member.(string)
		}
		recs, err := load(ctx, ids)
		if err != nil {
			return nil, "", err
		}
		for i, e := range entries {
			cur = &cursor{score: e.Score, id: ids[i]}
			if recs[i] == nil {
				s.rdb.ZRem(ctx, e.index, cur.id) // expired: its entry goes too
				continue
			}
			if !match(*recs[i]) {
				continue
			}
			out = append(out, *recs[i])
			if len(out) == limit {
				return out, cur.encode(), nil // the next page may turn out empty
			}
		}
	}
}

// walk reads one or more indexes after a cursor as one, in the lists' order: score, then payment
// id, both descending. Several are merged as they are read: a review is in one of them.
type walk struct {
	s        *Store
	max, min string // the scores' bounds, as ZRANGEBYSCORE takes them
	ways     []*way
}

// way is one index of a walk.
type way struct {
	index string
	skip  int64     // entries at the head of a fetch that are all on or before the cursor
	buf   []redis.Z // read, after the cursor, not yet taken
	done  bool      // nothing after buf
}

// entry is an index entry and the index it is in.
type entry struct {
	redis.Z
	index string
}

// fill reads the next chunk of each index whose read entries are all taken, after cur, and says
// how many entries it read. An index whose chunk held only entries on or before cur (a run of
// ties longer than a chunk) stays empty, to be read further in on the next fill.
func (w *walk) fill(ctx context.Context, cur *cursor) (int, error) {
	read := 0
	for _, x := range w.ways {
		if len(x.buf) > 0 || x.done {
			continue
		}
		entries, err := w.s.after(ctx, x.index, cur, w.max, w.min, x.skip)
		if err != nil {
			return read, err
		}
		read += len(entries)
		for _, e := range entries {
			if !cur.passed(e) {
				x.buf = append(x.buf, e)
			}
		}
		x.done = len(entries) < chunk
		if len(x.buf) > 0 {
			x.skip = 0
		} else {
			x.skip += int64(len(entries))
		}
	}
	return read, nil
}

// take takes the read entries in order, up to a chunk, for as long as every index that is not
// done has one read: past that, an entry not read yet may come first.
func (w *walk) take() []entry {
	var out []entry
	for len(out) < chunk {
		var next *way
		for _, x := range w.ways {
			switch {
			case len(x.buf) == 0 && !x.done:
				return out
			case len(x.buf) == 0:
			case next == nil || first(x.buf[0], next.buf[0]):
				next = x
			}
		}
		if next == nil {
			return out
		}
		out = append(out, entry{next.buf[0], next.index})
		next.buf = next.buf[1:]
	}
	return out
}

// order compares a and b in the lists' order, for sorting.
func order(a, b redis.Z) int {
	switch {
	case first(a, b):
		return -1
	case first(b, a):
		return 1
	}
	return 0
}

// passed says whether z is on or before the cursor c in the lists' order (never, without one).
func (c *cursor) passed(z redis.Z) bool {
	return c != nil && !first(redis.Z{Score: c.score, Member: c.id}, z)
}

// first says whether a comes before b in the lists' order.
func first(a, b redis.Z) bool {
	return a.Score > b.Score || a.Score == b.Score && a.Member.(string) > b.Member.(string)
}

// done says whether every index is read to its end and taken.
func (w *walk) done() bool {
	for _, x := range w.ways {
		if len(x.buf) > 0 || !x.done {
			return false
		}
	}
	return true
}

// after reads the next chunk of an index after the cursor, in descending order, within
// [min, max]. From a cursor whose entry is still in the index it reads by rank, so that a run of
// ties costs one read, not one per page; otherwise (the first page, or the entry gone) by score,
// from the cursor's score down, skip entries in.
func (s *Store) after(ctx context.Context, index string, cur *cursor, max, min string, skip int64) ([]redis.Z, error) {
	if cur != nil && skip == 0 {
		// By rank only while the cursor's entry is where the cursor says: an entry's score can
		// change (a case's rises as payments join it), and then its rank says nothing of the cursor.
		pipe := s.rdb.Pipeline()
		rankCmd := pipe.ZRevRank(ctx, index, cur.id)
		scoreCmd := pipe.ZScore(ctx, index, cur.id)
		_, _ = pipe.Exec(ctx)
		rank, err := rankCmd.Result()
		if err == nil && scoreCmd.Val() != cur.score {
			err = redis.Nil
		}
		switch {
		case err == nil:
			entries, err := s.rdb.ZRevRangeWithScores(ctx, index, rank+1, rank+chunk).Result()
			if err != nil {
				return nil, err
			}
			low, _ := strconv.ParseFloat(strings.TrimPrefix(min, "("), 64) // -inf parses too
			for i, e := range entries {
				if e.Score < low {
					return entries[:i], nil // past the filter's bound: the end
				}
			}
			return entries, nil
		case !errors.Is(err, redis.Nil):
			return nil, err
		}
	}
	top := max
	if cur != nil {
		top = strconv.FormatFloat(cur.score, 'g', -1, 64) // inclusive: ties are told apart by id
	}
	return s.rdb.ZRevRangeByScoreWithScores(ctx, index, &redis.ZRangeBy{Max: top, Min: min, Offset: skip, Count: chunk}).Result()
}

func (f Filter) match(r Review) bool {
	switch {
	case f.Status != "" && r.Status != f.Status,
		f.Card != "" && r.CardID != f.Card,
		f.Reason != "" && !contains(r.Reasons, f.Reason),
		!f.From.IsZero() && r.CreatedAt.Before(f.From),
		!f.To.IsZero() && !r.CreatedAt.Before(f.To):
		return false
	}
	return true
}

func contains(s []string, v string) bool {
	for _, x := range s {
		if x == v {
			return true
		}
	}
	return false
}

// cursor is the last entry of a page: its index score and payment id.
type cursor struct {
	score float64
	id    string
}

func (c cursor) encode() string {
	return base64.RawURLEncoding.EncodeToString([]byte(strconv.FormatFloat(c.score, 'g', -1, 64) + "|" + c.id))
}

func decodeCursor(s string) (cursor, error) {
	b, err := base64.RawURLEncoding.DecodeString(s)
	if err != nil {
		return cursor{}, ErrInvalidCursor
	}
	score, id, ok := strings.Cut(string(b), "|")
	f, err := strconv.ParseFloat(score, 64)
	if !ok || err != nil || id == "" || math.IsNaN(f) || math.IsInf(f, 0) {
		return cursor{}, ErrInvalidCursor
	}
	return cursor{score: f, id: id}, nil
}
