-- Takes back one counted login attempt (its password was never checked). DECR keeps the
-- key's expiry, so the window does not move.
-- KEYS[1] the username's counter
local attempts = tonumber(redis.call('GET', KEYS[1]) or '0')
if attempts and attempts > 0 then
  redis.call('DECR', KEYS[1])
end
return 0
