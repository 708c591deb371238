-- flash_reserve (03 R, with fair admission): takes `qty` units for a user, or sends them to the
-- waiting room. A caller without a live pass waits when anyone is waiting or when the units
-- not promised to live passes are too few, so freed units go to the queue's head.
-- KEYS: 1 meta, 2 total, 3 res, 4 exp, 5 user, 6 waiting, 7 admit, 8.. the N buckets.
-- ARGV: 1 now_ms, 2 qty, 3 primary bucket (0-based), 4 rid, 5 pid, 6 uid, 7 device, 8 order_id.
-- Returns {1, remaining, expires_at} | {-1} not found | {-2} wait | {-4} per-user limit.
if redis.call('EXISTS', KEYS[1]) == 0 then return {-1} end
local now, qty = tonumber(ARGV[1]), tonumber(ARGV[2])
local m = redis.call('HMGET', KEYS[1], 'opens_at', 'per_user_limit', 'reservation_ttl_s', 'epoch')
if now < tonumber(m[1]) then return {-2} end
redis.call('ZREMRANGEBYSCORE', KEYS[7], '-inf', now)
local uid = ARGV[6]
local pass = redis.call('ZSCORE', KEYS[7], uid)
local limit = tonumber(m[2])
local held = tonumber(redis.call('HGET', KEYS[5], uid) or '0')
if limit > 0 and held + qty > limit then return {-4} end
local total = tonumber(redis.call('GET', KEYS[2]) or '0')
local free = total
if not pass then
  if redis.call('ZCARD', KEYS[6]) > 0 then return {-2} end
  free = total - redis.call('ZCARD', KEYS[7])
end
if free < qty then return {-2} end
local n = #KEYS - 7
local need, alloc = qty, {}
for k = 0, n - 1 do
  local i = (tonumber(ARGV[3]) + k) % n
  local have = tonumber(redis.call('GET', KEYS[8 + i]) or '0')
  local take = math.min(have, need)
  if take > 0 then
    redis.call('DECRBY', KEYS[8 + i], take)
    alloc[#alloc + 1] = i .. ':' .. take
    need = need - take
  end
  if need == 0 then break end
end
local remaining = redis.call('DECRBY', KEYS[2], qty)
local expires = now + tonumber(m[3]) * 1000
redis.call('HSET', KEYS[3], 'id', ARGV[4], 'product_id', ARGV[5], 'user_id', uid,
  'device_fp', ARGV[7], 'quantity', qty, 'alloc', table.concat(alloc, ','), 'status', 'reserved',
  'epoch', m[4], 'created_at', now, 'expires_at', expires, 'order_id', ARGV[8])
redis.call('PEXPIRE', KEYS[3], (tonumber(m[3]) + 86400) * 1000)
redis.call('ZADD', KEYS[4], expires, ARGV[4])
redis.call('HINCRBY', KEYS[1], 'reserved_qty', qty)
redis.call('HINCRBY', KEYS[5], uid, qty)
redis.call('ZREM', KEYS[7], uid)
redis.call('ZREM', KEYS[6], uid)
return {1, remaining, expires}
