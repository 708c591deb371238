-- flash_confirm (03 C): one script, so a confirm cannot race the reaper into an oversell.
-- KEYS: 1 meta, 2 res, 3 exp, 4 slot. ARGV: 1 now_ms, 2 uid.
-- Returns {1, order_id, pid, uid, qty} done | {2, order_id} already | {-1} | {-3} not owner |
-- {-2, status} released, expired or past expires_at.
if redis.call('EXISTS', KEYS[2]) == 0 then return {-1} end
local r = redis.call('HMGET', KEYS[2], 'user_id', 'status', 'expires_at', 'quantity', 'epoch', 'order_id', 'product_id', 'id')
if r[1] ~= ARGV[2] then return {-3} end
if r[2] == 'confirmed' then return {2, r[6]} end
if r[2] ~= 'reserved' then return {-2, r[2]} end
if tonumber(ARGV[1]) > tonumber(r[3]) then return {-2, 'expired'} end
redis.call('HSET', KEYS[2], 'status', 'confirmed')
if redis.call('HGET', KEYS[1], 'epoch') == r[5] then
  local q = tonumber(r[4])
  redis.call('ZREM', KEYS[3], r[8])
  redis.call('HINCRBY', KEYS[1], 'reserved_qty', -q)
  redis.call('HINCRBY', KEYS[1], 'confirmed_qty', q)
  redis.call('ZREM', KEYS[4], r[1])
end
return {1, r[6], r[7], r[1], r[4]}
