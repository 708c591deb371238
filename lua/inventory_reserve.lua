-- inventory_reserve: all-or-nothing multi-item hold (01-inventory §4).
-- KEYS: 1 res, 2 items, 3 expiry, 4 idem, 5 events, then per item i: meta_i, reserved_i,
--       then the N_i counter keys of that SKU's current layout (base key if N_i = 1).
-- ARGV: 1 now_ms, 2 rid, 3 hub, 4 cart, 5 user, 6 ttl_s, 7 grace_s, 8 retention_s, 9 use_idem,
--       10 n, then per item: sku, qty, n_buckets, start_bucket (0-based).
-- Returns {"OK", expires_at, remaining_1..n} | {"REPLAY", rid} | {"SKU_NOT_FOUND", sku}
--       | {"INSUFFICIENT_STOCK", sku, available} | {"LAYOUT_CHANGED", sku}
local now = tonumber(ARGV[1])
if ARGV[9] == '1' then
  local prior = redis.call('GET', KEYS[4])
  if prior then return {'REPLAY', prior} end
end
local n = tonumber(ARGV[10])
local plan = {}
local k, a = 6, 11
-- Pass 1: validate every item before writing anything.
for i = 1, n do
  local sku, qty = ARGV[a], tonumber(ARGV[a + 1])
  local nb, start = tonumber(ARGV[a + 2]), tonumber(ARGV[a + 3])
  a = a + 4
  local meta, reserved = KEYS[k], KEYS[k + 1]
  k = k + 2
  local current_nb = tonumber(redis.call('HGET', meta, 'buckets') or '1')
  if current_nb ~= nb then return {'LAYOUT_CHANGED', sku} end
  local counters, exists, available = {}, false, 0
  for b = 1, nb do
    local v = redis.call('GET', KEYS[k])
    if v then exists = true end
    v = tonumber(v or '0')
    counters[b] = {KEYS[k], v}
    if v > 0 then available = available + v end
    k = k + 1
  end
  if not exists then return {'SKU_NOT_FOUND', sku} end
  if available < qty then return {'INSUFFICIENT_STOCK', sku, available} end
  plan[i] = {sku = sku, qty = qty, nb = nb, start = start, counters = counters, reserved = reserved}
end
-- Pass 2: take the units, bucket by bucket from the start bucket.
local expires_at = now + tonumber(ARGV[6]) * 1000
local gc_ms = (tonumber(ARGV[6]) + tonumber(ARGV[7]) + tonumber(ARGV[8])) * 1000
local out = {'OK', expires_at}
local item_fields = {}
local summary = {}
for i = 1, n do
  local p = plan[i]
  local left = p.qty
  local remaining = 0
  if p.nb == 1 then
    remaining = redis.call('DECRBY', p.counters[1][1], p.qty)
    item_fields[#item_fields + 1] = p.sku
    item_fields[#item_fields + 1] = p.qty
  else
    for step = 0, p.nb - 1 do
      if left == 0 then break end
      local b = (p.start + step) % p.nb
      local c = p.counters[b + 1]
      local take = math.min(left, math.max(0, c[2]))
      if take > 0 then
        redis.call('DECRBY', c[1], take)
        c[2] = c[2] - take
        left = left - take
        item_fields[#item_fields + 1] = p.sku .. '#' .. b
        item_fields[#item_fields + 1] = take
      end
    end
    for b = 1, p.nb do
      if p.counters[b][2] > 0 then remaining = remaining + p.counters[b][2] end
    end
  end
  redis.call('INCRBY', p.reserved, p.qty)
  out[#out + 1] = remaining
  summary[i] = {sku = p.sku, quantity = p.qty}
end
redis.call('HSET', KEYS[1], 'rid', ARGV[2], 'hub_id', ARGV[3], 'cart_id', ARGV[4], 'user_id', ARGV[5],
  'status', 'RESERVED', 'created_at', now, 'expires_at', expires_at)
redis.call('HSET', KEYS[2], unpack(item_fields))
redis.call('PEXPIRE', KEYS[1], gc_ms)
redis.call('PEXPIRE', KEYS[2], gc_ms)
redis.call('ZADD', KEYS[3], expires_at, ARGV[2])
if ARGV[9] == '1' then redis.call('SET', KEYS[4], ARGV[2], 'PX', gc_ms) end
redis.call('XADD', KEYS[5], 'MAXLEN', '~', 100000, '*', 'type', 'RESERVED', 'at', now, 'rid', ARGV[2],
  'cart_id', ARGV[4], 'user_id', ARGV[5], 'created_at', now, 'expires_at', expires_at,
  'items', cjson.encode(summary))
return out
