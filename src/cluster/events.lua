-- The event stream at KEYS[1] in one round trip: the ids of its oldest and newest
-- entries ('' when there is no stream), and up to ARGV[2] entries from the id ARGV[1]
-- on (none when ARGV[1] is ''). The caller passes the id just after the last one it
-- has read, since XRANGE's start is inclusive.
local oldest = redis.call('XRANGE', KEYS[1], '-', '+', 'COUNT', 1)
local newest = redis.call('XREVRANGE', KEYS[1], '+', '-', 'COUNT', 1)
local entries = {}
if ARGV[1] ~= '' then
  entries = redis.call('XRANGE', KEYS[1], ARGV[1], '+', 'COUNT', tonumber(ARGV[2]))
end
return {oldest[1] and oldest[1][1] or '', newest[1] and newest[1][1] or '', entries}
