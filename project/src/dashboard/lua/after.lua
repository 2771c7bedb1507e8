-- The newest id and the kept events after an id, read at one instant.
-- KEYS[1] the id counter, KEYS[2] the kept events; ARGV[1] the id to read after
-- Returns {newest id, "id\njson"...} oldest first (only the newest id when there is nothing newer).
local newest = tonumber(redis.call('GET', KEYS[1]) or '0')
if tonumber(ARGV[1]) >= newest then
  return {tostring(newest)}
end
local entries = redis.call('ZRANGEBYSCORE', KEYS[2], '(' .. ARGV[1], '+inf')
table.insert(entries, 1, tostring(newest))
return entries
