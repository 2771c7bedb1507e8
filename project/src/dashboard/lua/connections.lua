-- Records this node's connection count and sums the live nodes' counts.
-- KEYS[1] hash: node id -> "count:expires_ms"
-- ARGV[1] this node's id, ARGV[2] its count, ARGV[3] how long the count is valid (ms)
-- Redis's own clock decides expiry, so the nodes' clocks need not agree.
local time = redis.call('TIME')
local now = tonumber(time[1]) * 1000 + math.floor(tonumber(time[2]) / 1000)
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2] .. ':' .. string.format('%d', now + tonumber(ARGV[3])))
redis.call('PEXPIRE', KEYS[1], ARGV[3])
local total = 0
local fields = redis.call('HGETALL', KEYS[1])
for i = 1, #fields, 2 do
  local count, expires = string.match(fields[i + 1], '^(%d+):(%d+)$')
  if count == nil or tonumber(expires) <= now then
    redis.call('HDEL', KEYS[1], fields[i])
  else
    total = total + tonumber(count)
  end
end
return total
