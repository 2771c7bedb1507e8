-- A connection joins a room. Expiry times are Redis's own clock (TIME), so the nodes' clocks
-- do not matter.
-- KEYS[1] the room's users (sorted set: user -> when their newest connection expires, in ms)
-- KEYS[2] this user's connections in the room (sorted set: connection id -> expiry, in ms)
-- ARGV[1] the user, ARGV[2] the connection id, ARGV[3] the time to live (ms)
-- Returns 1 when this is the user's first live connection in the room, else 0.
local time = redis.call('TIME')
local now = tonumber(time[1]) * 1000 + math.floor(tonumber(time[2]) / 1000)
-- First forget what expired: connections of a node that crashed.
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now)
local first = redis.call('ZCARD', KEYS[2]) == 0
local expiry = now + tonumber(ARGV[3])
redis.call('ZADD', KEYS[2], expiry, ARGV[2])
redis.call('ZADD', KEYS[1], expiry, ARGV[1])
-- Whole keys expire too, so a room nobody touches again leaves nothing behind.
redis.call('PEXPIRE', KEYS[1], ARGV[3])
redis.call('PEXPIRE', KEYS[2], ARGV[3])
if first then return 1 end
return 0
