// Package lists keeps the named lists that rules test membership in (`payment.card_id in
// lists.blocked_cards`): block and allow lists of cards, merchants, countries, IPs, devices and
// BINs. The rules file declares the lists, a name and a kind each (SetSpecs is told the current
// ones); analysts change their contents over the API; every instance of the service reads them
// from Redis into an immutable in-memory Snapshot, refreshed every interval by Run, which the
// stream asks without a round trip.
//
// Layout. Every key carries the hash tag {lists}, so that all of them share a Redis Cluster slot
// and one script changes an item, its list's version and the audit trail together:
//
//	<prefix>:{lists}:i:<name>   hash: value → {"added_by", "added_at", "note"} (JSON)
//	<prefix>:{lists}:x:<name>   sorted set of the values, all of score 0: the items in byte
//	                            order, for pages that stay stable while the list changes
//	<prefix>:{lists}:v          hash: list name → version, raised by one on every real change;
//	                            and "@epoch" → a random value written with the first change,
//	                            so that a list rebuilt after a loss never looks unchanged
//	<prefix>:{lists}:a:<name>   stream: the audit trail, one entry (op, value, by, note, at) per
//	                            change, capped near 10,000 entries (XADD MAXLEN ~)
//
// The audit trail is not forever: each list keeps about its last 10,000 changes (a few more at
// times, as Redis trims whole nodes of the stream), and older ones are dropped as new ones come.
// Whoever must keep every change copies the trail out before then.
//
// No card number gets into a list: Normalize refuses a value of any kind that holds one, and Put
// a note that does (see Normalize), so the items, the audit trail and the logs of changes never
// carry one.
//
// Lists are policy, not state: their keys have no TTL, unlike every other key of the service.
// Redis losing its data is not silent: Refresh sees the versions hash gone, or its epoch
// changed, counts a loss (Losses), Run logs it at ERROR, and the snapshot holds what Redis holds
// (empty lists), which is the truth.
//
// When Redis does not answer, the snapshot stays the last one read: rules keep testing the lists
// they last saw.
package lists

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"github.com/go-json-experiment/json"
	"github.com/redis/go-redis/v9"

	"github.com/paysentry/fraud-detector/internal/payment"
)

// Sentinel errors; the API maps them to statuses.
var (
	ErrUnknownList     = errors.New("unknown list")
	ErrInvalidValue    = errors.New("invalid list value")
	ErrInvalidNote     = errors.New("invalid note") // over MaxNoteLen, or holding a card number
	ErrNotFound        = errors.New("list item not found")
	ErrInvalidArgument = errors.New("invalid argument") // a cursor or a limit out of range
)

// Spec declares a list; it comes from the rules file.
type Spec struct {
	Name        string
	Kind        string
	Description string
}

// MaxNameLen bounds a list's name.
const MaxNameLen = 64

// Validate reports whether the spec can be declared: a name that is a CEL identifier in lower
// case (a letter, then letters, digits and underscores, at most MaxNameLen) and a known kind.
func (sp Spec) Validate() error {
	if sp.Name == "" || len(sp.Name) > MaxNameLen || sp.Name[0] < 'a' || sp.Name[0] > 'z' {
		return fmt.Errorf("list %q: a name is a lower-case letter, then letters, digits and underscores, at most %d", sp.Name, MaxNameLen)
	}
	for i := 0; i < len(sp.Name); i++ {
		if c := sp.Name[i]; !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '_') {
			return fmt.Errorf("list %q: a name is a lower-case letter, then letters, digits and underscores, at most %d", sp.Name, MaxNameLen)
		}
	}
	if !slices.Contains(Kinds(), sp.Kind) {
		return fmt.Errorf("list %s: kind must be one of %s, got %q", sp.Name, strings.Join(Kinds(), ", "), sp.Kind)
	}
	return nil
}

// Item is one value of a list.
type Item struct {
	List    string    `json:"list"`
	Value   string    `json:"value"`
	AddedBy string    `json:"added_by"`
	AddedAt time.Time `json:"added_at"`
	Note    string    `json:"note"`
}

// meta is what the items hash holds of an item.
type meta struct {
	AddedBy string    `json:"added_by"`
	AddedAt time.Time `json:"added_at"`
	Note    string    `json:"note"`
}

