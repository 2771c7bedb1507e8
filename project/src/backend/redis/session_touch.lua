-- Records or refreshes one of a user's connections, joined to rooms or not (for mentions:
-- "is this user connected anywhere?"). Expiry times are Redis's own clock, as in presence_join.lua.
-- KEYS[1] the user's connections (sorted set: connection id -> expiry, in ms)
-- ARGV[1] the connection id, ARGV[2] the time to live (ms), ARGV[3] "refresh" to only refresh
-- a connection still recorded (a heartbeat must not bring back one that just closed)
-- Returns 1 when recorded, 0 when a refresh found nothing to refresh.
if ARGV[3] == 'refresh' and not redis.call('ZSCORE', KEYS[1], ARGV[1]) then return 0 end
local time = redis.call('TIME')
local now = tonumber(time[1]) * 1000 + math.floor(tonumber(time[2]) / 1000)
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
redis.call('ZADD', KEYS[1], now + tonumber(ARGV[2]), ARGV[1])
redis.call('PEXPIRE', KEYS[1], ARGV[2])
return 1
