package window

// observeScript looks payments up in their cards' histories and appends the new ones; for each
// new payment with a merchant it pushes an item for the merchant's day onto the pending list,
// which foldScript adds to the merchants' counts later. It returns each card's history as it
// is after the call.
//
//	KEYS[1..C] the cards' buckets, KEYS[C+1] the pending list (absent on a Redis Cluster, where
//	    no payment has a merchant item)
//	ARGV[1] cutoff: entries with an older event time (Unix seconds) are dropped from the front
//	ARGV[2] sweep cutoff: a sweep drops the cards whose last entry is older than this (an entry
//	    that came earlier can be newer by at most two windows and the lateness, so this is the
//	    cutoff less those)
//	ARGV[3] countable: entries from this event time on may still be redelivered and must be kept
//	ARGV[4] the most entries a history keeps; past it the oldest go, except countable ones
//	ARGV[5] the most entries a history keeps, countable ones too
//	ARGV[6] TTL of a card bucket, ms: set when a card joins it, or it is swept
//	ARGV[7] number of cards C
//	then for each card: its field, its number of payments n, 1 to sweep its bucket first or 0,
//	    then for each payment its entry and its merchant item: "-" to look it up only, "" to
//	    count it, else to count it and push the item
//	then, except on a Redis Cluster: the TTL of a merchant's keys (ms), the number of merchant
//	    snapshots M, the label delay in days D, and for each snapshot its merchant's key, fraud
//	    key and day (Unix days)
//
// After the histories it returns the M snapshots: a merchant's counts of the days before a day,
// "<1d>,<7d>,<30d>,<fraud 30d>,<1d>,<fraud 1d>,<7d>,<fraud 7d>,<30d>,<fraud 30d>", the first four
// of the days just before, the other six of the days before the D days before (whose labels are
// all in), kept in the merchant's hash as the field r<day>. The first call
// that asks for a merchant's day takes the snapshot from the day counts folded by then and the
// fraud labels recorded by then; every later call gets the same one, so that a payment decided
// again gets the merchant counts it got the first time.
//
// Write commands are what a script spends most on (about 2 µs each here), so there is one per
// card with new payments and one per call for the merchants' pending list; a merchant's snapshot
// is a read, and two writes once a day.
const observeScript = `
local function u32(s, i)
  local a, b, c, d = string.byte(s, i, i + 3)
  return ((a * 256 + b) * 256 + c) * 256 + d
end

local cutoff, sweepCutoff, countable = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local cap, hardCap, ttl = tonumber(ARGV[4]) * 24, tonumber(ARGV[5]) * 24, ARGV[6]
local ncards = tonumber(ARGV[7])
local a = 8
local out, items = {}, {}
for c = 1, ncards do
  local key, field, n, sweep = KEYS[c], ARGV[a], tonumber(ARGV[a + 1]), ARGV[a + 2]
  a = a + 3
  local expire = false
  if sweep == '1' then
    local all = redis.call('HGETALL', key)
    for i = 1, #all, 2 do
      local f, v = all[i], all[i + 1]
      if f ~= field and (#v < 24 or u32(v, #v - 23) < sweepCutoff) then
        redis.call('HDEL', key, f)
      end
    end
    expire = true
  end
  local history = redis.call('HGET', key, field)
  if not history then
    history, expire = '', true
  end
  local new, seen = {}, {}
  for _ = 1, n do
    local entry, item = ARGV[a], ARGV[a + 1]
    a = a + 2
    local pid = string.sub(entry, 9, 14)
    local found, from = seen[pid], 1
    while not found do
      local p = string.find(history, pid, from, true)
      if not p then break end
      found = (p - 9) % 24 == 0
      from = p + 1
    end
    if not found and item ~= '-' then
      seen[pid] = true
      new[#new + 1] = entry
      if item ~= '' then
        items[#items + 1] = item
      end
    end
  end
  if #new > 0 then
    history = history .. table.concat(new)
    -- Drop what is past keeping, then the oldest past the cap that can no longer be redelivered
    -- into a window, then past the hard cap whatever is oldest.
    local from = 1
    while from <= #history and u32(history, from) < cutoff do
      from = from + 24
    end
    while #history - from + 1 > cap and u32(history, from) < countable do
      from = from + 24
    end
    from = math.max(from, #history - hardCap + 1)
    if from > 1 then
      history = string.sub(history, from)
    end
    redis.call('HSET', key, field, history)
  end
  if expire then
    redis.call('PEXPIRE', key, ttl) -- a bucket that a card joined, or swept (none if it is empty)
  end
  out[c] = history
end
if #items > 0 and redis.call('RPUSH', KEYS[ncards + 1], unpack(items)) == #items then
  redis.call('PEXPIRE', KEYS[ncards + 1], ttl) -- a new list
end
if KEYS[ncards + 1] then
  local mttl, nsnaps, delay = ARGV[a], tonumber(ARGV[a + 1]), tonumber(ARGV[a + 2])
  local keep = delay + 30
  a = a + 3
  for s = 1, nsnaps do
    local key, fraudKey, d = ARGV[a], ARGV[a + 1], tonumber(ARGV[a + 2])
    a = a + 3
    local field = 'r' .. d
    local snap = redis.call('HGET', key, field)
    if not snap then
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
      redis.call('PEXPIRE', key, mttl)
    end
    out[ncards + s] = snap
  end
end
return out
`

