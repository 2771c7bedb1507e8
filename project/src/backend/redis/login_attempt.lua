-- Counts one login attempt unless the username's window is already full, in one step: two
-- attempts at the same moment cannot both see the same count.
-- KEYS[1] the username's counter; ARGV[1] attempts allowed per window; ARGV[2] the window (ms)
-- Returns {0, attempts} when counted, {1, ms left} when refused (nothing counted). A counter
-- that is not a number is returned as it is, so the caller reports corrupt data.
local raw = redis.call('GET', KEYS[1])
local attempts = 0
if raw then
  attempts = tonumber(raw)
  if not attempts then
    return raw
  end
end
if attempts >= tonumber(ARGV[1]) then
  local left = redis.call('PTTL', KEYS[1])
  if left > 0 then
    return {1, left}
  end
  -- A full counter without an expiry would block for ever: start a new window.
  redis.call('DEL', KEYS[1])
end
-- The window starts at the first attempt: only a new counter (or one somehow without an
-- expiry) gets one.
attempts = redis.call('INCR', KEYS[1])
if attempts == 1 or redis.call('PTTL', KEYS[1]) < 0 then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return {0, attempts}
