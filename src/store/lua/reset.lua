-- Forget a counting cell's count, not its penalty (cell::reset_count). KEYS[1]: the cell.
local k = tonumber(redis.call('HGET', KEYS[1], 'k') or '0') or 0
if k == 0 then
  redis.call('DEL', KEYS[1])
else
  redis.call('HSET', KEYS[1], 's', '0', 'c', '0', 'p', '0')
end
return k