// foldScript takes up to ARGV[2] items from the pending list KEYS[1] and adds them to their
// merchants' day counts. An item is <day, 4 bytes big-endian><merchant tag, 16 hex digits>; the
// merchant's key is the hash ARGV[1]:m:{<tag>}, a field a day (the day number in decimal) holding
// its count, beside the snapshots (r<day>) that observeScript takes. A merchant's first count of
// a day sets the key's TTL, ARGV[3] ms, and, once the key holds a week more than its ARGV[4] days,
// drops its days and snapshots more than ARGV[4] before it.
// Returns the number of items taken. (It names keys that KEYS does not list, as only a single
// Redis allows.)
const foldScript = `
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
  local key, d = ARGV[1] .. ':m:{' .. string.sub(item, 5) .. '}', u32(item, 1)
  if redis.call('HINCRBY', key, d, n) == n then
    -- A merchant's first count of a day: its TTL, and a sweep of its old days once they are a
    -- week's worth (two fields a day: its count and its snapshot), rather than every day.
    if redis.call('HLEN', key) > 2 * (tonumber(ARGV[4]) + 8) then
      for _, f in ipairs(redis.call('HKEYS', key)) do
        -- a day's count (<day>) or snapshot (r<day>, or s<day> from before the delayed counts)
        if (tonumber(f) or tonumber(string.sub(f, 2)) or d) < d - tonumber(ARGV[4]) then
          redis.call('HDEL', key, f)
        end
      end
    end
    redis.call('PEXPIRE', key, ARGV[3])
  end
end
return #items
`

// labelScript records an analyst's verdict on a payment for its merchant: it finds the payment's
// entry in its card's history (KEYS[1], field ARGV[1], payment id tag ARGV[2]) and, for "fraud"
// (ARGV[3] = '1'), sets the field <day>:<payment tag, hex> of the merchant's fraud hash
// ARGV[4]:mf:{<merchant tag, hex>}, with TTL ARGV[5] ms, dropping its days more than ARGV[6]
// before the payment's; for "legitimate" it deletes that field. Idempotent. Returns 1, or 0 when the
// payment is not in the history (unknown, or older than it keeps) or had no merchant.
const labelScript = `
local function u32(s, i)
  local a, b, c, d = string.byte(s, i, i + 3)
  return ((a * 256 + b) * 256 + c) * 256 + d
end
local function hex(s)
  return (string.gsub(s, '.', function(c) return string.format('%02x', string.byte(c)) end))
end

local history = redis.call('HGET', KEYS[1], ARGV[1])
if not history then
  return 0
end
local from = 1
while true do
  local p = string.find(history, ARGV[2], from, true)
  if not p then
    return 0
  end
  if (p - 9) % 24 == 0 then
    local e = p - 8
    local merchant = string.sub(history, e + 16, e + 19)
    if merchant == '\0\0\0\0' then
      return 0
    end
    local day = math.floor(u32(history, e) / 86400)
    local key = ARGV[4] .. ':mf:{' .. hex(merchant) .. '}'
    local field = day .. ':' .. hex(ARGV[2])
    if ARGV[3] ~= '1' then
      redis.call('HDEL', key, field)
      return 1
    end
    if redis.call('HSET', key, field, 1) == 1 then
      for _, f in ipairs(redis.call('HKEYS', key)) do
        if tonumber(string.match(f, '^%d+')) < day - tonumber(ARGV[6]) then
          redis.call('HDEL', key, f)
        end
      end
      redis.call('PEXPIRE', key, ARGV[5])
    end
    return 1
  end
  from = p + 1
end
`
