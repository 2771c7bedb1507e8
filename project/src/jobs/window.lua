-- Decides whether a mention e-mail may be queued, in one step (two nodes queuing for the same
-- user at once cannot both take the last place):
-- at most one per (user, room) per window, and at most ARGV[2] per user in any sliding hour.
-- KEYS[1] the (user, room) window, a key that expires with it
-- KEYS[2] the user's e-mails of the last hour, a sorted set scored by when (ms, Redis's clock)
-- ARGV[1] the (user, room) window (ms, 0 = none); ARGV[2] e-mails per hour (0 = no cap);
-- ARGV[3] an id for this e-mail
-- Returns 1 when it may be sent (both are taken), 0 when one went to this room recently,
-- 2 when the user's hourly cap is reached. Nothing is taken unless it returns 1.
local window = tonumber(ARGV[1])
if window > 0 and redis.call('EXISTS', KEYS[1]) == 1 then
  return 0
end
local cap = tonumber(ARGV[2])
if cap > 0 then
  local hour = 3600000
  local now = redis.call('TIME')
  now = tonumber(now[1]) * 1000 + math.floor(tonumber(now[2]) / 1000)
  redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now - hour)
  if redis.call('ZCARD', KEYS[2]) >= cap then
    return 2
  end
  redis.call('ZADD', KEYS[2], now, ARGV[3])
  redis.call('PEXPIRE', KEYS[2], hour)
end
if window > 0 then
  redis.call('SET', KEYS[1], 1, 'PX', window)
end
return 1
