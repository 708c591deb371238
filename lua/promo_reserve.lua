-- promo_reserve (05 §5): one redemption of a rule, checking and taking every boundary at once.
-- All keys share the rule's tag {<rule_id>} (Cluster-safe). A limit of 0 is unlimited.
-- KEYS: 1 total, 2 daily:<date>, 3 user:<user_id>, 4 fp:<device hmac or ->, 5 redeem:<id>, 6 spent.
-- ARGV: 1 now_ms, 2 max_total, 3 max_daily, 4 max_user, 5 max_fp (0 without a device),
-- 6 budget (0 = none), 7 amount charged to the budget, 8 daily ttl ms, 9 fp window ms,
-- 10 redeem ttl ms, 11 redeem record (JSON: date, user, device, amount), 12 redemption id.
-- Returns {1,'OK'} taken, {2,'DUPLICATE'} known redemption, {0,'<REASON>'} refused.
if redis.call('EXISTS', KEYS[5]) == 1 then
  return {2, 'DUPLICATE'}
end
local now = tonumber(ARGV[1])
local max_fp = tonumber(ARGV[5])
local function over(key, max)
  max = tonumber(max)
  return max > 0 and tonumber(redis.call('GET', key) or '0') >= max
end
if over(KEYS[1], ARGV[2]) then return {0, 'TOTAL_LIMIT'} end
if over(KEYS[2], ARGV[3]) then return {0, 'DAILY_LIMIT'} end
if over(KEYS[3], ARGV[4]) then return {0, 'USER_LIMIT'} end
if max_fp > 0 then
  redis.call('ZREMRANGEBYSCORE', KEYS[4], '-inf', now - tonumber(ARGV[9]))
  if redis.call('ZCARD', KEYS[4]) >= max_fp then return {0, 'DEVICE_LIMIT'} end
end
local budget, amount = tonumber(ARGV[6]), tonumber(ARGV[7])
if budget > 0 and tonumber(redis.call('GET', KEYS[6]) or '0') + amount > budget then
  return {0, 'BUDGET_LIMIT'}
end
redis.call('INCR', KEYS[1])
if redis.call('INCR', KEYS[2]) == 1 then redis.call('PEXPIRE', KEYS[2], ARGV[8]) end
redis.call('INCR', KEYS[3])
if max_fp > 0 then
  redis.call('ZADD', KEYS[4], now, ARGV[12])
  redis.call('PEXPIRE', KEYS[4], ARGV[9])
end
if amount > 0 then redis.call('INCRBY', KEYS[6], amount) end
redis.call('SET', KEYS[5], ARGV[11], 'PX', ARGV[10])
return {1, 'OK'}
