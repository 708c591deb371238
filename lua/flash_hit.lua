-- flash_hit (03 RL, per device and per user): a sliding window of `burst` hits per `window_ms`.
-- KEYS: 1 the window's ZSET. ARGV: 1 now_ms, 2 window_ms, 3 burst, 4 a unique member.
-- Returns 1 (counted) or 0 (full; nothing counted).
local now = tonumber(ARGV[1])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - tonumber(ARGV[2]))
if redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[3]) then return 0 end
redis.call('ZADD', KEYS[1], now, ARGV[4])
redis.call('PEXPIRE', KEYS[1], tonumber(ARGV[2]) + 10000)
return 1
