-- Whether a user has a connection that has not expired yet (by Redis's clock).
-- KEYS[1] the user's connections (see session_touch.lua)
-- Returns how many live connections the user has.
local time = redis.call('TIME')
local now = tonumber(time[1]) * 1000 + math.floor(tonumber(time[2]) / 1000)
return redis.call('ZCOUNT', KEYS[1], '(' .. string.format('%d', now), '+inf')
