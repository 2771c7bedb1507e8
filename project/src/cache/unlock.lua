-- Releases a computation lock only if it is still ours: if our computation outlived the lock's
-- PX, the lock expired and another node may hold it now; deleting it would let a third in.
-- KEYS[1] = the lock, ARGV[1] = the token we stored in it.
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
