-- eta_aci_adapt (beyond 07: adaptive conformal levels): after a delivery, each of a hub's three
-- quantile levels moves by gamma_i * (miss_i - (1 - stated_i)), clamped, in one step.
-- KEYS: 1 eta:aci:<hub_id> (hash l1, l2, l3). ARGV: 1 now_ms (unused), 2 unused, 3 lo, 4 hi,
-- 5 ttl_s, then per level i (1..3): stated_i, miss_i (0|1), gamma_i. Returns the new levels.
local lo, hi = tonumber(ARGV[3]), tonumber(ARGV[4])
local out = {}
for i = 1, 3 do
  local base = 3 + 3 * i
  local stated, miss, gamma = tonumber(ARGV[base]), tonumber(ARGV[base + 1]), tonumber(ARGV[base + 2])
  local cur = tonumber(redis.call('HGET', KEYS[1], 'l' .. i) or stated)
  local nxt = math.min(math.max(cur + gamma * (miss - (1 - stated)), lo), hi)
  local s = string.format('%.17g', nxt)
  redis.call('HSET', KEYS[1], 'l' .. i, s)
  table.insert(out, s)
end
redis.call('EXPIRE', KEYS[1], tonumber(ARGV[5]))
return out
