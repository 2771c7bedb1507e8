-- A connection leaves a room.
-- KEYS[1] the room's users, KEYS[2] this user's connections in the room (see presence_join.lua)
-- ARGV[1] the user, ARGV[2] the connection id
-- Returns 1 when it was the user's last live connection in the room, else 0.
local time = redis.call('TIME')
local now = tonumber(time[1]) * 1000 + math.floor(tonumber(time[2]) / 1000)
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now)
local removed = redis.call('ZREM', KEYS[2], ARGV[2])
-- The user stays online until their newest remaining connection expires.
local newest = redis.call('ZRANGE', KEYS[2], -1, -1, 'WITHSCORES')
if newest[2] then
  redis.call('ZADD', KEYS[1], newest[2], ARGV[1])
  return 0
end
redis.call('ZREM', KEYS[1], ARGV[1])
return removed
