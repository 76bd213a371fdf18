-- One batch of the Redis store, in one round trip, atomic across replicas.
--
-- This restates `exporter.timing.decide` (the readable statement) because a
-- script is the only way to decide and write in one atomic step on the server;
-- tests/test_redis_script.py holds it to `decide` with a differential property
-- test on a real redis-server.
--
-- KEYS (all under one hash tag, so Redis Cluster keeps them in one slot):
--   1 records  hash   member (8 bytes) -> record (see `record` below)
--   2 order    list   member .. created (16 bytes), oldest first: the order of
--                     expiry and capacity eviction. An entry whose created no
--                     longer matches its member's record is stale (the record
--                     was dropped and made again) and is skipped.
--   3 bodies   zset   body digest -> time it was applied (the retry window)
--   4 pending  string registered messages without a terminal event
-- ARGV:
--   1 now (Unix seconds)   2 cutoff: now - ttl   3 max entries   4 key TTL (seconds)
--   5 sweep: most entries one call may drop before it stops and says "more"
--   6 body digest ("" for maintenance: no body, no claims)
--   7 members: 8 bytes per claim   8 kinds: one byte per claim (255: no claim)
--   9 event times: a little-endian double per claim
--   10 registration bit   11 once-per-message bits   12 terminal bits
-- Returns {1} when the body was applied within the window (a retry), else
-- {0, verdicts (a little-endian double per claim), pending, expired pending,
--  capacity-evicted pending, 1 if a sweep stopped early else 0}.

local records, order, bodies, pending_key = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local now_text = ARGV[1]
local now = tonumber(now_text)
-- The window's start, computed by the caller: a Lua number prints with
-- 14 digits only, too few for a score.
local cutoff = tonumber(ARGV[2])
local max_entries = tonumber(ARGV[3])
local key_ttl = ARGV[4]
local sweep = tonumber(ARGV[5])
local body = ARGV[6]
local members, kinds, times = ARGV[7], ARGV[8], ARGV[9]
local REGISTRATION, ONCE, TERMINAL = tonumber(ARGV[10]), tonumber(ARGV[11]), tonumber(ARGV[12])

local NOTHING, DUPLICATE, UNMATCHED = -1.0, -2.0, -3.0
local NO_CLAIM = 255
-- Arguments per multi-key call: unpack() puts them on Lua's C stack, which
-- holds about 8000.
local CHUNK = 1000

if body ~= '' then
  local seen = redis.call('ZSCORE', bodies, body)
  if seen and tonumber(seen) >= cutoff then
    return {1}
  end
end

-- A record: created (double), kinds seen (int32 bit set), whether a
-- registration time is known (byte), registration time (double).
local function unpack_record(value)
  local created, seen, has, registered = struct.unpack('<dibd', value)
  return {created = created, seen = seen, registered = has == 1 and registered or nil}
end

local function pack_record(r)
  return struct.pack('<dibd', r.created, r.seen, r.registered and 1 or 0, r.registered or 0)
end

local function is_pending(r)
  return r.registered ~= nil and bit.band(r.seen, TERMINAL) == 0
end

local pending = tonumber(redis.call('GET', pending_key) or '0')
local expired, capacity, dropped, more = 0, 0, 0, 0

-- Looks at the oldest entry: nil when there is none or `old(record)` says
-- keep it; else pops it and says what went: 'stale' (an entry without its
-- record), or 1 / 0 (a record dropped, pending or not).
local function drop_oldest(old)
  local entry = redis.call('LINDEX', order, 0)
  if not entry then
    return nil
  end
  local member = string.sub(entry, 1, 8)
  local value = redis.call('HGET', records, member)
  local went = 'stale'
  if value and string.sub(value, 1, 8) == string.sub(entry, 9, 16) then
    local r = unpack_record(value)
    if not old(r) then
      return nil
    end
    redis.call('HDEL', records, member)
    went = 0
    if is_pending(r) then
      pending = pending - 1
      went = 1
    end
  end
  redis.call('LPOP', order)
  return went
end

-- Expiry: records created before the window, oldest first.
local function aged(r) return r.created < cutoff end
while true do
  if dropped >= sweep then more = 1 break end
  local went = drop_oldest(aged)
  if went == nil then break end
  dropped = dropped + 1
  if went == 1 then expired = expired + 1 end
end

