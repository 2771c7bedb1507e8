-- The epoch of a room's history, made on the first read: a Redis that lost the key (emptied,
-- restarted without persistence) lost the history with it, so a new name is right.
-- KEYS[1] the room's epoch key; ARGV[1] a fresh random name, used only if there is none.
local epoch = redis.call('GET', KEYS[1])
if epoch then return epoch end
redis.call('SET', KEYS[1], ARGV[1])
return ARGV[1]
