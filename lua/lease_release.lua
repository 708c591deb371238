-- lease_release (00-platform): KEYS [lease], ARGV [now_ms, token] -> 1 released, 0 not ours.
local cur = redis.call('GET', KEYS[1])
if cur and string.sub(cur, 1, string.len(ARGV[2]) + 1) == ARGV[2] .. '|' then
  redis.call('DEL', KEYS[1])
  return 1
end
return 0
