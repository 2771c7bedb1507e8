-- Creates a room and makes its creator a member, both or neither.
-- KEYS[1] the rooms hash, KEYS[2] the room's member set
-- ARGV[1] the room id, ARGV[2] the room's JSON, ARGV[3] the creator ('' for none)
-- Returns 1 when created, 0 when the id is taken.
if redis.call('HSETNX', KEYS[1], ARGV[1], ARGV[2]) == 0 then return 0 end
if ARGV[3] ~= '' then redis.call('SADD', KEYS[2], ARGV[3]) end
return 1
