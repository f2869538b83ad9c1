package review

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/go-json-experiment/json"
	"github.com/redis/go-redis/v9"
)

// Cases. A flagged payment joins its card's newest case that opened within Config.CaseWindow
// before it (by the decisions' times), if that case is open; otherwise it opens one. A verdict on a case decides every review of it still open
// (one labelled on its own before keeps its label), and the case closes: the card's next flagged
// payment opens a new one. Keys, beside the reviews' (same {rv} tag):
//
//	<prefix>:{rv}:case:<id>        hash: card, status, opened, updated (Unix ms), score (the
//	                               highest, -1 none), reasons (distinct codes), n (payments),
//	                               assignee, and once decided: analyst, note, decided_at
//	<prefix>:{rv}:cp:<id>          list: the ids of the payments that joined it after the first
//	<prefix>:{rv}:cs:<status>      sorted set of the cases of one status, by opened; :cks: by score
//	<prefix>:{rv}:cc:<card>        ... of one card, by opened: its newest is the one a payment joins
//
// A list by reason walks the cases by time or score and keeps those with the reason: an index
// per reason would cost every case another entry, for a filter that most cases match.
// A case's id is its first payment's id. Its review record names it (field case). The reviews
// are found by card through their cases, and by reason by their status's index.

// Case is a card's incident: the flagged payments of one card from its first until
// Config.CaseWindow later, decided together. Its id is its first payment's id.
type Case struct {
	ID        string    `json:"case_id"`
	CardID    string    `json:"card_id"`
	Status    string    `json:"status"` // open, fraud, legitimate
	OpenedAt  time.Time `json:"opened_at"`
	UpdatedAt time.Time `json:"updated_at"` // when its newest payment was decided
	Score     *float64  `json:"score"`      // the highest of its payments' scores; null if none had one
	Reasons   []string  `json:"reasons"`    // the distinct reason codes of its payments, in the order first seen
	Payments  int       `json:"payments"`
	Assignee  string    `json:"assignee,omitempty"`
	Verdict   *Verdict  `json:"verdict,omitempty"`
}

// CaseFilter selects cases; zero fields select everything.
type CaseFilter struct {
	Status, Card, Reason string
	From, To             time.Time // opened within [From, To)
	Riskiest             bool      // by score, highest first; else newest first (opened)
	Limit                int       // 1 to 500
	Cursor               string    // from the previous page
}

// CasePage is one page of cases.
type CasePage struct {
	Cases []Case
	Next  string // cursor of the next page; empty on the last
}

