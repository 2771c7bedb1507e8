-- Counts one failed login. The window starts at the first failure: only a new counter gets an
-- expiry (or one that somehow has none, so that it can never block forever).
-- KEYS[1] the username's counter; ARGV[1] the window (ms)
-- Returns the failures in the current window.
local failures = redis.call('INCR', KEYS[1])
if failures == 1 or redis.call('PTTL', KEYS[1]) < 0 then
  redis.call('PEXPIRE', KEYS[1], ARGV[1])
end
return failures
