-- Lets go of a lock only if its holder's token still holds it: a holder whose lock
-- expired (and was taken by another) must not delete the other's.
--
-- KEYS[1]  the lock; ARGV[1]  the holder's token. Returns 1 if deleted, else 0.
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