// caseLua is openScript's part for cases: intoCase puts a review it opened into its card's open
// case, or opens one, and returns the case's id; writeCaseIndexes writes the call's new index
// entries, one ZADD an index; pruneCases drops the cases past the retention from the indexes of
// every status and of the maintenance pass holder's card. It uses openScript's retention, ttl, P
// (the keys' prefix, with the tag) and window (ms).
const caseLua = `
local caseTime, caseScore, caseCard = {}, {}, {} -- the case indexes' new entries: one ZADD each
local openedHere = {} -- card: {id, opened} of each case this call opened for it
local function addEntry(t, key, score, member)
  local e = t[key]
  if not e then
    e = {}
    t[key] = e
  end
  e[#e + 1], e[#e + 2] = score, member
end
local function intoCase(card, created, score, reasons, id)
  -- The card's newest case that opened within the window before this payment: one this call
  -- opened, or one its index holds.
  local t, from = tonumber(created), tonumber(created) - tonumber(window)
  local cid, at
  for _, o in ipairs(openedHere[card] or {}) do
    if o[2] > from and o[2] <= t and (not at or o[2] > at) then
      cid, at = o[1], o[2]
    end
  end
  if not cid then -- a case this call opened is newer than any the index held before
    cid = redis.call('ZREVRANGEBYSCORE', P .. 'cc:' .. card, created, '(' .. from, 'LIMIT', 0, 1)[1]
  end
  if cid then
    local c = P .. 'case:' .. cid
    local cur = redis.call('HMGET', c, 'score', 'reasons', 'opened', 'status', 'updated', 'n')
    if cur[4] == 'open' then
      local cp = P .. 'cp:' .. cid
      if redis.call('RPUSH', cp, id) == 1 then
        redis.call('PEXPIRE', cp, redis.call('PTTL', c))
      end
      local set = {'n', (tonumber(cur[6]) or 0) + 1}
      if tonumber(created) > tonumber(cur[5]) then
        set[#set + 1], set[#set + 2] = 'updated', created
      end
      if tonumber(score) > tonumber(cur[1]) then
        set[#set + 1], set[#set + 2] = 'score', score
        addEntry(caseScore, P .. 'cks:open', score, cid)
      end
      local have, added = (cur[2] == '' and ',') or (',' .. cur[2] .. ','), false
      for code in string.gmatch(reasons, '[^,]+') do
        if not string.find(have, ',' .. code .. ',', 1, true) then
          have, added = have .. code .. ',', true
        end
      end
      if added then
        set[#set + 1], set[#set + 2] = 'reasons', string.sub(have, 2, -2)
      end
      redis.call('HSET', c, unpack(set))
      return cid
    end
  end
  -- A case of its own: its id is this payment's; the list of the payments that join it begins
  -- with the first to join.
  cid = id
  local here = openedHere[card] or {}
  here[#here + 1] = {cid, t}
  openedHere[card] = here
  local c = P .. 'case:' .. cid
  local codes, have = {}, ','
  for code in string.gmatch(reasons, '[^,]+') do
    if not string.find(have, ',' .. code .. ',', 1, true) then
      have = have .. code .. ','
      codes[#codes + 1] = code
    end
  end
  redis.call('HSET', c, 'card', card, 'status', 'open', 'opened', created, 'updated', created, 'score', score,
    'reasons', table.concat(codes, ','), 'n', 1)
  redis.call('PEXPIRE', c, tonumber(retention) + tonumber(window))
  addEntry(caseTime, P .. 'cs:open', created, cid)
  addEntry(caseScore, P .. 'cks:open', score, cid)
  addEntry(caseCard, P .. 'cc:' .. card, created, cid)
  return cid
end
local function writeCaseIndexes()
  for _, t in ipairs({caseTime, caseScore, caseCard}) do
    for key, entries in pairs(t) do
      redis.call('ZADD', key, unpack(entries))
      redis.call('PEXPIRE', key, ttl)
    end
  end
end
local function pruneCases(cutoff, card)
  for _, st in ipairs({'open', 'fraud', 'legitimate'}) do
    local old = redis.call('ZRANGEBYSCORE', P .. 'cs:' .. st, '-inf', '(' .. cutoff, 'LIMIT', 0, 5000)
    if #old > 0 then
      redis.call('ZREM', P .. 'cks:' .. st, unpack(old))
      redis.call('ZREM', P .. 'cc:' .. card, unpack(old))
      redis.call('ZREM', P .. 'cs:' .. st, unpack(old))
    end
  end
end
`

// caseWindow is how long after it opened a case takes its card's flagged payments.
func (s *Store) caseWindow() time.Duration {
	if s.cfg.CaseWindow > 0 {
		return s.cfg.CaseWindow
	}
	return 24 * time.Hour
}

