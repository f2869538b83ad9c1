package window

// observeScript looks payments up in their cards' histories, appends the new ones and counts them
// for their merchants. It returns each card's history and each merchant's day slots, as they are
// after the call.
//
//	ARGV[1] cutoff: entries with an older event time (Unix seconds) are dropped from the front
//	ARGV[2] the most entries a history keeps
//	ARGV[3] TTL of a card bucket, ms, set on every bucket written
//	ARGV[4] TTL of a merchant's key, ms
//	ARGV[5] number of cards C; KEYS[1..C] their buckets
//	then for each card: its field, its number of payments n, 1 to sweep its bucket first (drop
//	    the cards whose newest entry is older than the cutoff) or 0, then for each payment its
//	    entry and its mode: -1 look it up only, 0 count it, m > 0 count it and count it for
//	    merchant m
//	then the number of merchants M; KEYS[C+1..C+M] their keys; for each merchant a number k and
//	    k days to count unconditionally (on a Redis Cluster, where merchants have calls of their own)
//
// Lua numbers are doubles: event times and counts stay far below 2^53.
const observeScript = `
local function u32(s, i)
  local a, b, c, d = string.byte(s, i, i + 3)
  return ((a * 256 + b) * 256 + c) * 256 + d
end
local function p32(n)
  return string.char(math.floor(n / 16777216) % 256, math.floor(n / 65536) % 256, math.floor(n / 256) % 256, n % 256)
end

local cutoff, cap, ttl, mttl = tonumber(ARGV[1]), tonumber(ARGV[2]) * 24, ARGV[3], ARGV[4]
local ncards = tonumber(ARGV[5])
local a = 6
local out, counted, written = {}, {}, {}
for c = 1, ncards do
  local key, field, n, sweep = KEYS[c], ARGV[a], tonumber(ARGV[a + 1]), ARGV[a + 2]
  a = a + 3
  if sweep == '1' then
    local all = redis.call('HGETALL', key)
    for i = 1, #all, 2 do
      local f, v = all[i], all[i + 1]
      if f ~= field and (#v < 24 or u32(v, #v - 23) < cutoff) then
        redis.call('HDEL', key, f)
      end
    end
  end
  local history = redis.call('HGET', key, field) or ''
  local new, seen = {}, {}
  for _ = 1, n do
    local entry, mode = ARGV[a], tonumber(ARGV[a + 1])
    a = a + 2
    local pid = string.sub(entry, 9, 14)
    local found, from = seen[pid], 1
    while not found do
      local p = string.find(history, pid, from, true)
      if not p then break end
      found = (p - 9) % 24 == 0
      from = p + 1
    end
    if not found and mode >= 0 then
      seen[pid] = true
      new[#new + 1] = entry
      if mode > 0 then
        local days = counted[mode] or {}
        days[#days + 1] = math.floor(u32(entry, 1) / 86400)
        counted[mode] = days
      end
    end
  end
  if #new > 0 then
    history = history .. table.concat(new)
    local from = 1
    while from <= #history and u32(history, from) < cutoff do
      from = from + 24
    end
    from = math.max(from, #history - cap + 1)
    if from > 1 then
      history = string.sub(history, from)
    end
    redis.call('HSET', key, field, history)
    written[key] = true
  end
  out[c] = history
end
for key in pairs(written) do
  redis.call('PEXPIRE', key, ttl)
end

local nmerchants = tonumber(ARGV[a])
a = a + 1
for m = 1, nmerchants do
  local key, k = KEYS[ncards + m], tonumber(ARGV[a])
  a = a + 1
  local days = counted[m] or {}
  for _ = 1, k do
    days[#days + 1] = tonumber(ARGV[a])
    a = a + 1
  end
  local slots = redis.call('GET', key) or ''
  if #days > 0 then
    if #slots ~= 256 then
      slots = string.rep('\0', 256)
    end
    for _, d in ipairs(days) do
      local off = (d % 32) * 8 + 1
      local sd, count = u32(slots, off), u32(slots, off + 4)
      if sd <= d then
        if sd < d then
          count = 0
        end
        slots = string.sub(slots, 1, off - 1) .. p32(d) .. p32(count + 1) .. string.sub(slots, off + 8)
      end
    end
    redis.call('SET', key, slots, 'PX', mttl)
  end
  out[ncards + m] = slots
end
return out
`
