-- eta_kf_update (07 §3, §5): one observation applied to a segment's traffic filter, the whole
-- read-modify-write in one step so concurrent observations are serialised.
-- KEYS: 1 eta:kf:<hub_id>:<geohash6>. ARGV: 1 now_ms (unused: the filter runs on observation
-- time), 2 t_ms (observed_at), 3 ratio (actual / base), 4 sigma_inf2, 5 tau_s, 6 r, 7 ratio_min,
-- 8 ratio_max, 9 ttl_s. Returns {x, p, t_ms, n} as strings (%.17g: exact doubles).
local tms = tonumber(ARGV[2])
local sig, tau, r = tonumber(ARGV[4]), tonumber(ARGV[5]), tonumber(ARGV[6])
local s = redis.call('HMGET', KEYS[1], 'x', 'p', 't_ms', 'n')
local x, p, t, n = 0, sig, tms, 0
if s[1] then
  x, p, t, n = tonumber(s[1]), tonumber(s[2]), tonumber(s[3]), tonumber(s[4])
end
local dt = math.max(0, tms - t) / 1000
local phi = math.exp(-dt / tau)
local xm = phi * x
local pm = phi * phi * p + sig * (1 - phi * phi)
local ratio = math.min(math.max(tonumber(ARGV[3]), tonumber(ARGV[7])), tonumber(ARGV[8]))
local z = math.log(ratio)
local k = pm / (pm + r)
x = xm + k * (z - xm)
p = (1 - k) * pm
t = math.max(t, tms)
n = n + 1
local xs, ps, ts = string.format('%.17g', x), string.format('%.17g', p), string.format('%d', t)
redis.call('HSET', KEYS[1], 'x', xs, 'p', ps, 't_ms', ts, 'n', n)
redis.call('EXPIRE', KEYS[1], tonumber(ARGV[9]))
return {xs, ps, ts, tostring(n)}