// decideCaseScript records a verdict on an open case and on each of its reviews still open, and
// closes it. KEYS: the case. ARGV: the keys' prefix (with the tag), the case id, label, analyst,
// note, decided_at, the audit entry, the indexes' TTL (ms). Returns {1, the ids of the reviews it
// decided...}, {0} if there is no case, or {2, the status it already has}.
const decideCaseScript = `
local P, cid, label, ttl = ARGV[1], ARGV[2], ARGV[3], ARGV[8]
local c = KEYS[1]
local h = redis.call('HMGET', c, 'status', 'card', 'opened', 'score')
if not h[1] then
  return {0}
end
if h[1] ~= 'open' then
  return {2, h[1]}
end
local set = {'status', label, 'analyst', ARGV[4], 'note', ARGV[5], 'decided_at', ARGV[6]}
redis.call('HSET', c, unpack(set))
redis.call('ZREM', P .. 'cs:open', cid)
redis.call('ZREM', P .. 'cks:open', cid)
redis.call('ZADD', P .. 'cs:' .. label, h[3], cid)
redis.call('ZADD', P .. 'cks:' .. label, h[4], cid)
redis.call('PEXPIRE', P .. 'cs:' .. label, ttl)
redis.call('PEXPIRE', P .. 'cks:' .. label, ttl)
local out = {1}
local pids = redis.call('LRANGE', P .. 'cp:' .. cid, 0, -1)
table.insert(pids, 1, cid)
for _, pid in ipairs(pids) do
  local r = P .. 'r:' .. pid
  local rh = redis.call('HMGET', r, 'status', 'created', 'score')
  if rh[1] == 'open' then
    redis.call('HSET', r, unpack(set))
    local a = P .. 'a:' .. pid
    redis.call('RPUSH', a, ARGV[7])
    redis.call('PEXPIRE', a, redis.call('PTTL', r))
    redis.call('ZREM', P .. 's:open', pid)
    redis.call('ZREM', P .. 'ks:open', pid)
    redis.call('ZADD', P .. 's:' .. label, rh[2], pid)
    redis.call('ZADD', P .. 'ks:' .. label, rh[3], pid)
    out[#out + 1] = pid
  end
end
redis.call('PEXPIRE', P .. 's:' .. label, ttl)
redis.call('PEXPIRE', P .. 'ks:' .. label, ttl)
return out
`

// DecideCase records a verdict on an open case, once (a second gets ErrAlreadyDecided), and on
// each of its reviews still open. It returns the case and the reviews it decided, whose labels
// the caller publishes.
func (s *Store) DecideCase(ctx context.Context, id string, v Verdict) (Case, []Review, error) {
	if v.Label != StatusFraud && v.Label != StatusLegitimate {
		return Case{}, nil, fmt.Errorf("%w: label must be fraud or legitimate, got %q", ErrInvalidArgument, v.Label)
	}
	audit, _ := json.Marshal(AuditEntry{Event: "decided", At: v.DecidedAt.UTC(), Analyst: v.Analyst, Label: v.Label, Note: v.Note})
	res, err := s.decideCase.Run(ctx, s.rdb, []string{s.key("case", id)}, s.cfg.KeyPrefix+":{rv}:", id, v.Label, v.Analyst,
		v.Note, v.DecidedAt.UTC().Format(time.RFC3339Nano), string(audit), (s.cfg.Retention + 24*time.Hour).Milliseconds()).Slice()
	if err != nil {
		return Case{}, nil, fmt.Errorf("decide case %s: %w", id, err)
	}
	switch code, _ := res[0].(int64); code {
	case 0:
		return Case{}, nil, ErrNotFound
	case 2:
		return Case{}, nil, fmt.Errorf("%w: it is %v", ErrAlreadyDecided, res[1])
	}
	var ids []string
	for _, pid := range res[1:] {
		if p, ok := pid.(string); ok {
			ids = append(ids, p)
		}
	}
	c, _, err := s.GetCase(ctx, id)
	if err != nil {
		return Case{}, nil, err
	}
	reviews, err := s.reviewsOf(ctx, ids)
	if err != nil {
		return Case{}, nil, fmt.Errorf("decide case %s: %w", id, err)
	}
	return c, reviews, nil
}

// CaseReviews returns every review of a case, newest first (GetCase returns the newest
// maxCasePayments).
func (s *Store) CaseReviews(ctx context.Context, id string) ([]Review, error) {
	joined, err := s.rdb.LRange(ctx, s.key("cp", id), 0, -1).Result()
	if err != nil && !errors.Is(err, redis.Nil) {
		return nil, fmt.Errorf("reviews of case %s: %w", id, err)
	}
	reviews, err := s.reviewsOf(ctx, append([]string{id}, joined...))
	if err != nil {
		return nil, fmt.Errorf("reviews of case %s: %w", id, err)
	}
	return reviews, nil
}

