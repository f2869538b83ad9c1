package window

// cardLua is what the scripts that read or write a card's history share. A card's history is kept
// in its bucket's hash as a head, the field named by the card's tag, and, once it has more than a
// chunk of entries, in sealed chunks of chunkEntries entries, oldest first, in a list of its own,
// <bucket key>:<tag, hex> (the bucket's hash tag: the same slot), each the newest event time of
// its entries (4 bytes) and its entries. The head is a header and the open entries, the ones not
// sealed yet:
//
//	0..2    generation: random, set whenever the head is rebuilt (a chunk sealed or dropped, a
//	        history begun again), so that a process's copy from before never matches it
//	2..4    the number of sealed chunks
//	4..8    event time of the entry appended last (Unix seconds), for the sweep
//	8..12   the newest event time of the oldest sealed chunk (0 without one)
//	12..    the open entries, 24 bytes each
//
// The head is rewritten with every payment, and a string costs a script about a microsecond a
// kilobyte, so it is kept short: the chunks are small, and apart from the bucket, which stays
// small too. Sealing a chunk pushes it and writes the head; dropping the oldest pops it and reads
// the next one's time.
//
// A history shorter than a chunk has no header: its head is its entries alone. A head with a
// header is never a multiple of 24 bytes long; one without always is, and is read as a head with
// every entry open (as are the histories written before the chunks).
const cardLua = `
local function u16(s, i)
  local a, b = string.byte(s, i, i + 1)
  return a * 256 + b
end
local function u32(s, i)
  local a, b, c, d = string.byte(s, i, i + 3)
  return ((a * 256 + b) * 256 + c) * 256 + d
end
local function p16(n)
  return string.char(math.floor(n / 256) % 256, n % 256)
end
local function p32(n)
  return string.char(math.floor(n / 16777216) % 256, math.floor(n / 65536) % 256, math.floor(n / 256) % 256, n % 256)
end

-- parse splits a head into generation (nil for a history without a header), the number of sealed
-- chunks, the last event time and the open entries.
local function parse(head)
  if #head % 24 == 0 then
    local last = 0
    if #head > 0 then last = u32(head, #head - 23) end
    return nil, 0, last, head
  end
  return string.sub(head, 1, 2), u16(head, 3), u32(head, 5), string.sub(head, 13)
end

-- chunks is the key of a card's list of sealed chunks.
local function chunks(key, field)
  return key .. ':' .. string.format('%02x%02x%02x%02x%02x%02x', string.byte(field, 1, 6))
end

-- sealed returns a card's sealed chunks' entries, concatenated.
local function sealed(key, field)
  local out = {}
  for i, v in ipairs(redis.call('LRANGE', chunks(key, field), 0, -1)) do
    out[i] = string.sub(v, 5)
  end
  return table.concat(out)
end

-- history returns a card's whole history.
local function history(key, field)
  local head = redis.call('HGET', key, field)
  if not head then
    return ''
  end
  local _, ns, _, open = parse(head)
  if ns == 0 then
    return open
  end
  return sealed(key, field) .. open
end

-- drop deletes a card: its head and its sealed chunks.
local function drop(key, field, head)
  redis.call('HDEL', key, field)
  if #head % 24 ~= 0 then
    redis.call('DEL', chunks(key, field))
  end
end
`

