-- Deletes the records of jobs that ended (done or dead) before a time.
-- KEYS[1] the records, KEYS[2] the done ids, KEYS[3] the dead ids (see record.lua)
-- ARGV[1] the cut-off (ms), ARGV[2] the most records of each status deleted in one run, so a
-- large backlog never blocks Redis for long (the next run goes on)
-- Returns how many records were deleted.
local deleted = 0
for i = 2, 3 do
  local ids = redis.call('ZRANGEBYSCORE', KEYS[i], '-inf', ARGV[1], 'LIMIT', 0, tonumber(ARGV[2]))
  for _, id in ipairs(ids) do
    redis.call('ZREM', KEYS[i], id)
    redis.call('HDEL', KEYS[1], id)
    deleted = deleted + 1
  end
end
return deleted
