-- The heartbeat: pushes back the expiry of a connection that is still live on its node.
-- Same KEYS and ARGV as presence_join.lua.
-- Returns 1 when refreshed, 0 (changing nothing) when the connection is not recorded: it left
-- meanwhile, or Redis lost it; the caller decides whether to join it again.
if not redis.call('ZSCORE', KEYS[2], ARGV[2]) then return 0 end
local time = redis.call('TIME')
local now = tonumber(time[1]) * 1000 + math.floor(tonumber(time[2]) / 1000)
local expiry = now + tonumber(ARGV[3])
redis.call('ZADD', KEYS[2], expiry, ARGV[2])
redis.call('ZADD', KEYS[1], expiry, ARGV[1])
redis.call('PEXPIRE', KEYS[1], ARGV[3])
redis.call('PEXPIRE', KEYS[2], ARGV[3])
return 1