// observeScript counts payments in their cards' histories: for each card it either appends the
// payments the caller found new in its cached copy of the history, when the head is as the caller
// last saw it, or, when it is not (no copy, or another process wrote since), looks every payment
// up in the whole history, appends the new ones and returns the whole history. For each new
// payment with a merchant it pushes an item for the merchant's day onto the pending list, which
// foldScript adds to the merchants' counts later.
//
//	KEYS[1..C] the cards' buckets, KEYS[C+1] the pending list
//	ARGV[1] cutoff: entries with an older event time (Unix seconds) are past keeping
//	ARGV[2] sweep cutoff: a sweep drops the cards whose last entry is older than this (an entry
//	    that came earlier can be newer by at most two windows and the lateness, so this is the
//	    cutoff less those)
//	ARGV[3] countable: entries from this event time on may still be redelivered and must be kept
//	ARGV[4] the most entries a history keeps; past it the oldest chunks go, except countable ones
//	ARGV[5] the most entries a history keeps, countable ones too
//	ARGV[6] TTL of a card bucket, ms: set when a card joins it, or it is swept
//	ARGV[7] number of cards C
//	ARGV[8] entries in a sealed chunk
//	then for each card: its field (6 bytes), a generation (2 bytes) should its history begin now,
//	    "1" to sweep its bucket first or "0", its number of payments n (2 bytes), the length its
//	    head had when the caller last saw it (4 bytes), and the head's header then (none
//	    if the caller has no copy), in one argument; then for each payment its entry and its item: "-" to look it up only, else "+" (the caller found it new) or "="
//	    (the caller found it counted), followed by the merchant's item (<day, 4 bytes big-endian>
//	    <the merchant's tag>), if it has one
//
//	then, on a single Redis only: the TTL of a merchant's keys (ms), the number of merchant
//	    snapshots M, the label delay in days, and for each snapshot its merchant's key, fraud key
//	    and day (Unix days) (on a Redis Cluster snapshotScript takes them, in the keys' slot)
//
// For each card it returns "F" when the head was as the caller saw it and only grew (its header
// changed in its last time alone), "R" when it was and was rebuilt (a chunk sealed or dropped),
// "S" when it was not; after "R" and "S" the number of open entries (2 bytes) and the header as
// written, and after "S" the whole history as it was before the call, in which the caller finds
// the same payments new as the script did. A history shorter than a chunk is kept without a
// header, as a plain string of entries ("H" and the history as it was before).
//
// What a card costs here does not grow with its history: the head holds at most a chunk of
// entries, and only a card that the caller has no current copy of is read whole. Write commands
// are what a script spends most on (about 2 µs each here), so there is one per card with new
// payments (and one per chunk sealed or dropped) and one per call for the merchants' pending
// list. After the cards it returns the M snapshots (see snapshotScript).
const observeScript = cardLua + snapshotLua + `
local cutoff, sweepCutoff, countable = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local cap, hardCap, ttl = tonumber(ARGV[4]), tonumber(ARGV[5]), ARGV[6]
local ncards, K = tonumber(ARGV[7]), tonumber(ARGV[8])
local cb = K * 24

-- rebuild appends entries to a card's open ones, seals each chunk that fills, drops the oldest
-- sealed chunks past keeping (all past the cutoff; past the cap, none that can be redelivered;
-- past the hard cap, any) or, with none, the oldest open entries past keeping, and writes the
-- head. Returns the header and the number of open entries.
local function rebuild(key, field, head, new, newGen)
  local _, ns, last, open = parse(head)
  -- A new generation with every rebuild: a copy taken before it never matches the head again,
  -- even when the head comes back to the same length and times.
  local gen = newGen
  local firstMax, list = 0, chunks(key, field)
  if ns > 0 then
    firstMax = u32(head, 9)
  end
  if #new > 0 then
    open = open .. table.concat(new)
    last = u32(new[#new], 1)
  end
  if #open >= cb then
    while #open >= cb do
      local chunk = string.sub(open, 1, cb)
      local m = 0
      for o = 1, cb, 24 do
        m = math.max(m, u32(chunk, o))
      end
      ns = redis.call('RPUSH', list, p32(m) .. chunk)
      if ns == 1 then
        firstMax = m
      end
      open = string.sub(open, cb + 1)
    end
    redis.call('PEXPIRE', list, ttl)
  end
  local live = ns * K + #open / 24
  while ns > 0 and (firstMax < cutoff or (live - K >= cap and firstMax < countable) or live - K >= hardCap) do
    redis.call('LPOP', list)
    ns, live, firstMax = ns - 1, live - K, 0
    if ns > 0 then
      local oldest = redis.call('LINDEX', list, 0)
      if oldest then firstMax = u32(oldest, 1) else ns = 0 end -- the list expired: all past keeping
    end
  end
  if ns == 0 then
    local from = 1
    while from <= #open and u32(open, from) < cutoff do
      from = from + 24
    end
    open = string.sub(open, from)
  end
  local header = gen .. p16(ns) .. p32(last) .. p32(firstMax)
  redis.call('HSET', key, field, header .. open)
  return header, #open / 24
end

-- simple reports whether appending new to a head seals no chunk and drops nothing: then the head
-- only grows, and its header changes in its last time alone.
local function simple(head, new)
  if head == '' or #head % 24 == 0 then
    return false
  end
  local ns = u16(head, 3)
  local open = #head - 12 + 24 * #new
  if open >= cb then
    return false
  end
  if ns > 0 then
    local m, live = u32(head, 9), ns * K + open / 24
    return not (m < cutoff or (live - K >= cap and m < countable) or live - K >= hardCap)
  end
  if #head > 12 then
    return u32(head, 13) >= cutoff
  end
  return #new == 0 or u32(new[1], 1) >= cutoff
end

local a = 9
local out, items = {}, {}
for c = 1, ncards do
  local key, card = KEYS[c], ARGV[a]
  local field, newGen, sweep, n = string.sub(card, 1, 6), string.sub(card, 7, 8), string.byte(card, 9), u16(card, 10)
  local expectedLen = u32(card, 12)
  a = a + 1
  local expire = false
  if sweep == 49 then -- '1'
    local all = redis.call('HGETALL', key)
    for i = 1, #all, 2 do
      local f, v = all[i], all[i + 1]
      if f ~= field then
        local last = 0
        if #v % 24 ~= 0 then
          last = u32(v, 5)
        elseif #v > 0 then
          last = u32(v, #v - 23)
        end
        if last < sweepCutoff then drop(key, f, v) end
      end
    end
    expire = true
  end
  local head = redis.call('HGET', key, field)
  local new = {}
  if #card > 15 and head and #head == expectedLen and string.sub(head, 1, 12) == string.sub(card, 16) then
    -- As the caller last saw it: append what it found new.
    for _ = 1, n do
      local entry, item = ARGV[a], ARGV[a + 1]
      a = a + 2
      if string.byte(item, 1) == 43 then -- '+'
        new[#new + 1] = entry
        if #item > 1 then items[#items + 1] = string.sub(item, 2) end
      end
    end
    if simple(head, new) then
      if #new > 0 then
        redis.call('HSET', key, field, string.sub(head, 1, 4) .. string.sub(new[#new], 1, 4) .. string.sub(head, 9) .. table.concat(new))
      end
      out[c] = 'F'
    else
      local header, nopen = rebuild(key, field, head, new, newGen)
      out[c] = 'R' .. p16(nopen) .. header
    end
  else
    -- Not as the caller saw it: look every payment up in the whole history, and return the
    -- history as it was before (the caller finds the same payments new).
    local hist = ''
    if head and #head % 24 == 0 then
      hist = head
    elseif head then
      hist = sealed(key, field) .. string.sub(head, 13)
    else
      head, expire = '', true
    end
    local seen = {}
    for _ = 1, n do
      local entry, item = ARGV[a], ARGV[a + 1]
      a = a + 2
      if item ~= '-' then
        local pid = string.sub(entry, 9, 14)
        local found, from = seen[pid], 1
        while not found do
          local p = string.find(hist, pid, from, true)
          if not p then break end
          found = (p - 9) % 24 == 0
          from = p + 1
        end
        if not found then
          seen[pid] = true
          new[#new + 1] = entry
          if #item > 1 then items[#items + 1] = string.sub(item, 2) end
        end
      end
    end
    if #head % 24 == 0 and #hist + 24 * #new < cb then
      -- A short history stays a plain string of entries, without a header or chunks; its oldest
      -- past keeping go one by one.
      if #new > 0 then
        local all = hist .. table.concat(new)
        local from = 1
        while from <= #all and u32(all, from) < cutoff do
          from = from + 24
        end
        redis.call('HSET', key, field, string.sub(all, from))
      end
      out[c] = 'H' .. hist
    elseif simple(head, new) then
      if #new > 0 then
        head = string.sub(head, 1, 4) .. string.sub(new[#new], 1, 4) .. string.sub(head, 9) .. table.concat(new)
        redis.call('HSET', key, field, head)
      end
      out[c] = 'S' .. p16((#head - 12) / 24) .. string.sub(head, 1, 12) .. hist
    else
      local header, nopen = rebuild(key, field, head, new, newGen)
      out[c] = 'S' .. p16(nopen) .. header .. hist
    end
  end
  if expire then
    redis.call('PEXPIRE', key, ttl) -- a bucket that a card joined, or swept (none if it is empty)
  end
end
if #items > 0 and redis.call('RPUSH', KEYS[ncards + 1], unpack(items)) == #items then
  redis.call('PEXPIRE', KEYS[ncards + 1], ttl) -- a new list
end
-- A single Redis: the merchant snapshots the cards' payments need (ARGV names their keys).
if ARGV[a] then
  local mttl, nsnaps, delay = ARGV[a], tonumber(ARGV[a + 1]), tonumber(ARGV[a + 2])
  a = a + 3
  for s = 1, nsnaps do
    out[ncards + s] = snapshot(ARGV[a], ARGV[a + 1], tonumber(ARGV[a + 2]), delay, mttl)
    a = a + 3
  end
end
return out
`

