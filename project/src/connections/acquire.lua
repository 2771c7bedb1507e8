-- Takes one of a user's WebSocket connection slots, unless they already have the maximum.
-- Expiry times are Redis's own clock, so the nodes' clocks do not matter.
-- KEYS[1] the user's slots (sorted set: slot id -> expiry, in ms)
-- ARGV[1] the new slot's id, ARGV[2] its lease (ms), ARGV[3] the maximum per user
-- Returns 1 when taken, 0 when the user is at the maximum.
local time = redis.call('TIME')
local now = tonumber(time[1]) * 1000 + math.floor(tonumber(time[2]) / 1000)
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
if redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[3]) then return 0 end
redis.call('ZADD', KEYS[1], now + tonumber(ARGV[2]), ARGV[1])
redis.call('PEXPIRE', KEYS[1], ARGV[2])
return 1
