-- Note a member's latest outcome in a distinct set with an escalating penalty (cell::distinct's arithmetic).
-- KEYS[1]: the penalty hash u (until, s), k (strikes); KEYS[2]: the members, a sorted set of prints (bit 0 = the
-- latest outcome failed) scored by the second last seen, at most `cap` of them.
-- ARGV: now, member (bit 0 clear), failed (0/1), threshold, early (-1: no suspect rule), ratio (ppm), window, penalty,
-- max_penalty, memory (microseconds), cap. Returns u.
local function f(x) return string.format('%.0f', x) end
local now = tonumber(ARGV[1])
local base = tonumber(ARGV[2])
local failed = tonumber(ARGV[3])
local threshold = tonumber(ARGV[4])
local early = tonumber(ARGV[5])
local ratio = tonumber(ARGV[6]) / 1e6
local window = math.max(math.ceil(tonumber(ARGV[7]) / 1e6), 1)
local penalty = tonumber(ARGV[8])
local max_penalty = tonumber(ARGV[9])
local memory = tonumber(ARGV[10])
local cap = tonumber(ARGV[11])
local at = math.floor(now / 1e6)
local h = redis.call('HMGET', KEYS[1], 'u', 'k')
local u = tonumber(h[1]) or 0
local k = tonumber(h[2]) or 0

local function finish()
  local last = redis.call('ZRANGE', KEYS[2], -1, -1, 'WITHSCORES')
  if last[2] and tonumber(last[2]) + window > at then
    redis.call('EXPIREAT', KEYS[2], f(tonumber(last[2]) + window))
  else
    redis.call('DEL', KEYS[2])
  end
  local remembered = 0
  if k > 0 then remembered = u + math.ceil(memory / 1e6) end
  if remembered > at then
    redis.call('HSET', KEYS[1], 'u', f(u), 'k', f(k))
    redis.call('EXPIREAT', KEYS[1], f(remembered))
  else
    redis.call('DEL', KEYS[1])
  end
  return u
end

if at < u then
  return finish()
end
local horizon = math.max(at - window, 0)
local print = f(base + failed)
local other = f(base + 1 - failed)
local known = redis.call('ZSCORE', KEYS[2], print) or redis.call('ZSCORE', KEYS[2], other)
if not known then
  if redis.call('ZCARD', KEYS[2]) >= cap then
    redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', '(' .. f(horizon))
  end
  if redis.call('ZCARD', KEYS[2]) >= cap then
    redis.call('ZPOPMIN', KEYS[2])
  end
end
redis.call('ZREM', KEYS[2], other)
redis.call('ZADD', KEYS[2], f(at), print)
local failures, successes = 0, 0
for _, m in ipairs(redis.call('ZRANGEBYSCORE', KEYS[2], f(horizon), '+inf')) do
  if tonumber(m) % 2 == 1 then failures = failures + 1 else successes = successes + 1 end
end
local suspicious = early >= 0 and failures >= early and successes <= ratio * (failures + successes)
if failures >= threshold or suspicious then
  if k > 0 and now >= u * 1e6 + memory then k = 0 end
  local length = math.min(penalty * 2 ^ math.min(k, 20), max_penalty)
  k = math.min(k + 1, 255)
  u = math.ceil((now + length) / 1e6)
  redis.call('DEL', KEYS[2])
end
return finish()
