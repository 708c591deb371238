-- eta_kf_update (07 §3, §5; two levels, beyond the spec): one observation applied to the hub's
-- traffic filter and to the segment's, whose prior is the hub's level, in one step so concurrent
-- observations are serialised. Both keys carry the {<hub_id>} tag (one slot).
-- KEYS: 1 eta:kf:{<hub_id>}:<geohash6>, 2 eta:kf:{<hub_id>}:*.
-- ARGV: 1 now_ms (unused: the filters run on observation time), 2 t_ms (observed_at),
-- 3 ratio (actual / base), 4 sigma_inf2, 5 tau_s, 6 r, 7 ratio_min, 8 ratio_max,
-- 9 segment_dev2, 10 ttl_s.
-- Returns {seg_x, seg_p, seg_t_ms, seg_n, hub_x, hub_p, hub_t_ms, hub_n} (%.17g: exact doubles).
local tms = tonumber(ARGV[2])
local sig, tau, r, dev = tonumber(ARGV[4]), tonumber(ARGV[5]), tonumber(ARGV[6]), tonumber(ARGV[9])
local ratio = math.min(math.max(tonumber(ARGV[3]), tonumber(ARGV[7])), tonumber(ARGV[8]))
local z = math.log(ratio)

local function load(key)
  local s = redis.call('HMGET', key, 'x', 'p', 't_ms', 'n')
  if s[1] then
    return {x = tonumber(s[1]), p = tonumber(s[2]), t = tonumber(s[3]), n = tonumber(s[4])}
  end
  return nil
end

local function phi_at(t_last)
  return math.exp(-(math.max(0, tms - t_last) / 1000) / tau)
end

local seg, hub = load(KEYS[1]), load(KEYS[2])

-- The hub's level at t (its filter decays toward the prior 0).
local hx, hp = 0, sig
if hub then
  local f = phi_at(hub.t)
  hx, hp = f * hub.x, f * f * hub.p + sig * (1 - f * f)
end

-- The segment around the hub's level (the spec's prior when neither has data).
local sx, sp
if not seg and not hub then
  sx, sp = 0, sig
elseif seg then
  local f = phi_at(seg.t)
  sx = hx + f * (seg.x - hx)
  sp = f * f * seg.p + (hp + dev) * (1 - f * f)
else
  sx, sp = hx, hp + dev
end

local function step(xm, pm)
  local k = pm / (pm + r)
  return xm + k * (z - xm), (1 - k) * pm
end

local new_sx, new_sp = step(sx, sp)
local new_hx, new_hp = step(hx, hp)
local seg_t = seg and math.max(seg.t, tms) or tms
local hub_t = hub and math.max(hub.t, tms) or tms
local seg_n = (seg and seg.n or 0) + 1
local hub_n = (hub and hub.n or 0) + 1

local out = {}
local function save(key, x, p, t, n)
  local xs, ps, ts = string.format('%.17g', x), string.format('%.17g', p), string.format('%d', t)
  redis.call('HSET', key, 'x', xs, 'p', ps, 't_ms', ts, 'n', n)
  redis.call('EXPIRE', key, tonumber(ARGV[10]))
  table.insert(out, xs); table.insert(out, ps); table.insert(out, ts); table.insert(out, tostring(n))
end
save(KEYS[1], new_sx, new_sp, seg_t, seg_n)
save(KEYS[2], new_hx, new_hp, hub_t, hub_n)
return out