// Change is one entry of a list's audit trail.
type Change struct {
	List  string    `json:"list"`
	Value string    `json:"value"`
	Op    string    `json:"op"` // OpAdd or OpRemove
	By    string    `json:"by"`
	Note  string    `json:"note"`
	At    time.Time `json:"at"`
}

// Operations of the audit trail.
const (
	OpAdd    = "add"
	OpRemove = "remove"
)

// Limits of a page, of a note and of the audit trail.
const (
	MaxPage    = 1000  // items or changes one call returns at most
	MaxNoteLen = 1000  // characters of an item's note
	auditCap   = 10000 // entries an audit trail keeps, about
	epochName  = "@epoch"
)

// Store keeps the lists in Redis and the snapshot of them in memory. Safe for concurrent use.
type Store struct {
	rdb    redis.UniversalClient
	prefix string
	now    func() time.Time
	put    *redis.Script
	del    *redis.Script
	page   *redis.Script

	specs atomic.Pointer[specSet]

	refreshMu sync.Mutex // one Refresh at a time
	known     struct {   // what the current snapshot was read at; under refreshMu
		epoch    string
		versions map[string]int64
	}
	swapMu    sync.Mutex // building and swapping a snapshot (Refresh and SetSpecs)
	snap      atomic.Pointer[Snapshot]
	losses    atomic.Int64
	reads     atomic.Int64              // lists read in full by Refresh, for tests
	refreshed atomic.Pointer[time.Time] // when a Refresh last succeeded; nil before the first
}

// specSet is the declared lists, by name and sorted.
type specSet struct {
	byName map[string]Spec
	sorted []Spec
	names  string // for messages
}

// NewStore returns a store on rdb under prefix, with no lists declared and an empty snapshot.
func NewStore(rdb redis.UniversalClient, prefix string, now func() time.Time) *Store {
	s := &Store{rdb: rdb, prefix: prefix, now: now,
		put: redis.NewScript(putScript), del: redis.NewScript(deleteScript), page: redis.NewScript(pageScript)}
	s.specs.Store(&specSet{byName: map[string]Spec{}, names: "none"})
	s.snap.Store(&Snapshot{})
	return s
}

func (s *Store) key(parts ...string) string {
	return s.prefix + ":{lists}:" + strings.Join(parts, ":")
}

// SetSpecs declares the lists the rules declare now, replacing the ones before (on every reload
// of the rules). A spec that fails Validate is left out (the rules validate their specs when
// they load); of two with one name the last counts. The items of a list no longer declared stay
// in Redis and in the snapshot, unreachable over the API until it is declared again.
func (s *Store) SetSpecs(specs []Spec) {
	set := &specSet{byName: map[string]Spec{}}
	for _, sp := range specs {
		if sp.Validate() == nil {
			set.byName[sp.Name] = sp
		}
	}
	for _, name := range slices.Sorted(maps.Keys(set.byName)) {
		set.sorted = append(set.sorted, set.byName[name])
	}
	set.names = "none"
	if len(set.sorted) > 0 {
		set.names = strings.Join(slices.Sorted(maps.Keys(set.byName)), ", ")
	}
	s.swapMu.Lock()
	defer s.swapMu.Unlock()
	s.specs.Store(set)
	old := s.snap.Load()
	s.snap.Store(old.with(set, nil, nil, old.epoch, old.versions))
}

// Specs returns the declared lists, sorted by name.
func (s *Store) Specs() []Spec { return slices.Clone(s.specs.Load().sorted) }

// spec returns the declared list called name, or ErrUnknownList naming the declared ones.
func (s *Store) spec(name string) (Spec, error) {
	set := s.specs.Load()
	sp, ok := set.byName[name]
	if !ok {
		return Spec{}, fmt.Errorf("%w %s: the declared lists are %s", ErrUnknownList, clip(name), set.names)
	}
	return sp, nil
}

// target checks the list and normalises the value by its kind.
func (s *Store) target(list, value string) (string, error) {
	sp, err := s.spec(list)
	if err != nil {
		return "", err
	}
	return Normalize(sp.Kind, value)
}

