-- geo_cache_write (02-geo §4): cache a cell's best hub only if no hub changed since the
-- snapshot that chose it, so a slow request can never re-cache a stale winner.
-- KEYS: 1 geo:{geo}:h3:<cell>, 2 geo:{geo}:hubs:version. ARGV: 1 now_ms (unused),
-- 2 snapshot_version, 3 hub_id. Returns 1 written, 0 stale.
local current = redis.call('GET', KEYS[2]) or '0'
if current ~= ARGV[2] then return 0 end
redis.call('SET', KEYS[1], ARGV[3], 'PX', 3600000)
return 1