// reviewsOf reads the reviews of payment ids, leaving out those expired, newest first.
func (s *Store) reviewsOf(ctx context.Context, ids []string) ([]Review, error) {
	var reviews []Review
	for from := 0; from < len(ids); from += chunk {
		part := ids[from:min(from+chunk, len(ids))]
		pipe := s.rdb.Pipeline()
		recs := make([]*redis.MapStringStringCmd, len(part))
		for i, pid := range part {
			recs[i] = pipe.HGetAll(ctx, s.key("r", pid))
		}
		if _, err := pipe.Exec(ctx); err != nil && !errors.Is(err, redis.Nil) {
			return nil, err
		}
		for i, pid := range part {
			if len(recs[i].Val()) == 0 {
				continue // expired
			}
			r, err := parse(pid, recs[i].Val())
			if err != nil {
				return nil, err
			}
			reviews = append(reviews, r)
		}
	}
	slices.SortStableFunc(reviews, func(a, b Review) int {
		if c := b.CreatedAt.Compare(a.CreatedAt); c != 0 {
			return c
		}
		return strings.Compare(b.PaymentID, a.PaymentID)
	})
	return reviews, nil
}

// AssignCase records who works on a case.
func (s *Store) AssignCase(ctx context.Context, id, analyst string) (Case, error) {
	n, err := s.rdb.Do(ctx, "EVAL", "if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end redis.call('HSET', KEYS[1], 'assignee', ARGV[1]) return 1",
		1, s.key("case", id), analyst).Int()
	if err != nil {
		return Case{}, fmt.Errorf("assign case %s: %w", id, err)
	}
	if n == 0 {
		return Case{}, ErrNotFound
	}
	c, _, err := s.GetCase(ctx, id)
	return c, err
}

// maxCasePayments bounds the reviews GetCase returns: the newest.
const maxCasePayments = 1000

// GetCase returns a case and the reviews of its payments, newest first (the newest
// maxCasePayments of them; Case.Payments counts all).
func (s *Store) GetCase(ctx context.Context, id string) (Case, []Review, error) {
	pipe := s.rdb.Pipeline()
	rec := pipe.HGetAll(ctx, s.key("case", id))
	joined := pipe.LRange(ctx, s.key("cp", id), -(maxCasePayments - 1), -1)
	if _, err := pipe.Exec(ctx); err != nil && !errors.Is(err, redis.Nil) {
		return Case{}, nil, fmt.Errorf("get case %s: %w", id, err)
	}
	if len(rec.Val()) == 0 {
		return Case{}, nil, ErrNotFound
	}
	c := parseCase(id, rec.Val())
	reviews, err := s.reviewsOf(ctx, append([]string{id}, joined.Val()...))
	if err != nil {
		return Case{}, nil, fmt.Errorf("get case %s: %w", id, err)
	}
	return c, reviews, nil
}

func parseCase(id string, h map[string]string) Case {
	c := Case{ID: id, CardID: h["card"], Status: h["status"], Assignee: h["assignee"], Reasons: []string{}}
	ms, _ := strconv.ParseInt(h["opened"], 10, 64)
	c.OpenedAt = time.UnixMilli(ms).UTC()
	ms, _ = strconv.ParseInt(h["updated"], 10, 64)
	c.UpdatedAt = time.UnixMilli(ms).UTC()
	if score, err := strconv.ParseFloat(h["score"], 64); err == nil && score >= 0 {
		c.Score = &score
	}
	if h["reasons"] != "" {
		c.Reasons = strings.Split(h["reasons"], ",")
	}
	c.Payments, _ = strconv.Atoi(h["n"])
	if c.Status != StatusOpen {
		at, _ := time.Parse(time.RFC3339Nano, h["decided_at"])
		c.Verdict = &Verdict{Label: c.Status, Analyst: h["analyst"], Note: h["note"], DecidedAt: at}
	}
	return c
}