// snapshotLua takes a merchant's snapshot: see snapshotScript.
const snapshotLua = `
local function snapshot(key, fraudKey, d, delay, ttl)
  local field = 'r' .. d
  local snap = redis.call('HGET', key, field)
  if snap then
    return snap
  end
  local keep = delay + 30
  local days = {}
  for b = 1, keep do
    days[b] = d - b
  end
  local counts = redis.call('HMGET', key, unpack(days))
  local n, f = {}, {}
  for b = 1, keep do
    n[b], f[b] = tonumber(counts[b]) or 0, 0
  end
  for _, lf in ipairs(redis.call('HKEYS', fraudKey)) do
    local b = d - (tonumber(string.match(lf, '^%d+')) or d)
    if b >= 1 and b <= keep then
      f[b] = f[b] + 1
    end
  end
  -- sums over the days b = from .. to before d
  local function sum(t, from, to)
    local x = 0
    for b = from, to do x = x + t[b] end
    return x
  end
  snap = table.concat({sum(n, 1, 1), sum(n, 1, 7), sum(n, 1, 30), sum(f, 1, 30),
    sum(n, delay + 1, delay + 1), sum(f, delay + 1, delay + 1),
    sum(n, delay + 1, delay + 7), sum(f, delay + 1, delay + 7),
    sum(n, delay + 1, delay + 30), sum(f, delay + 1, delay + 30)}, ',')
  redis.call('HSET', key, field, snap)
  redis.call('PEXPIRE', key, ttl)
  return snap
end
`

