-- flash_slot (03 S): a concurrency slot as a lease per user (no ghost slots, no negative counts).
-- KEYS: 1 slot ZSET. ARGV: 1 now_ms, 2 max, 3 lease_ms, 4 uid. Returns 1 taken/refreshed, 0 full.
local now = tonumber(ARGV[1])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
if redis.call('ZSCORE', KEYS[1], ARGV[4]) then
  redis.call('ZADD', KEYS[1], now + tonumber(ARGV[3]), ARGV[4])
  return 1
end
if redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[2]) then return 0 end
redis.call('ZADD', KEYS[1], now + tonumber(ARGV[3]), ARGV[4])
return 1