// putScript adds an item unless the list has it. KEYS: items, index, versions, audit. ARGV:
// name, value, item JSON, by, note, at, a new epoch, the audit cap. Returns {1, item} when it
// added it, {0, the stored item} when the list had it.
const putScript = `
local cur = redis.call('HGET', KEYS[1], ARGV[2])
if cur then
  return {0, cur}
end
redis.call('HSET', KEYS[1], ARGV[2], ARGV[3])
redis.call('ZADD', KEYS[2], 0, ARGV[2])
redis.call('HSETNX', KEYS[3], '` + epochName + `', ARGV[7])
redis.call('HINCRBY', KEYS[3], ARGV[1], 1)
redis.call('XADD', KEYS[4], 'MAXLEN', '~', ARGV[8], '*', 'op', 'add', 'value', ARGV[2], 'by', ARGV[4], 'note', ARGV[5], 'at', ARGV[6])
return {1, ARGV[3]}
`

// deleteScript removes an item. KEYS: items, index, versions, audit. ARGV: name, value, by, at,
// a new epoch, the audit cap. Returns the item removed (JSON), or false if the list did not
// have it.
const deleteScript = `
local cur = redis.call('HGET', KEYS[1], ARGV[2])
if not cur then
  return false
end
redis.call('HDEL', KEYS[1], ARGV[2])
redis.call('ZREM', KEYS[2], ARGV[2])
redis.call('HSETNX', KEYS[3], '` + epochName + `', ARGV[5])
redis.call('HINCRBY', KEYS[3], ARGV[1], 1)
redis.call('XADD', KEYS[4], 'MAXLEN', '~', ARGV[6], '*', 'op', 'remove', 'value', ARGV[2], 'by', ARGV[3], 'note', '', 'at', ARGV[4])
return cur
`

// pageScript reads a page of items in one round trip. KEYS: index, items. ARGV: the lower bound
// (ZRANGEBYLEX form), how many. Returns value, item JSON, value, item JSON, ...
const pageScript = `
local vals = redis.call('ZRANGEBYLEX', KEYS[1], ARGV[1], '+', 'LIMIT', 0, tonumber(ARGV[2]))
if #vals == 0 then
  return {}
end
local items = redis.call('HMGET', KEYS[2], unpack(vals))
local out = {}
for i = 1, #vals do
  out[2 * i - 1] = vals[i]
  out[2 * i] = items[i] or ''
end
return out
`