// ListCases returns a page of cases in a stable order: newest first (opened, then id, both
// descending), or riskiest first (score, then id), from a cursor as List's.
func (s *Store) ListCases(ctx context.Context, f CaseFilter) (CasePage, error) {
	if f.Limit < 1 || f.Limit > 500 {
		return CasePage{}, fmt.Errorf("%w: limit must be from 1 to 500, got %d", ErrInvalidArgument, f.Limit)
	}
	if f.Status != "" && f.Status != StatusOpen && f.Status != StatusFraud && f.Status != StatusLegitimate {
		return CasePage{}, fmt.Errorf("%w: status must be open, fraud or legitimate, got %q", ErrInvalidArgument, f.Status)
	}
	statuses := []string{f.Status}
	if f.Status == "" {
		statuses = []string{StatusOpen, StatusFraud, StatusLegitimate}
	}
	var indexes []string
	switch {
	case f.Card != "":
		return s.listCardCases(ctx, f)
	case f.Riskiest:
		for _, st := range statuses {
			indexes = append(indexes, s.key("cks", st))
		}
	default:
		for _, st := range statuses {
			indexes = append(indexes, s.key("cs", st))
		}
	}
	load := func(ctx context.Context, ids []string) ([]*Case, error) {
		pipe := s.rdb.Pipeline()
		recs := make([]*redis.MapStringStringCmd, len(ids))
		for i, id := range ids {
			recs[i] = pipe.HGetAll(ctx, s.key("case", id))
		}
		if _, err := pipe.Exec(ctx); err != nil {
			return nil, err
		}
		out := make([]*Case, len(ids))
		for i, id := range ids {
			if len(recs[i].Val()) > 0 {
				c := parseCase(id, recs[i].Val())
				out[i] = &c
			}
		}
		return out, nil
	}
	match := func(c Case) bool {
		switch {
		case f.Status != "" && c.Status != f.Status,
			f.Card != "" && c.CardID != f.Card,
			f.Reason != "" && !slices.Contains(c.Reasons, f.Reason),
			!f.From.IsZero() && c.OpenedAt.Before(f.From),
			!f.To.IsZero() && !c.OpenedAt.Before(f.To):
			return false
		}
		return true
	}
	cases, next, err := walkPage(ctx, s, indexes, !f.Riskiest, f.From, f.To, f.Cursor, f.Limit, load, match)
	if err != nil {
		return CasePage{}, fmt.Errorf("list cases: %w", err)
	}
	return CasePage{Cases: cases, Next: next}, nil
}

// maxCardReviews bounds the reviews a list by card looks at: the card's newest cases', up to
// this many.
const maxCardReviews = 10_000

// listByCard lists a card's reviews: those of its cases (and of the index by card that versions
// before cases kept), sorted in the order asked for, a page after the cursor.
func (s *Store) listByCard(ctx context.Context, f Filter) (Page, error) {
	var after *cursor
	if f.Cursor != "" {
		c, err := decodeCursor(f.Cursor)
		if err != nil {
			return Page{}, err
		}
		after = &c
	}
	pipe := s.rdb.Pipeline()
	cases := pipe.ZRevRange(ctx, s.key("cc", f.Card), 0, maxCardReviews-1)
	legacy := pipe.ZRevRange(ctx, s.key("c", f.Card), 0, maxCardReviews-1)
	if _, err := pipe.Exec(ctx); err != nil && !errors.Is(err, redis.Nil) {
		return Page{}, fmt.Errorf("list reviews: %w", err)
	}
	pipe = s.rdb.Pipeline()
	joined := make([]*redis.StringSliceCmd, len(cases.Val()))
	for i, cid := range cases.Val() {
		joined[i] = pipe.LRange(ctx, s.key("cp", cid), 0, maxCardReviews-1)
	}
	if len(joined) > 0 {
		if _, err := pipe.Exec(ctx); err != nil && !errors.Is(err, redis.Nil) {
			return Page{}, fmt.Errorf("list reviews: %w", err)
		}
	}
	seen := map[string]bool{}
	var ids []string
	add := func(id string) {
		if !seen[id] && len(ids) < maxCardReviews {
			seen[id] = true
			ids = append(ids, id)
		}
	}
	for i, cid := range cases.Val() {
		add(cid)
		for _, id := range joined[i].Val() {
			add(id)
		}
	}
	for _, id := range legacy.Val() {
		add(id)
	}
	// Each review's place in the order, then the page.
	pipe = s.rdb.Pipeline()
	heads := make([]*redis.SliceCmd, len(ids))
	for i, id := range ids {
		heads[i] = pipe.HMGet(ctx, s.key("r", id), "created", "score")
	}
	if len(ids) > 0 {
		if _, err := pipe.Exec(ctx); err != nil && !errors.Is(err, redis.Nil) {
			return Page{}, fmt.Errorf("list reviews: %w", err)
		}
	}
	var entries []redis.Z
	for i, id := range ids {
		v := heads[i].Val()
		if len(v) != 2 || v[0] == nil {
			continue // expired
		}
		field := v[0]
		if f.Riskiest {
			field = v[1]
		}
		str, _ := field.(string)
		score, err := strconv.ParseFloat(str, 64)
		if err != nil {
			continue
		}
		if !f.Riskiest && (!f.From.IsZero() && score < float64(f.From.UnixMilli()) || !f.To.IsZero() && score >= float64(f.To.UnixMilli())) {
			continue
		}
		if z := (redis.Z{Score: score, Member: id}); !after.passed(z) {
			entries = append(entries, z)
		}
	}
	slices.SortFunc(entries, order)
	var page Page
	for len(entries) > 0 && len(page.Reviews) < f.Limit {
		n := min(len(entries), chunk)
		pipe = s.rdb.Pipeline()
		recs := make([]*redis.MapStringStringCmd, n)
		for i, e := range entries[:n] {
			recs[i] = pipe.HGetAll(ctx, s.key("r", e.Member.(string)))
		}
		if _, err := pipe.Exec(ctx); err != nil {
			return Page{}, fmt.Errorf("list reviews: %w", err)
		}
		for i, e := range entries[:n] {
			if len(recs[i].Val()) == 0 {
				continue
			}
			r, err := parse(e.Member.(string), recs[i].Val())
			if err != nil {
				return Page{}, err
			}
			if !f.match(r) {
				continue
			}
			page.Reviews = append(page.Reviews, r)
			if len(page.Reviews) == f.Limit {
				if i < n-1 || n < len(entries) {
					page.Next = cursor{score: e.Score, id: e.Member.(string)}.encode()
				}
				return page, nil
			}
		}
		entries = entries[n:]
	}
	return page, nil
}

