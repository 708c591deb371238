-- checkout_idem_finish (04 "Idempotency", script IU, plus the stored outcome): stores the
-- terminal outcome (if any) and frees the lease, only if this token still holds it.
-- KEYS: 1 result, 2 lock. ARGV: 1 now_ms, 2 token, 3 result json ('' = none), 4 result ttl ms.
-- Returns 1 if the lease was ours, 0 otherwise (nothing written).
local cur = redis.call('GET', KEYS[2])
if not cur then return 0 end
local sep = string.find(cur, '|', 1, true)
if string.sub(cur, 1, sep - 1) ~= ARGV[2] then return 0 end
if ARGV[3] ~= '' then
  redis.call('SET', KEYS[1], ARGV[3], 'PX', tonumber(ARGV[4]))
end
redis.call('DEL', KEYS[2])
return 1
