-- eta_sticky_put (07 §5): store a computed ETA as the order's sticky answer unless a live entry
-- with the same fingerprint appeared meanwhile (a lost race), which is returned instead.
-- Live means now_ms < exp; the key's TTL only garbage-collects.
-- KEYS: 1 eta:result:<order_id> (hash fp, exp, body). ARGV: 1 now_ms, 2 fp, 3 body,
-- 4 sticky_ms, 5 gc_ms. Returns {1, ""} stored, or {0, body} of the live entry.
local cur = redis.call('HMGET', KEYS[1], 'fp', 'exp', 'body')
local now = tonumber(ARGV[1])
if cur[1] == ARGV[2] and cur[2] and now < tonumber(cur[2]) then
  return {0, cur[3]}
end
redis.call('DEL', KEYS[1])
redis.call('HSET', KEYS[1], 'fp', ARGV[2], 'exp', string.format('%d', now + tonumber(ARGV[4])), 'body', ARGV[3])
redis.call('PEXPIRE', KEYS[1], tonumber(ARGV[5]))
return {1, ''}
