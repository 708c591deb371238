-- flash_init (03 init-product): (re)initialises a sale unless units are reserved (and not forced).
-- KEYS: 1 meta, 2 total, 3 waiting, 4 admit, 5 slot, 6 user, 7 exp, 8.. the N buckets (all {<pid>}).
-- ARGV: 1 force (0/1), 2 total_stock, 3 max_slots, 4 per_user_limit, 5 ttl_s, 6 opens_at_ms.
-- Returns {1, epoch} or {0} (SALE_ACTIVE). Reservations of an older epoch keep their hash: a
-- later release or confirm changes their status only.
local reserved = tonumber(redis.call('HGET', KEYS[1], 'reserved_qty') or '0')
if reserved > 0 and ARGV[1] ~= '1' then return {0} end
local epoch = tonumber(redis.call('HGET', KEYS[1], 'epoch') or '0') + 1
local n = #KEYS - 7
local total = tonumber(ARGV[2])
local base, extra = math.floor(total / n), total % n
for i = 1, n do
  local units = base
  if i <= extra then units = units + 1 end
  redis.call('SET', KEYS[7 + i], units)
end
redis.call('SET', KEYS[2], total)
redis.call('DEL', KEYS[3], KEYS[4], KEYS[5], KEYS[6], KEYS[7])
redis.call('HSET', KEYS[1], 'initial_stock', total, 'bucket_count', n, 'max_slots', ARGV[3],
  'per_user_limit', ARGV[4], 'reservation_ttl_s', ARGV[5], 'opens_at', ARGV[6],
  'reserved_qty', 0, 'confirmed_qty', 0, 'epoch', epoch)
return {1, epoch}