// listCardCases lists a card's cases: every one its index holds (up to maxCardReviews), in the
// order asked for, a page after the cursor.
func (s *Store) listCardCases(ctx context.Context, f CaseFilter) (CasePage, error) {
	var after *cursor
	if f.Cursor != "" {
		c, err := decodeCursor(f.Cursor)
		if err != nil {
			return CasePage{}, err
		}
		after = &c
	}
	ids, err := s.rdb.ZRevRange(ctx, s.key("cc", f.Card), 0, maxCardReviews-1).Result()
	if err != nil && !errors.Is(err, redis.Nil) {
		return CasePage{}, fmt.Errorf("list cases: %w", err)
	}
	type placed struct {
		z redis.Z
		c Case
	}
	var all []placed
	for from := 0; from < len(ids); from += chunk {
		part := ids[from:min(from+chunk, len(ids))]
		pipe := s.rdb.Pipeline()
		recs := make([]*redis.MapStringStringCmd, len(part))
		for i, id := range part {
			recs[i] = pipe.HGetAll(ctx, s.key("case", id))
		}
		if _, err := pipe.Exec(ctx); err != nil && !errors.Is(err, redis.Nil) {
			return CasePage{}, fmt.Errorf("list cases: %w", err)
		}
		for i, id := range part {
			if len(recs[i].Val()) == 0 {
				continue // expired
			}
			c := parseCase(id, recs[i].Val())
			if f.Status != "" && c.Status != f.Status || f.Reason != "" && !slices.Contains(c.Reasons, f.Reason) ||
				!f.From.IsZero() && c.OpenedAt.Before(f.From) || !f.To.IsZero() && !c.OpenedAt.Before(f.To) {
				continue
			}
			z := redis.Z{Score: float64(c.OpenedAt.UnixMilli()), Member: id}
			if f.Riskiest {
				z.Score = -1
				if c.Score != nil {
					z.Score = *c.Score
				}
			}
			if !after.passed(z) {
				all = append(all, placed{z, c})
			}
		}
	}
	slices.SortFunc(all, func(a, b placed) int { return order(a.z, b.z) })
	var page CasePage
	for i, p := range all {
		if len(page.Cases) == f.Limit {
			break
		}
		page.Cases = append(page.Cases, p.c)
		if len(page.Cases) == f.Limit && i < len(all)-1 {
			page.Next = cursor{score: p.z.Score, id: p.z.Member.(string)}.encode()
		}
	}
	return page, nil
}
