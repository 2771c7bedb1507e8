-- Takes one place in a user's sliding window of room creations, in one step (so two nodes
-- cannot both take the last place). Redis's own clock is used, the same for every node.
-- KEYS[1] the user's tickets (sorted set scored by ms); ARGV[1] places; ARGV[2] window (ms);
-- ARGV[3] the new ticket
-- Returns 0 when taken, else the ms until the oldest ticket leaves the window.
local now = redis.call('TIME')
now = tonumber(now[1]) * 1000 + math.floor(tonumber(now[2]) / 1000)
local window = tonumber(ARGV[2])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - window)
if redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[1]) then
  local oldest = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
  if oldest[2] == nil then
    return window
  end
  return math.max(1, tonumber(oldest[2]) + window - now)
end
redis.call('ZADD', KEYS[1], now, ARGV[3])
redis.call('PEXPIRE', KEYS[1], window)
return 0
