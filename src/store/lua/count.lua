-- Count one event in a sliding-window cell with an escalating penalty (cell::count's arithmetic).
-- KEYS[1]: the cell, a hash s (window start, s), c (current), p (previous), u (penalty until, s), k (strikes).
-- ARGV: now, threshold, window, penalty, max_penalty, memory (microseconds but threshold). Returns u.
local function f(x) return string.format('%.0f', x) end
local now = tonumber(ARGV[1])
local threshold = tonumber(ARGV[2])
local window = math.max(math.ceil(tonumber(ARGV[3]) / 1e6), 1)
local penalty = tonumber(ARGV[4])
local max_penalty = tonumber(ARGV[5])
local memory = tonumber(ARGV[6])
local at = math.floor(now / 1e6)
local h = redis.call('HMGET', KEYS[1], 's', 'c', 'p', 'u', 'k')
local s = tonumber(h[1]) or 0
local c = tonumber(h[2]) or 0
local p = tonumber(h[3]) or 0
local u = tonumber(h[4]) or 0
local k = tonumber(h[5]) or 0
if at >= u then
  if s == 0 then
    s = at
  elseif at >= s + window then
    local passed = math.floor((at - s) / window)
    if passed == 1 then p = c else p = 0 end
    c = 0
    s = s + passed * window
  end
  c = math.min(c + 1, 65535)
  local into = math.min(math.max(at - s, 0), window)
  local estimate = c + math.floor(p * ((window - into) / window) + 0.5)
  if estimate >= threshold then
    if k > 0 and now >= u * 1e6 + memory then k = 0 end
    local length = math.min(penalty * 2 ^ math.min(k, 20), max_penalty)
    k = math.min(k + 1, 255)
    u = math.ceil((now + length) / 1e6)
    s, c, p = 0, 0, 0
  end
end
local keep = 0
if s ~= 0 then keep = s + 2 * window end
if k > 0 then keep = math.max(keep, u + math.ceil(memory / 1e6)) end
if keep <= at then
  redis.call('DEL', KEYS[1])
  return u
end
redis.call('HSET', KEYS[1], 's', f(s), 'c', f(c), 'p', f(p), 'u', f(u), 'k', f(k))
redis.call('EXPIREAT', KEYS[1], f(keep))
return u
