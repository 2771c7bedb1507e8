-- Appends one message to a room's log and broadcasts it, as one step: Redis runs nothing else
-- in between, so the order of the ids is the order in which every node receives the messages.
-- With an author to check, the same step first checks what a `send` needs, in the contract's
-- order: the room exists, then, if it is private, the author is one of its members.
-- KEYS[1] the room's id counter, KEYS[2] the room's history (sorted set scored by id),
-- KEYS[3] the rooms hash, KEYS[4] the room's member set,
-- KEYS[5] the idempotency key of (room, user, client_id); absent when there is no client_id
-- ARGV[1] the frame before the id, ARGV[2] the frame after the id, ARGV[3] the fan-out channel,
-- ARGV[4] the room id, ARGV[5] how long a client_id is remembered (seconds),
-- ARGV[6] how many messages the room keeps (the oldest beyond that are dropped),
-- ARGV[7] the author whose access is checked first ('' appends without checking)
-- Returns {id, frame, outcome}: outcome 0 stored, 1 a repeat of an earlier send (the original
-- id and frame), 2 no such room, 3 a private room the author is not a member of (id 0, '').
if ARGV[7] ~= '' then
  local room = redis.call('HGET', KEYS[3], ARGV[4])
  if not room then return {0, '', 2} end
  if cjson.decode(room).private == true and redis.call('SISMEMBER', KEYS[4], ARGV[7]) == 0 then
    return {0, '', 3}
  end
end
local cid_key = KEYS[5]
if cid_key then
  local old_id = redis.call('GET', cid_key)
  if old_id then
    local old = redis.call('ZRANGEBYSCORE', KEYS[2], old_id, old_id)
    -- A repeated send: answer with the original frame, store and publish nothing.
    if old[1] then return {tonumber(old_id), old[1], 1} end
  end
end
local id = string.format('%d', redis.call('INCR', KEYS[1]))
local frame = ARGV[1] .. id .. ARGV[2]
redis.call('ZADD', KEYS[2], id, frame)
-- Keep the newest ARGV[6]: ranks run from the lowest score (the oldest id), so drop ranks 0
-- up to the one just below the newest ARGV[6].
redis.call('ZREMRANGEBYRANK', KEYS[2], 0, -(tonumber(ARGV[6]) + 1))
if cid_key then redis.call('SET', cid_key, id, 'EX', ARGV[5]) end
-- The fan-out format (see fanout.rs): room \n message id \n audience (empty: everyone) \n frame
redis.call('PUBLISH', ARGV[3], ARGV[4] .. '\n' .. id .. '\n\n' .. frame)
return {tonumber(id), frame, 0}
