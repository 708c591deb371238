-- tracking_position (09 "Events and Redis"): one accepted position, atomically and in one round
-- trip: refused when the order's status is terminal (delivered, cancelled); else the next seq
-- from the order's counter, the event stored as the latest position and in the trail (newest N
-- kept), retention refreshed, and the event published. One order's keys share the tag
-- {<order_id>} (Cluster-safe).
-- KEYS: 1 tracking:{<order_id>}:status, 2 :seq, 3 :pos, 4 :trail.
-- ARGV: 1 the event JSON after its seq (starting ',"order_id":'), 2 pub/sub channel,
-- 3 latest-position retention ms, 4 trail/seq retention ms, 5 trail length.
-- Returns the seq, or 0 when the order is closed (nothing written).
local cur = redis.call('GET', KEYS[1])
if cur then
  local ok, ev = pcall(cjson.decode, cur)
  if ok and (ev.status == 'delivered' or ev.status == 'cancelled') then
    return 0
  end
end
local seq = redis.call('INCR', KEYS[2])
redis.call('PEXPIRE', KEYS[2], tonumber(ARGV[4]))
local json = '{"type":"position","seq":' .. seq .. ARGV[1]
redis.call('SET', KEYS[3], json, 'PX', tonumber(ARGV[3]))
redis.call('ZADD', KEYS[4], seq, json)
redis.call('ZREMRANGEBYRANK', KEYS[4], 0, -(tonumber(ARGV[5]) + 1))
redis.call('PEXPIRE', KEYS[4], tonumber(ARGV[4]))
redis.call('PUBLISH', ARGV[2], json)
return seq
