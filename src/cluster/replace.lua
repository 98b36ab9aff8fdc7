-- Replaces a value only if it is still the one expected: a job's final state
-- (done, cancelled, interrupted) replaces only its pending entry, so of two instances
-- that end the same job, the first wins and the other learns it lost.
--
-- KEYS[1]  the key; ARGV[1]  the expected value; ARGV[2]  the new value;
-- ARGV[3]  its TTL in milliseconds. Returns 1 if replaced, else 0.
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3])
  return 1
end
return 0
