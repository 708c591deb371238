-- lease_acquire (00-platform): KEYS [lease], ARGV [now_ms, token, ttl_ms] -> 1 acquired/renewed, 0 held by another.
local now, token, ttl = tonumber(ARGV[1]), ARGV[2], tonumber(ARGV[3])
local cur = redis.call('GET', KEYS[1])
if cur then
  local sep = string.find(cur, '|', 1, true)
  local owner, exp = string.sub(cur, 1, sep - 1), tonumber(string.sub(cur, sep + 1))
  if owner ~= token and exp > now then return 0 end
end
redis.call('SET', KEYS[1], token .. '|' .. (now + ttl), 'PX', ttl + 60000)
return 1
