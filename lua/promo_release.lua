-- promo_release (05 §5): gives back what one redemption took, exactly once.
-- KEYS (rebuilt by the caller from the redeem record it read): 1 total, 2 daily:<its date>,
-- 3 user:<its user>, 4 fp:<its device or ->, 5 redeem:<id>, 6 spent.
-- ARGV: 1 the redeem record as read, 2 redemption id, 3 amount it charged.
-- Returns 1 released now, 0 if the record changed (already released, or gone).
if redis.call('GET', KEYS[5]) ~= ARGV[1] then
  return 0
end
for i = 1, 3 do
  if tonumber(redis.call('GET', KEYS[i]) or '0') > 0 then redis.call('DECR', KEYS[i]) end
end
redis.call('ZREM', KEYS[4], ARGV[2])
local amount = tonumber(ARGV[3])
if amount > 0 then
  local spent = tonumber(redis.call('GET', KEYS[6]) or '0')
  redis.call('SET', KEYS[6], math.max(spent - amount, 0))
end
redis.call('SET', KEYS[5], 'released', 'KEEPTTL')
return 1
