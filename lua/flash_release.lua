-- flash_release (03 REL): release by the owner or expiry by the reaper ('' caller); units back to
-- the buckets they came from and to the total (same epoch only).
-- KEYS: 1 meta, 2 total, 3 res, 4 exp, 5 user, 6 slot, 7.. the N buckets.
-- ARGV: 1 now_ms, 2 target ('released' | 'expired'), 3 caller uid ('' = reaper).
-- Returns {1, order_id, pid, uid, qty} | {2, order_id} already | {-1} | {-3} not owner | {-2} confirmed.
if redis.call('EXISTS', KEYS[3]) == 0 then return {-1} end
local r = redis.call('HMGET', KEYS[3], 'user_id', 'status', 'quantity', 'epoch', 'alloc', 'order_id', 'product_id', 'id')
if ARGV[3] ~= '' and r[1] ~= ARGV[3] then return {-3} end
if r[2] == 'confirmed' then return {-2} end
if r[2] ~= 'reserved' then return {2, r[6]} end
redis.call('HSET', KEYS[3], 'status', ARGV[2])
if redis.call('HGET', KEYS[1], 'epoch') == r[4] then
  local q = tonumber(r[3])
  for part in string.gmatch(r[5], '[^,]+') do
    local sep = string.find(part, ':', 1, true)
    local i, n = tonumber(string.sub(part, 1, sep - 1)), tonumber(string.sub(part, sep + 1))
    if KEYS[7 + i] then redis.call('INCRBY', KEYS[7 + i], n) end
  end
  redis.call('INCRBY', KEYS[2], q)
  redis.call('ZREM', KEYS[4], r[8])
  redis.call('HINCRBY', KEYS[1], 'reserved_qty', -q)
  redis.call('HINCRBY', KEYS[5], r[1], -q)
  redis.call('ZREM', KEYS[6], r[1])
end
return {1, r[6], r[7], r[1], r[3]}
