-- Put a member first in a recent set of at most `cap` (cell::remember). KEYS[1]: a sorted set of members scored by
-- the second until which each is remembered. ARGV: member, until (s), cap.
redis.call('ZADD', KEYS[1], ARGV[2], ARGV[1])
redis.call('ZREMRANGEBYRANK', KEYS[1], 0, -(tonumber(ARGV[3]) + 1))
local last = redis.call('ZRANGE', KEYS[1], -1, -1, 'WITHSCORES')
redis.call('EXPIREAT', KEYS[1], last[2])
return 1
