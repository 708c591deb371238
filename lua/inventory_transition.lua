-- inventory_transition: release | confirm | expire one reservation atomically (01-inventory §4).
-- KEYS: 1 res, 2 items, 3 expiry, 4 events, then per items-hash field j: meta_j, reserved_j, counter_j
--       (counter_j is the key in the SKU's current layout that this take credits back).
-- ARGV: 1 now_ms, 2 action, 3 grace_ms, 4 retention_s, 5 m, then per field j: field_j, n_buckets_j,
--       then rid (so an orphan expiry entry can be removed).
-- Returns {"OK"} | {"NOT_FOUND"} | {"EXPIRED"} | {"NOT_DUE"} | {"SKIP", status}
--       | {"ALREADY", status} | {"INVALID_STATE", status} | {"LAYOUT_CHANGED"}
local now = tonumber(ARGV[1])
local action = ARGV[2]
local m = tonumber(ARGV[5])
local rid = ARGV[6 + 2 * m]
local status = redis.call('HGET', KEYS[1], 'status')
if not status then
  if action == 'expire' then redis.call('ZREM', KEYS[3], rid) end
  return {'NOT_FOUND'}
end
if m ~= redis.call('HLEN', KEYS[2]) then return {'LAYOUT_CHANGED'} end
local takes, summary, by_sku = {}, {}, {}
for j = 1, m do
  local field, nb = ARGV[4 + 2 * j], tonumber(ARGV[5 + 2 * j])
  local qty = tonumber(redis.call('HGET', KEYS[2], field))
  if not qty then return {'LAYOUT_CHANGED'} end
  local meta = KEYS[4 + 3 * (j - 1) + 1]
  if tonumber(redis.call('HGET', meta, 'buckets') or '1') ~= nb then return {'LAYOUT_CHANGED'} end
  takes[j] = {qty = qty, reserved = KEYS[4 + 3 * (j - 1) + 2], counter = KEYS[4 + 3 * (j - 1) + 3]}
  local sku = string.match(field, '^[^#]+')
  if not by_sku[sku] then
    by_sku[sku] = #summary + 1
    summary[#summary + 1] = {sku = sku, quantity = 0}
  end
  summary[by_sku[sku]].quantity = summary[by_sku[sku]].quantity + qty
end
local retention_ms = tonumber(ARGV[4]) * 1000
local res = redis.call('HMGET', KEYS[1], 'cart_id', 'user_id', 'created_at', 'expires_at')
local function finish(new_status, stamp_field, credit)
  for j = 1, m do
    local t = takes[j]
    if credit then redis.call('INCRBY', t.counter, t.qty) end
    redis.call('DECRBY', t.reserved, t.qty)
  end
  redis.call('HSET', KEYS[1], 'status', new_status, stamp_field, now)
  redis.call('ZREM', KEYS[3], rid)
  redis.call('PEXPIRE', KEYS[1], retention_ms)
  redis.call('PEXPIRE', KEYS[2], retention_ms)
  redis.call('XADD', KEYS[4], 'MAXLEN', '~', 100000, '*', 'type', new_status, 'at', now,
    'rid', rid, 'cart_id', res[1], 'user_id', res[2],
    'created_at', res[3], 'expires_at', res[4], 'items', cjson.encode(summary))
end
if status == 'RESERVED' and now > tonumber(res[4]) + tonumber(ARGV[3]) then
  finish('EXPIRED', 'expired_at', true)
  return {'EXPIRED'}
end
if action == 'expire' then
  if status == 'RESERVED' then return {'NOT_DUE'} end
  redis.call('ZREM', KEYS[3], rid)
  return {'SKIP', status}
elseif action == 'release' then
  if status == 'RELEASED' or status == 'EXPIRED' then return {'ALREADY', status} end
  if status == 'CONFIRMED' then return {'INVALID_STATE', status} end
  finish('RELEASED', 'released_at', true)
  return {'OK'}
elseif action == 'confirm' then
  if status == 'CONFIRMED' then return {'ALREADY', status} end
  if status == 'RELEASED' then return {'INVALID_STATE', status} end
  if status == 'EXPIRED' then return {'EXPIRED'} end
  finish('CONFIRMED', 'confirmed_at', false)
  return {'OK'}
end
return redis.error_reply('unknown action ' .. tostring(action))
