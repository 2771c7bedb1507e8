-- The users of a room whose newest connection has not expired yet (by Redis's clock).
-- KEYS[1] the room's users (see presence_join.lua)
local time = redis.call('TIME')
local now = tonumber(time[1]) * 1000 + math.floor(tonumber(time[2]) / 1000)
return redis.call('ZRANGEBYSCORE', KEYS[1], '(' .. string.format('%d', now), '+inf')