// snapshotScript returns a merchant's counts of the days before a day (KEYS[1] its day counts,
// KEYS[2] its fraud labels; ARGV[1] the TTL of its keys, ms, ARGV[2] the label delay in days D,
// ARGV[3] the day, in Unix days): "<1d>,<7d>,<30d>,<fraud 30d>,<1d>,<fraud 1d>,<7d>,<fraud 7d>,
// <30d>,<fraud 30d>", the first four of the days just before, the other six of the days before the
// D days before (whose labels are all in), kept in the merchant's hash as the field r<day>. The
// first call for a merchant's day takes the snapshot from the day counts folded by then and the
// fraud labels recorded by then; every later call gets the same one, so that a payment decided
// again gets the merchant counts it got the first time. A read, and two writes once a day.
const snapshotScript = snapshotLua + `
return snapshot(KEYS[1], KEYS[2], tonumber(ARGV[3]), tonumber(ARGV[2]), ARGV[1])
`

// historyScript returns a card's whole history (KEYS[1], field ARGV[1]).
const historyScript = cardLua + `
return (history(KEYS[1], ARGV[1]))
`

// merchantLua adds n payments to a merchant's count of day d (its hash key: a field a day, the day
// number in decimal, beside the snapshots r<day> that snapshotScript takes). A merchant's first
// count of a day sets the key's TTL, ttl ms, and, once the key holds a week more than its keep
// days, drops its days and snapshots more than keep before it.
const merchantLua = `
local function add(key, d, n, ttl, keep)
  if redis.call('HINCRBY', key, d, n) == n then
    -- A merchant's first count of a day: its TTL, and a sweep of its old days once they are a
    -- week's worth (two fields a day: its count and its snapshot), rather than every day.
    if redis.call('HLEN', key) > 2 * (keep + 8) then
      for _, f in ipairs(redis.call('HKEYS', key)) do
        -- a day's count (<day>) or snapshot (r<day>, or s<day> from before the delayed counts)
        if (tonumber(f) or tonumber(string.sub(f, 2)) or d) < d - keep then
          redis.call('HDEL', key, f)
        end
      end
    end
    redis.call('PEXPIRE', key, ttl)
  end
end
`

