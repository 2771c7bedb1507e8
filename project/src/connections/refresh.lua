-- Pushes back the expiry of some of a user's slots (one node's heartbeat). Only slots still
-- recorded are refreshed (`XX`): a heartbeat must not bring back a slot that was just given back.
-- KEYS[1] the user's slots (sorted set: slot id -> expiry, in ms)
-- ARGV[1] the lease (ms), ARGV[2..] the slot ids
local time = redis.call('TIME')
local now = tonumber(time[1]) * 1000 + math.floor(tonumber(time[2]) / 1000)
local expiry = now + tonumber(ARGV[1])
for i = 2, #ARGV do
  redis.call('ZADD', KEYS[1], 'XX', expiry, ARGV[i])
end
if redis.call('EXISTS', KEYS[1]) == 1 then redis.call('PEXPIRE', KEYS[1], ARGV[1]) end
return 0
