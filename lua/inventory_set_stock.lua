-- inventory_set_stock: set on-hand (incl. held units) and the bucket layout (01-inventory §4).
-- KEYS: 1 meta, 2 reserved, 3 events, then the old layout's counter keys, then the new layout's.
-- ARGV: 1 now_ms, 2 quantity (on hand), 3 new_buckets, 4 reason, 5 actor, 6 sku, 7 old_buckets.
-- counter := quantity - reserved, spread evenly over the new layout (remainder to the lowest).
-- Returns {counter, reserved} | {"LAYOUT_CHANGED"}
local now = tonumber(ARGV[1])
local quantity, new_nb, old_nb = tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[7])
if tonumber(redis.call('HGET', KEYS[1], 'buckets') or '1') ~= old_nb then return {'LAYOUT_CHANGED'} end
local reserved = tonumber(redis.call('GET', KEYS[2]) or '0')
local counter = quantity - reserved
for i = 1, old_nb do redis.call('DEL', KEYS[3 + i]) end
local base = math.floor(counter / new_nb)
local extra = counter - base * new_nb
for i = 1, new_nb do
  local v = base
  if i <= extra then v = v + 1 end
  redis.call('SET', KEYS[3 + old_nb + i], v)
end
if reserved == 0 then redis.call('SET', KEYS[2], 0) end
redis.call('HSET', KEYS[1], 'buckets', new_nb)
redis.call('XADD', KEYS[3], 'MAXLEN', '~', 100000, '*', 'type', ARGV[4], 'at', now, 'sku', ARGV[6],
  'on_hand', quantity, 'buckets', new_nb, 'actor', ARGV[5])
return {counter, reserved}