local n = string.len(kinds)
local verdicts = {}
if n > 0 then
  -- The members in order of first appearance (new records join the order
  -- list in that order), read with one HMGET: a redis.call costs more than
  -- deciding a claim.
  local touched, index, slot = {}, {}, {}
  for i = 1, n do
    if string.byte(kinds, i) ~= NO_CLAIM then
      local member = string.sub(members, 8 * i - 7, 8 * i)
      local j = index[member]
      if j == nil then
        j = #touched + 1
        touched[j] = member
        index[member] = j
      end
      slot[i] = j
    end
  end
  -- Unpacked and packed a chunk at a time: one struct call per claim costs more.
  local at_time = {}
  for first = 1, n, CHUNK do
    local last = math.min(first + CHUNK - 1, n)
    local got = {struct.unpack('<' .. string.rep('d', last - first + 1), times, 8 * first - 7)}
    for i = first, last do
      at_time[i] = got[i - first + 1]
    end
  end
  local values = {}
  for first = 1, #touched, CHUNK do
    local got = redis.call('HMGET', records, unpack(touched, first, math.min(first + CHUNK - 1, #touched)))
    for j = 1, #got do
      values[first + j - 1] = got[j]
    end
  end
  local cache, fresh, was, changed = {}, {}, {}, {}
  for j, member in ipairs(touched) do
    local value, r = values[j], nil
    if value then
      r = unpack_record(value)
      if r.created < cutoff then
        -- Past the window but not swept yet: gone, as far as `decide` knows.
        if is_pending(r) then
          pending = pending - 1
          expired = expired + 1
        end
        r = nil
      end
    end
    if r == nil then
      r = {created = now, seen = 0}
      fresh[j] = true
    end
    cache[j] = r
    was[j] = is_pending(r)
  end
  for i = 1, n do
    local kind = string.byte(kinds, i)
    local verdict = NOTHING
    if kind ~= NO_CLAIM then
      local j = slot[i]
      local r = cache[j]
      -- exporter.timing.decide
      local at = at_time[i]
      local b = bit.lshift(1, kind)
      local first = bit.band(r.seen, b) == 0
      if not first and bit.band(b, ONCE) ~= 0 then
        verdict = DUPLICATE
      else
        changed[j] = true
        if b == REGISTRATION then
          if r.seen == 0 then
            r.registered = at
          end
          r.seen = bit.bor(r.seen, b)
        else
          r.seen = bit.bor(r.seen, b)
          if first then
            if r.registered == nil then
              verdict = UNMATCHED
            elseif at >= r.registered then
              verdict = at - r.registered
            end
          end
        end
      end
    end
    verdicts[i] = verdict
  end
  local pairs_, entries = {}, {}
  for j, member in ipairs(touched) do
    if changed[j] then
      local r = cache[j]
      local value = pack_record(r)
      pairs_[#pairs_ + 1] = member
      pairs_[#pairs_ + 1] = value
      if fresh[j] then
        entries[#entries + 1] = member .. string.sub(value, 1, 8)
      end
      local now_pending = is_pending(r)
      if now_pending ~= was[j] then
        pending = pending + (now_pending and 1 or -1)
      end
    end
  end
  for first = 1, #pairs_, 2 * CHUNK do
    redis.call('HSET', records, unpack(pairs_, first, math.min(first + 2 * CHUNK - 1, #pairs_)))
  end
  for first = 1, #entries, CHUNK do
    redis.call('RPUSH', order, unpack(entries, first, math.min(first + CHUNK - 1, #entries)))
  end
end

if body ~= '' then
  redis.call('ZADD', bodies, now_text, body)
end

-- Capacity: the oldest records beyond max_entries, within the same sweep.
local function any() return true end
local excess = redis.call('HLEN', records) - max_entries
while excess > 0 do
  if dropped >= sweep then more = 1 break end
  local went = drop_oldest(any)
  if went == nil then break end
  dropped = dropped + 1
  if went ~= 'stale' then
    excess = excess - 1
    capacity = capacity + went
  end
end

redis.call('ZREMRANGEBYSCORE', bodies, '-inf', '(' .. ARGV[2])
local extra = redis.call('ZCARD', bodies) - max_entries
if extra > 0 then
  redis.call('ZREMRANGEBYRANK', bodies, 0, extra - 1)
end

if redis.call('HLEN', records) == 0 then
  -- Nothing is remembered, so nothing is pending, whatever dropped the keys.
  pending = 0
end
redis.call('SET', pending_key, pending, 'EX', key_ttl)
for _, key in ipairs({records, order, bodies}) do
  redis.call('EXPIRE', key, key_ttl)
end
local packed = {}
for first = 1, #verdicts, CHUNK do
  local last = math.min(first + CHUNK - 1, #verdicts)
  packed[#packed + 1] = struct.pack('<' .. string.rep('d', last - first + 1), unpack(verdicts, first, last))
end
return {0, table.concat(packed), pending, expired, capacity, more}
