-- flash_admit (03 ADM, granting what it promises): passes for the head of the waiting room, as
-- many as the units not yet promised to live passes, at most `batch`.
-- KEYS: 1 waiting, 2 admit, 3 total. ARGV: 1 now_ms, 2 batch, 3 pass_ms. Returns the users.
local now = tonumber(ARGV[1])
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now)
local open = tonumber(redis.call('GET', KEYS[3]) or '0') - redis.call('ZCARD', KEYS[2])
local k = math.min(open, tonumber(ARGV[2]), redis.call('ZCARD', KEYS[1]))
if k <= 0 then return {} end
local popped = redis.call('ZPOPMIN', KEYS[1], k)
local users = {}
for i = 1, #popped, 2 do
  users[#users + 1] = popped[i]
  redis.call('ZADD', KEYS[2], now + tonumber(ARGV[3]), popped[i])
end
return users
