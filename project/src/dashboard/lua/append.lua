-- Numbers, keeps and publishes a batch of activity events, oldest first.
-- KEYS[1] the id counter, KEYS[2] the kept events (sorted set scored by id)
-- ARGV[1] the channel, ARGV[2] how many events to keep, ARGV[3..] each event's JSON
-- An event is stored and published as "id\njson" (the id makes every member unique).
local keep = tonumber(ARGV[2])
for i = 3, #ARGV do
  local id = redis.call('INCR', KEYS[1])
  local entry = id .. '\n' .. ARGV[i]
  redis.call('ZADD', KEYS[2], id, entry)
  redis.call('PUBLISH', ARGV[1], entry)
end
redis.call('ZREMRANGEBYRANK', KEYS[2], 0, -(keep + 1))
return #ARGV - 2