// foldScript takes up to ARGV[2] items from the pending list KEYS[1] and adds them to their
// merchants' day counts. An item is <day, 4 bytes big-endian><merchant tag>; the merchant's key is
// the hash ARGV[1]:m:{<tag>}; ARGV[3] is its TTL (ms) and ARGV[4] the days it keeps. Returns the
// number of items taken. (It names keys that KEYS does not list, as only a single Redis allows; a
// Redis Cluster folds with takeScript, applyScript and doneScript.)
const foldScript = merchantLua + `
local function u32(s, i)
  local a, b, c, d = string.byte(s, i, i + 3)
  return ((a * 256 + b) * 256 + c) * 256 + d
end

local items = redis.call('LPOP', KEYS[1], ARGV[2])
if not items then
  return 0
end
local counts = {}
for _, item in ipairs(items) do
  counts[item] = (counts[item] or 0) + 1
end
for item, n in pairs(counts) do
  add(ARGV[1] .. ':m:{' .. string.sub(item, 5) .. '}', u32(item, 1), n, ARGV[3], tonumber(ARGV[4]))
end
return #items
`

// On a Redis Cluster a shard's pending items are folded in three steps, since a script reaches the
// keys of one slot only, and each step may be repeated, by any instance, without counting an item
// twice:
//
// takeScript returns the shard's fold in progress, KEYS[2] (its number, then its items), or, if
// there is none, moves up to ARGV[1] items from the pending list KEYS[1] into a new one numbered
// from the counter KEYS[3] (TTL ARGV[2] ms). Empty: nothing to fold.
const takeScript = `
local cur = redis.call('LRANGE', KEYS[2], 0, -1)
if #cur > 0 then
  return cur
end
local items = redis.call('LPOP', KEYS[1], ARGV[1])
if not items then
  return {}
end
if redis.call('EXISTS', KEYS[3]) == 0 then
  -- A counter begun again (expired, lost) starts from the time in microseconds, past every number
  -- it gave before, so that no merchant takes a new fold for one it has added.
  local t = redis.call('TIME')
  redis.call('SET', KEYS[3], t[1] .. string.format('%06d', tonumber(t[2])))
end
local n = redis.call('INCR', KEYS[3])
redis.call('PEXPIRE', KEYS[3], ARGV[2])
redis.call('RPUSH', KEYS[2], n, unpack(items))
return redis.call('LRANGE', KEYS[2], 0, -1)
`

// applyScript adds one merchant's items of a shard's fold (KEYS[1] its day counts, KEYS[2] the
// number of the last fold of each shard added to it; ARGV: the shard, the fold's number, the TTL
// of the merchant's keys (ms), the days they keep, then pairs of day and count), unless that fold
// was added already. Returns 1 if it added them.
const applyScript = merchantLua + `
local n = tonumber(ARGV[2])
if n <= (tonumber(redis.call('HGET', KEYS[2], ARGV[1])) or 0) then
  return 0
end
redis.call('HSET', KEYS[2], ARGV[1], n)
redis.call('PEXPIRE', KEYS[2], ARGV[3])
for i = 5, #ARGV, 2 do
  add(KEYS[1], tonumber(ARGV[i]), tonumber(ARGV[i + 1]), ARGV[3], tonumber(ARGV[4]))
end
return 1
`

// doneScript ends a shard's fold (KEYS[1]) once every merchant has its items, if it is still the
// fold numbered ARGV[1].
const doneScript = `
if redis.call('LINDEX', KEYS[1], 0) == ARGV[1] then
  redis.call('DEL', KEYS[1])
end
return 0
`

// labelScript records an analyst's verdict on a payment for its merchant (the caller found the
// payment's entry in its card's history): for "fraud" (ARGV[2] = '1') it sets the field
// <day>:<payment tag, hex> (ARGV[1]) of the merchant's fraud hash KEYS[1], with TTL ARGV[3] ms,
// dropping its days more than ARGV[4] before the payment's day ARGV[5]; for "legitimate" it
// deletes that field. Idempotent.
const labelScript = `
if ARGV[2] ~= '1' then
  redis.call('HDEL', KEYS[1], ARGV[1])
  return 1
end
if redis.call('HSET', KEYS[1], ARGV[1], 1) == 1 then
  local day, keep = tonumber(ARGV[5]), tonumber(ARGV[4])
  for _, f in ipairs(redis.call('HKEYS', KEYS[1])) do
    if tonumber(string.match(f, '^%d+')) < day - keep then
      redis.call('HDEL', KEYS[1], f)
    end
  end
  redis.call('PEXPIRE', KEYS[1], ARGV[3])
end
return 1
`
