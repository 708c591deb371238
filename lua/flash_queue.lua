-- flash_queue (03 waiting room): joins at a score (kept if already waiting) when ARGV[3] is '1',
-- then the user's place. KEYS: 1 waiting, 2 admit. ARGV: 1 uid, 2 score, 3 join (0/1), 4 now_ms.
-- Returns {state, position (1-based, 0 unless queued), total}; state 1 queued, 2 admitted, 0 none.
if ARGV[3] == '1' then redis.call('ZADD', KEYS[1], 'NX', ARGV[2], ARGV[1]) end
local total = redis.call('ZCARD', KEYS[1])
local rank = redis.call('ZRANK', KEYS[1], ARGV[1])
if rank then return {1, rank + 1, total} end
local pass = redis.call('ZSCORE', KEYS[2], ARGV[1])
if pass and tonumber(pass) > tonumber(ARGV[4]) then return {2, 0, total} end
return {0, 0, total}
