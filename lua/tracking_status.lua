-- tracking_status (09 "Events and Redis"): an order's status change, atomically: refused after a
-- terminal status (delivered, cancelled); else the next seq from the order's counter, the status
-- stored and published. One order's keys share the tag {<order_id>} (Cluster-safe).
-- KEYS: 1 tracking:{<order_id>}:status, 2 tracking:{<order_id>}:seq.
-- ARGV: 1 order_id, 2 status, 3 driver_id ('' = none), 4 timestamp (RFC 3339), 5 pub/sub channel,
-- 6 retention ms (status and seq).
-- Returns {1, event json} stored, or {0, terminal event json}.
local cur = redis.call('GET', KEYS[1])
if cur then
  local ok, ev = pcall(cjson.decode, cur)
  if ok and (ev.status == 'delivered' or ev.status == 'cancelled') then
    return {0, cur}
  end
end
local seq = redis.call('INCR', KEYS[2])
redis.call('PEXPIRE', KEYS[2], tonumber(ARGV[6]))
local json = '{"type":"status","seq":' .. seq .. ',"order_id":' .. cjson.encode(ARGV[1])
  .. ',"status":' .. cjson.encode(ARGV[2])
if ARGV[3] ~= '' then
  json = json .. ',"driver_id":' .. cjson.encode(ARGV[3])
end
json = json .. ',"timestamp":' .. cjson.encode(ARGV[4]) .. '}'
redis.call('SET', KEYS[1], json, 'PX', tonumber(ARGV[6]))
redis.call('PUBLISH', ARGV[5], json)
return {1, json}
