-- GCRA admission on one key holding the theoretical arrival time, in microseconds (cell::gcra's arithmetic).
-- KEYS[1]: the cell. ARGV: now, interval, tolerance (microseconds). Returns 0 when admitted, else the wait.
local now = tonumber(ARGV[1])
local interval = tonumber(ARGV[2])
local tolerance = tonumber(ARGV[3])
local tat = tonumber(redis.call('GET', KEYS[1]) or '0') or 0
local arrival = math.max(tat, now)
if arrival - now > tolerance then
  return arrival - now - tolerance
end
local new = arrival + interval
redis.call('SET', KEYS[1], string.format('%.0f', new), 'PXAT', string.format('%.0f', math.ceil(new / 1000) + 1000))
return 0
