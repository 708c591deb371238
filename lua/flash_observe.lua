-- flash_observe (issue #15, bot signals): records a request of a user from a device and returns
-- the user's recent request times and how many devices they used.
-- KEYS: 1 requests ZSET, 2 devices ZSET (both {<uid>}). ARGV: 1 now_ms, 2 window_ms, 3 keep,
-- 4 unique member, 5 device.
-- Returns {device_count, t1, t2, ...} (times oldest first, at most `keep`).
local now, window, keep = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
redis.call('ZADD', KEYS[1], now, ARGV[4])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - window)
local n = redis.call('ZCARD', KEYS[1])
if n > keep then redis.call('ZREMRANGEBYRANK', KEYS[1], 0, n - keep - 1) end
redis.call('ZADD', KEYS[2], now, ARGV[5])
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now - window)
redis.call('PEXPIRE', KEYS[1], window + 10000)
redis.call('PEXPIRE', KEYS[2], window + 10000)
local out = {redis.call('ZCARD', KEYS[2])}
local seen = redis.call('ZRANGE', KEYS[1], 0, -1, 'WITHSCORES')
for i = 2, #seen, 2 do out[#out + 1] = tonumber(seen[i]) end
return out
