"""The Lua scripts of the Valkey queue: each queue operation is one atomic script.

Internal. Keys of one queue (all under the hash tag ``{<prefix>:<queue>}``, so one cluster
slot), in this order as ``KEYS[1..8]``:

1. ``ready``: sorted set of visible waiting ids, scored by their place in the queue;
2. ``delayed``: sorted set of waiting ids not visible yet, scored by when they become
   visible (server milliseconds);
3. ``places``: hash of a delayed id's place, which it keeps when it becomes visible;
4. ``attempts``: hash of the deliveries a waiting id had so far (absent: none);
5. ``inflight``: sorted set of receipts handed out, scored by when they lapse (ms);
6. ``flights``: hash of a receipt's ``<attempt>|<item id>``;
7. ``places:next``: the counter places are drawn from (FIFO order);
8. ``wake``: the list blocked consumers wait on with ``BLPOP``.

Times come from the server's ``TIME``, so consumers on machines with skewed clocks agree.
"""

from __future__ import annotations

__all__ = ["ACK", "DEQUEUE", "ENQUEUE", "KEY_NAMES", "REQUEUE", "SIZE"]

KEY_NAMES = ("ready", "delayed", "places", "attempts", "inflight", "flights", "places:next", "wake")

#: Wake tokens kept at most: more waiting consumers than this are woken by their bounded wait.
WAKE_CAP = 256

_PRELUDE = f"""
local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end
local function is_waiting(id)
  return redis.call('ZSCORE', KEYS[1], id) or redis.call('ZSCORE', KEYS[2], id)
end
local function wake()
  redis.call('RPUSH', KEYS[8], '1')
  redis.call('LTRIM', KEYS[8], -{WAKE_CAP}, -1)
end
local function split(flight)
  local sep = string.find(flight, '|', 1, true)
  return tonumber(string.sub(flight, 1, sep - 1)), string.sub(flight, sep + 1)
end
-- Deliveries whose visibility timeout lapsed go back to the tail (oldest lapse first), unless
-- the id is waiting again already: one waiting copy stands for both.
local function reclaim(now)
  local lapsed = redis.call('ZRANGEBYSCORE', KEYS[5], '-inf', now, 'LIMIT', 0, 1000)
  for _, receipt in ipairs(lapsed) do
    local flight = redis.call('HGET', KEYS[6], receipt)
    redis.call('ZREM', KEYS[5], receipt)
    redis.call('HDEL', KEYS[6], receipt)
    if flight then
      local attempt, id = split(flight)
      if not is_waiting(id) then
        redis.call('ZADD', KEYS[1], redis.call('INCR', KEYS[7]), id)
        redis.call('HSET', KEYS[4], id, attempt)
      end
    end
  end
end
-- Delayed ids whose time came are visible again, at the place they were given.
local function promote(now)
  local due = redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', now, 'LIMIT', 0, 1000)
  for _, id in ipairs(due) do
    redis.call('ZADD', KEYS[1], redis.call('HGET', KEYS[3], id), id)
    redis.call('ZREM', KEYS[2], id)
    redis.call('HDEL', KEYS[3], id)
  end
end
"""

#: ARGV: item id. Returns 1 when the id became (or stayed) newly visible, 0 when it waited.
ENQUEUE = (
    _PRELUDE
    + """
local id = ARGV[1]
if redis.call('ZSCORE', KEYS[1], id) then return 0 end
local place = redis.call('HGET', KEYS[3], id)
if place then
  -- Delayed: visible now, keeping its place (new work never waits for an old delay).
  redis.call('ZREM', KEYS[2], id)
  redis.call('HDEL', KEYS[3], id)
  redis.call('ZADD', KEYS[1], place, id)
else
  redis.call('ZADD', KEYS[1], redis.call('INCR', KEYS[7]), id)
  redis.call('HDEL', KEYS[4], id)
end
wake()
return 1
"""
)

#: ARGV: receipt, visibility timeout (ms). Returns ``{1, id, attempt, now_ms}`` or
#: ``{0, ms until something may become visible (-1: nothing pending)}``.
DEQUEUE = (
    _PRELUDE
    + """
local now = now_ms()
reclaim(now)
promote(now)
local head = redis.call('ZPOPMIN', KEYS[1])
if #head == 0 then
  -- Tokens left in the wake list announced items that are gone by now: without this, the
  -- consumer's next BLPOP would return at once for each of them (a spin, not a wait).
  redis.call('DEL', KEYS[8])
  local next_at = -1
  local delayed = redis.call('ZRANGE', KEYS[2], 0, 0, 'WITHSCORES')
  if #delayed > 0 then next_at = tonumber(delayed[2]) end
  local flight = redis.call('ZRANGE', KEYS[5], 0, 0, 'WITHSCORES')
  if #flight > 0 and (next_at < 0 or tonumber(flight[2]) < next_at) then
    next_at = tonumber(flight[2])
  end
  if next_at < 0 then return {0, -1} end
  return {0, math.max(next_at - now, 0)}
end
local id = head[1]
local attempt = tonumber(redis.call('HGET', KEYS[4], id) or '0') + 1
redis.call('HDEL', KEYS[4], id)
redis.call('ZADD', KEYS[5], now + tonumber(ARGV[2]), ARGV[1])
redis.call('HSET', KEYS[6], ARGV[1], attempt .. '|' .. id)
return {1, id, attempt, now}
"""
)

#: ARGV: receipt. Returns 1 when the delivery was in flight (now gone), 0 otherwise.
ACK = (
    _PRELUDE
    + """
reclaim(now_ms())
if redis.call('HDEL', KEYS[6], ARGV[1]) == 1 then
  redis.call('ZREM', KEYS[5], ARGV[1])
  return 1
end
return 0
"""
)

#: ARGV: receipt, delay (ms). Returns 1 when the item was put back, 0 when the receipt was not
#: in flight or the id is waiting already.
REQUEUE = (
    _PRELUDE
    + """
local now = now_ms()
reclaim(now)
local flight = redis.call('HGET', KEYS[6], ARGV[1])
if not flight then return 0 end
redis.call('HDEL', KEYS[6], ARGV[1])
redis.call('ZREM', KEYS[5], ARGV[1])
local attempt, id = split(flight)
if is_waiting(id) then return 0 end
local place = redis.call('INCR', KEYS[7])
local delay = tonumber(ARGV[2])
if delay > 0 then
  redis.call('ZADD', KEYS[2], now + delay, id)
  redis.call('HSET', KEYS[3], id, place)
else
  redis.call('ZADD', KEYS[1], place, id)
end
redis.call('HSET', KEYS[4], id, attempt)
wake()
return 1
"""
)

#: No ARGV. Returns the number of waiting ids, delayed ones included.
SIZE = (
    _PRELUDE
    + """
reclaim(now_ms())
return redis.call('ZCARD', KEYS[1]) + redis.call('ZCARD', KEYS[2])
"""
)
