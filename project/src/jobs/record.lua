-- Records a job's new state, unless the job has already ended.
-- KEYS[1]     the records (hash: job id -> the record as JSON)
-- KEYS[2..6]  the ids by status, pending, running, done, failed, dead (sorted sets scored by
--             the time of the last change, in ms)
-- ARGV[1] the job id, ARGV[2] the record as JSON, ARGV[3] the position in KEYS of the new
-- status's set (2..6), ARGV[4] the time of the change (ms)
-- Returns 1 when recorded, 0 (changing nothing) when the job is already done or dead: a copy of
-- a finished job that runs again (recovered from a node believed dead) must not be re-sent.
if redis.call('ZSCORE', KEYS[4], ARGV[1]) or redis.call('ZSCORE', KEYS[6], ARGV[1]) then
  return 0
end
for i = 2, 6 do
  redis.call('ZREM', KEYS[i], ARGV[1])
end
redis.call('ZADD', KEYS[tonumber(ARGV[3])], ARGV[4], ARGV[1])
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
return 1
