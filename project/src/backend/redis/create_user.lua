-- Creates a user only when both its name and its e-mail are free. Checking and writing in one
-- script means two nodes registering the same name at once cannot both succeed.
-- KEYS[1] the user key, KEYS[2] the e-mail key (lowercased address)
-- ARGV[1] the user's JSON, ARGV[2] the username
-- Returns 0 when created, 1 when the name is taken, 2 when the e-mail is taken.
if redis.call('EXISTS', KEYS[1]) == 1 then return 1 end
if redis.call('EXISTS', KEYS[2]) == 1 then return 2 end
redis.call('SET', KEYS[1], ARGV[1])
redis.call('SET', KEYS[2], ARGV[2])
return 0
