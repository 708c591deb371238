-- checkout_idem_begin (04 "Idempotency", script IB): a stored outcome wins; else the lease.
-- Both keys share the tag {<user_id>}. The lease value is `<token>|<expires_ms>` (00's lease).
-- KEYS: 1 result, 2 lock. ARGV: 1 now_ms, 2 token, 3 lock_ms.
-- Returns {2, result json} stored, {1} lease taken, {0} another request holds it.
local stored = redis.call('GET', KEYS[1])
if stored then return {2, stored} end
local now, token, ttl = tonumber(ARGV[1]), ARGV[2], tonumber(ARGV[3])
local cur = redis.call('GET', KEYS[2])
if cur then
  local sep = string.find(cur, '|', 1, true)
  local owner, exp = string.sub(cur, 1, sep - 1), tonumber(string.sub(cur, sep + 1))
  if owner ~= token and exp > now then return {0} end
end
redis.call('SET', KEYS[2], token .. '|' .. (now + ttl), 'PX', ttl + 60000)
return {1}