func newEpoch() string {
	var b [8]byte
	rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// Put adds value to list, normalised by the list's kind, as by with note. It is idempotent: a
// value the list has is returned as stored, with created false, and changes nothing (no new
// version, no audit entry), whatever the note. A note over MaxNoteLen characters, not valid
// UTF-8 or holding a card number (as payment.RedactPANs finds one) is refused with
// ErrInvalidNote, and never quoted.
func (s *Store) Put(ctx context.Context, list, value, by, note string) (Item, bool, error) {
	v, err := s.target(list, value)
	if err != nil {
		return Item{}, false, err
	}
	if err := checkNote(note); err != nil {
		return Item{}, false, err
	}
	at := s.now().UTC()
	b, err := json.Marshal(meta{AddedBy: by, AddedAt: at, Note: note})
	if err != nil {
		return Item{}, false, fmt.Errorf("put %s in list %s: %w", v, list, err)
	}
	res, err := s.put.Run(ctx, s.rdb, []string{s.key("i", list), s.key("x", list), s.key("v"), s.key("a", list)},
		list, v, string(b), by, note, at.Format(time.RFC3339Nano), newEpoch(), auditCap).Slice()
	if err != nil {
		return Item{}, false, fmt.Errorf("put %s in list %s: %w", v, list, err)
	}
	created, _ := res[0].(int64)
	stored, _ := res[1].(string)
	item, err := parseItem(list, v, stored)
	return item, created == 1, err
}

// Delete removes value, normalised by the list's kind, from list and returns the item removed,
// its value as the list held it; ErrNotFound if the list does not have it.
func (s *Store) Delete(ctx context.Context, list, value, by string) (Item, error) {
	v, err := s.target(list, value)
	if err != nil {
		return Item{}, err
	}
	stored, err := s.del.Run(ctx, s.rdb, []string{s.key("i", list), s.key("x", list), s.key("v"), s.key("a", list)},
		list, v, by, s.now().UTC().Format(time.RFC3339Nano), newEpoch(), auditCap).Text()
	switch {
	case errors.Is(err, redis.Nil):
		return Item{}, fmt.Errorf("%w: list %s has no %s", ErrNotFound, list, strconv.Quote(v))
	case err != nil:
		return Item{}, fmt.Errorf("delete %s from list %s: %w", v, list, err)
	}
	return parseItem(list, v, stored)
}

// Get returns one item; ErrNotFound if the list does not have it.
func (s *Store) Get(ctx context.Context, list, value string) (Item, error) {
	v, err := s.target(list, value)
	if err != nil {
		return Item{}, err
	}
	stored, err := s.rdb.HGet(ctx, s.key("i", list), v).Result()
	switch {
	case errors.Is(err, redis.Nil):
		return Item{}, fmt.Errorf("%w: list %s has no %s", ErrNotFound, list, strconv.Quote(v))
	case err != nil:
		return Item{}, fmt.Errorf("get %s of list %s: %w", v, list, err)
	}
	return parseItem(list, v, stored)
}

// checkNote refuses a note that is too long, not UTF-8 or holds a card number, without quoting it.
func checkNote(note string) error {
	switch {
	case !utf8.ValidString(note):
		return fmt.Errorf("%w: the note is not valid UTF-8", ErrInvalidNote)
	case utf8.RuneCountInString(note) > MaxNoteLen:
		return fmt.Errorf("%w: a note is at most %d characters", ErrInvalidNote, MaxNoteLen)
	}
	if _, found := payment.RedactPANs([]byte(note)); found {
		return fmt.Errorf("%w: the note holds what looks like a card number; lists never store one", ErrInvalidNote)
	}
	return nil
}

func parseItem(list, value, stored string) (Item, error) {
	var m meta
	if err := json.Unmarshal([]byte(stored), &m); err != nil {
		return Item{}, fmt.Errorf("list %s: stored item %s: %w", list, strconv.Quote(value), err)
	}
	return Item{List: list, Value: value, AddedBy: m.AddedBy, AddedAt: m.AddedAt, Note: m.Note}, nil
}

// Counts returns how many items each declared list has, in one round trip.
func (s *Store) Counts(ctx context.Context) (map[string]int, error) {
	specs := s.specs.Load().sorted
	pipe := s.rdb.Pipeline()
	cmds := make([]*redis.IntCmd, len(specs))
	for i, sp := range specs {
		cmds[i] = pipe.HLen(ctx, s.key("i", sp.Name))
	}
	if len(specs) > 0 {
		if _, err := pipe.Exec(ctx); err != nil {
			return nil, fmt.Errorf("count the lists' items: %w", err)
		}
	}
	out := make(map[string]int, len(specs))
	for i, sp := range specs {
		out[sp.Name] = int(cmds[i].Val())
	}
	return out, nil
}

// Items returns a page of up to limit (1 to MaxPage) items of list, sorted by value (bytewise),
// and the cursor of the next page, "" on the last. A page goes on strictly after its cursor, so
// items added or removed meanwhile neither repeat nor push others off a page.
func (s *Store) Items(ctx context.Context, list, cursor string, limit int) ([]Item, string, error) {
	if _, err := s.spec(list); err != nil {
		return nil, "", err
	}
	if limit < 1 || limit > MaxPage {
		return nil, "", fmt.Errorf("%w: limit must be from 1 to %d, got %d", ErrInvalidArgument, MaxPage, limit)
	}
	from := "-"
	if cursor != "" {
		last, err := base64.RawURLEncoding.DecodeString(cursor)
		if err != nil || len(last) == 0 {
			return nil, "", fmt.Errorf("%w: the cursor is not one a page returned", ErrInvalidArgument)
		}
		from = "(" + string(last)
	}
	res, err := s.page.Run(ctx, s.rdb, []string{s.key("x", list), s.key("i", list)}, from, limit+1).StringSlice()
	if err != nil {
		return nil, "", fmt.Errorf("list the items of %s: %w", list, err)
	}
	items := make([]Item, 0, len(res)/2)
	for i := 0; i+1 < len(res) && len(items) < limit; i += 2 {
		it, err := parseItem(list, res[i], res[i+1])
		if err != nil {
			return nil, "", err
		}
		items = append(items, it)
	}
	next := ""
	if len(res)/2 > limit {
		next = base64.RawURLEncoding.EncodeToString([]byte(items[len(items)-1].Value))
	}
	return items, next, nil
}

// Changes returns the last limit (1 to MaxPage) changes of list, newest first.
func (s *Store) Changes(ctx context.Context, list string, limit int) ([]Change, error) {
	if _, err := s.spec(list); err != nil {
		return nil, err
	}
	if limit < 1 || limit > MaxPage {
		return nil, fmt.Errorf("%w: limit must be from 1 to %d, got %d", ErrInvalidArgument, MaxPage, limit)
	}
	msgs, err := s.rdb.XRevRangeN(ctx, s.key("a", list), "+", "-", int64(limit)).Result()
	if err != nil {
		return nil, fmt.Errorf("read the changes of list %s: %w", list, err)
	}
	out := make([]Change, 0, len(msgs))
	for _, m := range msgs {
		str := func(k string) string { v, _ := m.Values[k].(string); return v }
		at, _ := time.Parse(time.RFC3339Nano, str("at"))
		out = append(out, Change{List: list, Value: str("value"), Op: str("op"), By: str("by"), Note: str("note"), At: at})
	}
	return out, nil
}

// Losses reports how many times Refresh found that Redis had lost the lists' data.
func (s *Store) Losses() int64 { return s.losses.Load() }

// Snapshot returns the lists as last read; never nil (empty before the first Refresh).
func (s *Store) Snapshot() *Snapshot { return s.snap.Load() }

// Refreshed returns when a Refresh (or a refresh of Run) last succeeded, by the store's clock:
// the snapshot is what Redis held then. It is the zero time until the first success, while the
// snapshot is empty only because the lists were never read.
func (s *Store) Refreshed() time.Time {
	if t := s.refreshed.Load(); t != nil {
		return *t
	}
	return time.Time{}
}

// Refresh reads every list's version in one round trip and, if any changed, the items of the
// changed lists with their versions in one more (MULTI/EXEC, so items and versions agree), then
// swaps in a new snapshot that shares the unchanged lists with the old one. It reports whether
// it swapped one in. Every list in Redis is read, declared or not, so that a list declared again
// by a reload of the rules is there at once.
func (s *Store) Refresh(ctx context.Context) (bool, error) {
	changed, _, err := s.refresh(ctx)
	return changed, err
}

// loss describes what a loss of Redis's data took from the snapshot.
type loss struct {
	lists, items int
}

func (s *Store) refresh(ctx context.Context) (bool, *loss, error) {
	s.refreshMu.Lock()
	defer s.refreshMu.Unlock()
	all, err := s.rdb.HGetAll(ctx, s.key("v")).Result()
	if err != nil {
		return false, nil, fmt.Errorf("read the lists' versions: %w", err)
	}
	epoch := all[epochName]
	delete(all, epochName)
	versions := make(map[string]int64, len(all))
	for name, v := range all {
		versions[name], _ = strconv.ParseInt(v, 10, 64)
	}
	var lost *loss
	if s.known.epoch != "" && epoch != s.known.epoch {
		// The versions hash is gone, or another one was begun since: everything read before is
		// gone from Redis.
		old := s.snap.Load()
		lost = &loss{lists: len(old.lists)}
		for _, set := range old.lists {
			lost.items += len(set.values)
		}
		s.losses.Add(1)
		// Serve what Redis holds now at once, and count this loss once even if the reads below
		// fail.
		s.swapMu.Lock()
		s.snap.Store((&Snapshot{}).with(s.specs.Load(), nil, nil, "", nil))
		s.swapMu.Unlock()
		s.known.epoch, s.known.versions = epoch, nil
	}
	var stale []string // lists to read in full
	for name, v := range versions {
		if s.known.versions[name] != v {
			stale = append(stale, name)
		}
	}
	var gone []string // lists the snapshot has and Redis no longer does (after a loss)
	for name := range s.known.versions {
		if _, ok := versions[name]; !ok {
			gone = append(gone, name)
		}
	}
	if lost == nil && len(stale) == 0 && len(gone) == 0 && epoch == s.known.epoch {
		s.markRefreshed()
		return false, nil, nil
	}
	read := map[string]*set{}
	if len(stale) > 0 {
		slices.Sort(stale)
		var vcmd *redis.SliceCmd
		keys := make([]*redis.StringSliceCmd, len(stale))
		_, err := s.rdb.TxPipelined(ctx, func(p redis.Pipeliner) error {
			vcmd = p.HMGet(ctx, s.key("v"), stale...)
			for i, name := range stale {
				keys[i] = p.HKeys(ctx, s.key("i", name))
			}
			return nil
		})
		if err != nil {
			return false, lost, fmt.Errorf("read %d changed lists: %w", len(stale), err)
		}
		for i, name := range stale {
			str, _ := vcmd.Val()[i].(string)
			v, _ := strconv.ParseInt(str, 10, 64)
			values := make(map[string]struct{}, len(keys[i].Val()))
			for _, k := range keys[i].Val() {
				values[k] = struct{}{}
			}
			read[name] = &set{values: values, version: v}
			versions[name] = v // as read with the items: perhaps newer than the first read
		}
		s.reads.Add(int64(len(stale)))
	}
	s.swapMu.Lock()
	defer s.swapMu.Unlock()
	s.snap.Store(s.snap.Load().with(s.specs.Load(), read, gone, epoch, versions))
	s.known.epoch, s.known.versions = epoch, versions
	s.markRefreshed()
	return true, lost, nil
}

// markRefreshed records a successful refresh, now.
func (s *Store) markRefreshed() {
	t := s.now()
	s.refreshed.Store(&t)
}

// Run refreshes the snapshot at once and then every interval until ctx is done, then returns
// nil. Redis errors never end it: the first failure of an outage is logged at WARN, and the
// recovery at INFO with how many refreshes failed; a loss of Redis's data is logged at ERROR.
// Each refresh may take up to the interval (at least a second).
func (s *Store) Run(ctx context.Context, interval time.Duration, log *slog.Logger) error {
	t := time.NewTicker(interval)
	defer t.Stop()
	var failures int
	var since time.Time
	for {
		rctx, cancel := context.WithTimeout(ctx, max(interval, time.Second))
		_, lost, err := s.refresh(rctx)
		cancel()
		if lost != nil {
			log.Error("redis lost the lists' data: every list is empty until analysts put its items back",
				"lists", lost.lists, "items", lost.items, "losses", s.Losses())
		}
		switch {
		case ctx.Err() != nil:
			return nil
		case err != nil:
			if failures == 0 {
				since = s.now()
				log.Warn("lists not refreshed; rules test the lists last read", "err", err)
			}
			failures++
		case failures > 0:
			log.Info("lists refreshed again", "failed_refreshes", failures, "after", s.now().Sub(since).String())
			failures = 0
		}
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}

// Snapshot is the lists as one Refresh read them. It is immutable: safe for concurrent use.
type Snapshot struct {
	lists    map[string]*set   // by name
	kinds    map[string]string // of the declared lists, by name
	epoch    string
	versions map[string]int64
	version  string
}

// set is one list's values; never changed once in a snapshot.
type set struct {
	values  map[string]struct{}
	version int64
}

// with returns a snapshot like s with the lists of read replaced, those of gone left out, and
// the kinds of specs.
func (s *Snapshot) with(specs *specSet, read map[string]*set, gone []string, epoch string, versions map[string]int64) *Snapshot {
	n := &Snapshot{lists: maps.Clone(s.lists), kinds: map[string]string{}, epoch: epoch, versions: versions}
	if n.lists == nil {
		n.lists = map[string]*set{}
	}
	maps.Copy(n.lists, read)
	for _, name := range gone {
		delete(n.lists, name)
	}
	for name, sp := range specs.byName {
		n.kinds[name] = sp.Kind
	}
	if len(versions) > 0 {
		h := sha256.New()
		fmt.Fprintf(h, "%s", epoch)
		for _, name := range slices.Sorted(maps.Keys(versions)) {
			fmt.Fprintf(h, ";%s=%d", name, versions[name])
		}
		n.version = "lists-" + hex.EncodeToString(h.Sum(nil)[:6])
	}
	return n
}

// Contains reports whether list has value, compared as given (payments' fields are normalised
// as lists' values are: a country in upper case), except that a value of an IP list is compared
// as the address it is ("::ffff:192.0.2.1" finds "192.0.2.1"). A list that is not there has
// nothing.
func (s *Snapshot) Contains(list, value string) bool {
	l := s.lists[list]
	if l == nil {
		return false
	}
	if _, ok := l.values[value]; ok {
		return true
	}
	if s.kinds[list] != KindIP {
		return false
	}
	k, ok := ipKey(value)
	if !ok || k == value {
		return false
	}
	_, ok = l.values[k]
	return ok
}

// Len returns how many values list has.
func (s *Snapshot) Len(list string) int {
	if l := s.lists[list]; l != nil {
		return len(l.values)
	}
	return 0
}

// Version names the lists' contents: a short hash of every list's name and version, so that a
// decision can name the lists it saw; "" while no list was ever changed.
func (s *Snapshot) Version() string { return s.version }
