-- Appends one message to a room's log and broadcasts it, as one step: Redis runs nothing else
-- in between, so the order of the ids is the order in which every node receives the messages.
-- KEYS[1] the room's id counter, KEYS[2] the room's history (sorted set scored by id),
-- KEYS[3] the idempotency key of (room, user, client_id); absent when there is no client_id
-- ARGV[1] the frame before the id, ARGV[2] the frame after the id, ARGV[3] the fan-out channel,
-- ARGV[4] the room id, ARGV[5] how long a client_id is remembered (seconds),
-- ARGV[6] how many messages the room keeps (the oldest beyond that are dropped)
-- Returns {id, frame, 1 when it repeats an earlier send else 0}.
local cid_key = KEYS[3]
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
